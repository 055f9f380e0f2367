"""Regenerate the tensorflowjs_converter fixtures (run with the Python of a separate venv).

    python3 -m venv /tmp/tfjs-venv && /tmp/tfjs-venv/bin/pip install tensorflowjs
    /tmp/tfjs-venv/bin/python tests/converters/data/make_tfjs_converter_fixtures.py

tensorflowjs pulls in TensorFlow and tf_keras, so it never enters our own
environment. For each small tf_keras model this writes, under tfjs_converter/:
NAME_layers/ (from the .h5 file), NAME_graph/ (from a SavedModel), and
NAME.npz with the input ``x`` and Keras' output ``y``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

OUT = Path(__file__).resolve().parent / "tfjs_converter"
CONVERTER = Path(sys.executable).with_name("tensorflowjs_converter")
L = keras.layers


def mlp():
    return keras.Sequential([L.InputLayer((8,)), L.Dense(16, activation="relu"), L.Dropout(0.5),
                             L.Dense(8, activation="hard_sigmoid"), L.Dense(4, activation="softmax")])


def cnn():
    return keras.Sequential([
        L.InputLayer((10, 10, 3)), L.Rescaling(1 / 4), L.Conv2D(6, 3, padding="same", activation="relu"),
        L.BatchNormalization(), L.DepthwiseConv2D(3, strides=2, padding="same"), L.MaxPooling2D(),
        L.SeparableConv2D(5, 2, activation="elu"), L.Flatten(), L.Dense(3)])


def functional():
    x = keras.Input((12, 4), name="seq")
    a = L.Conv1D(6, 3, padding="same", activation="swish")(x)
    b = L.Conv1D(6, 1)(x)
    h = L.Add()([a, b])
    h = L.ZeroPadding1D(1)(h)
    p = L.GlobalAveragePooling1D()(h)
    m = L.GlobalMaxPooling1D()(h)
    c = L.Concatenate()([p, m])
    y1 = L.Dense(3, activation="sigmoid", name="head_a")(c)
    y2 = L.LeakyReLU(0.1, name="head_b")(L.Dense(2)(c))
    return keras.Model(x, [y1, y2])


def upconv():
    x = keras.Input((6, 6, 2))
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    h = L.PReLU(shared_axes=[1, 2])(h)
    h = L.UpSampling2D(2)(h)
    h = L.Cropping2D(((1, 2), (0, 1)))(h)
    h = L.AveragePooling2D(3, strides=2, padding="same")(h)
    h = L.Permute((3, 1, 2))(h)
    h = L.Reshape((-1,))(h)
    return keras.Model(x, L.Softmax()(L.Dense(5)(h)))


def layernorm():
    # tf_keras lowers LayerNormalization to a training-mode FusedBatchNormV3 over a reshaped tensor in
    # SavedModels: the graph model is a known unsupported case; the layers model reads fine.
    return keras.Sequential([L.InputLayer((5, 6)), L.LayerNormalization(), L.Dense(3, activation="tanh")])


MODELS = {"mlp": mlp, "cnn": cnn, "functional": functional, "upconv": upconv, "layernorm": layernorm}


def randomize(model, rng):
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.4, w.shape).astype("float32") + (1.0 if "variance" in v.name else 0)
                           for w, v in zip(layer.get_weights(), layer.weights)])
    for layer in model.layers:  # keep variances positive
        if isinstance(layer, L.BatchNormalization):
            w = layer.get_weights()
            w[-1] = np.abs(w[-1]) + 0.5
            layer.set_weights(w)


def convert(args):
    subprocess.run([str(CONVERTER), *args], check=True, capture_output=True)


def main():
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    for name, build in MODELS.items():
        model = build()
        randomize(model, rng)
        shape = [2 if d is None else d for d in model.input_shape]
        x = rng.normal(0, 1, shape).astype("float32")
        y = model.predict(x, verbose=0)
        ys = y if isinstance(y, list) else [y]
        np.savez(OUT / f"{name}.npz", x=x, **{f"y{i}": v for i, v in enumerate(ys)})
        with tempfile.TemporaryDirectory() as tmp:
            h5 = Path(tmp) / f"{name}.h5"
            model.save(h5)
            saved = Path(tmp) / "saved"
            model.save(saved, save_format="tf")
            for sub, args in (("layers", ["--input_format", "keras", str(h5)]),
                              ("layers_uint8", ["--input_format", "keras", "--quantize_uint8", "*", str(h5)]),
                              ("graph", ["--input_format", "tf_saved_model", str(saved)])):
                dest = OUT / f"{name}_{sub}"
                shutil.rmtree(dest, ignore_errors=True)
                convert([*args[:-1], args[-1], str(dest)])
        print("wrote", name)


if __name__ == "__main__":
    main()
