"""The embedded demo model: a small CNN trained on scikit-learn's 8x8 digits.

``BASE_PATH`` is a model base path (version 1 inside); ``test_data()`` gives
the held-out images (uint8, shape (n, 8, 8, 1), values 0..16) and labels.
Retrain with ``scripts/train_demo.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "digits"
BASE_PATH = Path(__file__).resolve().parent / NAME
TEST_DATA = Path(__file__).resolve().parent / "digits_test.npz"


def test_data() -> tuple[np.ndarray, np.ndarray]:
    """The held-out (images, labels) the demo model was evaluated on."""
    with np.load(TEST_DATA) as data:
        return data["images"], data["labels"]
