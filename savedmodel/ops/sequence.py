"""Sequence ops: embeddings, recurrent layers and attention.

Inputs are (batch, time, features), channels-last like the rest of the IR.
"""

from __future__ import annotations
