"""``savedmodel convert SRC --to web``: converters.web.cli (run, add_arguments, the standalone main)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import runtime
import savedmodel
from converters.web.cli import add_arguments, main, run
from tests.converters.web_cases import big_mlp, dense_case, residual_cnn

pytestmark = pytest.mark.web


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli") / "resnet"
    graph = residual_cnn()
    graph.outputs = graph.outputs[:1]  # one output (the class probabilities), so that labels apply
    savedmodel.save(graph, base, labels=["a", "b", "c", "d"])
    return base


def test_convert_a_bundle(bundle, tmp_path, capsys):
    out = tmp_path / "web"
    assert main([str(bundle), "--out", str(out), "--quantize", "uint8"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out / 'model.json'} (layers-model, 1 shard(s),") and "uint8" in printed
    doc = json.loads((out / "model.json").read_text())
    assert doc["userDefinedMetadata"]["labels"] == ["a", "b", "c", "d"]
    assert all(w["quantization"]["dtype"] == "uint8" for w in doc["weightsManifest"][0]["weights"])
    x = np.random.default_rng(0).normal(0, 1, (2, 12, 12, 3)).astype(np.float32)
    got = runtime.load(out / "model.json").predict(x)
    want = runtime.load(bundle).predict(x)
    assert float(np.max(np.abs(got - want))) < 0.1  # uint8 weights: probabilities move by a few percent


def test_shard_size_and_graph_format(tmp_path, capsys):
    base = tmp_path / "mlp"
    savedmodel.save(big_mlp(), base)
    assert main([str(base), "--out", str(tmp_path / "w"), "--shard-size-bytes", "1000000", "--format", "graph"]) == 0
    assert "graph-model, 5 shard(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "w").glob("*.bin"))[0] == "group1-shard1of5.bin"


def test_fallback_is_reported(tmp_path, capsys):
    savedmodel.save(dense_case("gelu_approximate")(), tmp_path / "m")
    assert main([str(tmp_path / "m"), "--out", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "load it with tf.loadGraphModel" in out and "note: a graph model was written because" in out


def test_errors_print_one_line(tmp_path, capsys):
    savedmodel.save(dense_case("exponential")(), tmp_path / "m")
    assert main([str(tmp_path / "m"), "--out", str(tmp_path / "w"), "--format", "layers"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: node 'out' cannot be written as a TF.js layer") and err.count("\n") == 1
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "w")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_run_with_the_common_parser_namespace(bundle, tmp_path, capsys):
    # What converters/cli.py passes: its own src/out/quantize, plus our flags merged in by add_arguments.
    common = argparse.ArgumentParser()
    common.add_argument("src")
    common.add_argument("--to", choices=["lite", "web"], required=True)
    common.add_argument("--out", required=True)
    common.add_argument("--quantize", default=None)
    add_arguments(common)
    assert sum(a.dest == "quantize" for a in common._actions) == 1  # not added twice
    args = common.parse_args([str(bundle), "--to", "web", "--out", str(tmp_path / "w"), "--quantize", "float16"])
    assert run(args) == 0
    args = common.parse_args([str(bundle), "--to", "web", "--out", str(tmp_path / "w"), "--quantize", "int8"])
    assert run(args) == 2
    assert "error: --quantize 'int8' is not available for --to web; choose one of uint8, uint16, float16" in \
        capsys.readouterr().err
