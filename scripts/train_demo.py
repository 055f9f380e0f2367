"""Train the embedded demo model and export it with this toolkit.

A small CNN on scikit-learn's 8x8 handwritten digits (the data set ships
inside scikit-learn, so nothing is downloaded). Writes
savedmodel/demo/digits/1/saved_model.h5 and savedmodel/demo/digits_test.npz
(the held-out images and labels). Run from the repository root with the
test extras installed:

    .venv/bin/python scripts/train_demo.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

DEMO = Path(__file__).resolve().parent.parent / "savedmodel" / "demo"


def main() -> None:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import savedmodel

    keras.utils.set_random_seed(7)
    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # (n, 8, 8, 1), values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=7, stratify=digits.target
    )
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Rescaling(1 / 16.0, name="scale"),
            keras.layers.Conv2D(16, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.MaxPooling2D(name="pool1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dropout(0.2, name="drop"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="digits",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train.astype("float32"), y_train, epochs=40, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test.astype("float32"), y_test, verbose=0)
    print(f"held-out accuracy: {accuracy:.4f}")

    base = DEMO / "digits"
    shutil.rmtree(base, ignore_errors=True)
    path = savedmodel.save(
        model, base, version=1, labels=[str(i) for i in range(10)],
        metadata={"description": "8x8 handwritten digit classifier (scikit-learn digits)",
                  "metrics": {"test_accuracy": round(float(accuracy), 4)}},
    )
    np.savez_compressed(DEMO / "digits_test.npz", images=x_test, labels=y_test.astype(np.uint8))
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
