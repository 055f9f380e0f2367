"""Kernels of the plain tensor ops (savedmodel.ops.numeric)."""

from __future__ import annotations
