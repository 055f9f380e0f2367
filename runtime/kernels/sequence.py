"""Kernels of the sequence ops (savedmodel.ops.sequence)."""

from __future__ import annotations
