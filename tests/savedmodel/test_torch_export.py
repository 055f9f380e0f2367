"""PyTorch modules exported through torch.onnx and the ONNX importer, checked against torch's own outputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import runtime  # noqa: E402
import savedmodel  # noqa: E402
from savedmodel.errors import SavedModelError  # noqa: E402
from savedmodel.export import to_graph  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
BATCHES = (1, 3)


def _randomize_batch_norms(module: nn.Module) -> None:
    """Non-trivial running statistics, so folding or skipping batch norm would show."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) - 0.5)


class BasicBlock(nn.Module):
    """ResNet's basic block, with a 1x1 downsample when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1, depthwise 3x3 with ReLU6, project 1x1, residual."""

    def __init__(self, c: int = 8, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.block = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.block(x)


class PlainCNN(nn.Module):
    """conv, batch norm, relu, pooling, flatten by view(x.size(0), -1), gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 7 * 7, 4)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x))))))
        return self.fc(x.view(x.size(0), -1))


class LSTMClassifier(nn.Module):
    def __init__(self, layers: int = 1, bidirectional: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 12, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(12 * (2 if bidirectional else 1), 3)

    def forward(self, ids):
        y, _ = self.lstm(self.embed(ids))
        return self.fc(y[:, -1])


class GRUModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y, h = self.gru(x)
        return self.fc(y[:, -1] + h[0])


def _float_input(shape):
    return lambda batch: torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))


def _ids(steps: int):
    return lambda batch: torch.randint(0, 50, (batch, steps), generator=torch.Generator().manual_seed(batch))


CASES = {
    "resnet": (SmallResNet, _float_input((3, 16, 16))),
    "inverted_residual": (InvertedResidual, _float_input((8, 10, 10))),
    "plain_cnn": (PlainCNN, _float_input((3, 16, 16))),
    "lstm": (LSTMClassifier, _ids(6)),
    "lstm_2layer_bidirectional": (lambda: LSTMClassifier(2, True), _ids(6)),
    "gru": (GRUModel, _float_input((5, 4))),
}


def _build(name: str) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    factory, make_input = CASES[name]
    module = factory().eval()
    _randomize_batch_norms(module)
    return module, make_input


@pytest.mark.parametrize("name", sorted(CASES))
def test_saved_module_predicts_like_torch_at_two_batch_sizes(name, tmp_path):
    module, make_input = _build(name)
    path = savedmodel.save(module, tmp_path / name, example_inputs=(make_input(2),))
    model = runtime.load(path)
    for batch in BATCHES:
        x = make_input(batch)
        with torch.no_grad():
            expected = module(x).numpy()
        got = model.predict(x.numpy())
        got = got if isinstance(got, np.ndarray) else next(iter(got.values()))
        assert got.shape == expected.shape
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_batch_axis_stays_dynamic_and_source_names_pytorch(tmp_path):
    module, make_input = _build("plain_cnn")
    graph, source = to_graph(module, example_inputs=(make_input(2),))
    assert graph.inputs[0].shape == (None, 3, 16, 16)
    assert graph.outputs[0].shape == (None, 4)
    assert source["framework"] == "pytorch"
    assert source["version"] == torch.__version__
    assert source["class"] == "PlainCNN"
    bundle = savedmodel.load(savedmodel.save(module, tmp_path / "m", example_inputs=(make_input(2),)))
    assert bundle.metadata["source"]["framework"] == "pytorch"


def test_plain_cnn_keeps_at_most_one_transpose():
    """NCHW -> NHWC once at the input; the flatten permutes the Gemm's rows instead of the data."""
    module, make_input = _build("plain_cnn")
    graph, _ = to_graph(module, example_inputs=(make_input(2),))
    transposes = [n for n in graph.nodes if n.op in ("Transpose", "Permute")]
    assert len(transposes) <= 1, [n.op for n in graph.nodes]
    assert graph.nodes[0].op in ("Transpose", "Permute")


def test_lstm_becomes_the_ir_lstm_op():
    module, make_input = _build("lstm_2layer_bidirectional")
    graph, _ = to_graph(module, example_inputs=(make_input(2),))
    ops = [n.op for n in graph.nodes]
    assert ops.count("LSTM") == 4  # 2 layers x 2 directions
    assert "Embedding" in ops


def test_gru_weights_match_keras_gru():
    """The converted GRU weights make Keras' own GRU layer compute torch's output (independent of our kernel)."""
    keras = pytest.importorskip("keras")
    gru = nn.GRU(4, 6, batch_first=True).eval()
    graph, _ = to_graph(gru, example_inputs=(torch.randn(2, 5, 4),))
    node = next(n for n in graph.nodes if n.op == "GRU")
    layer = keras.layers.GRU(6, return_sequences=True, reset_after=node.attrs["reset_after"])
    x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    layer(x)
    layer.set_weights([graph.weights[node.weights[r]] for r in ("kernel", "recurrent_kernel", "bias")])
    with torch.no_grad():
        expected = gru(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=RTOL, atol=ATOL)


def _transformer() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


def test_transformer_encoder_predicts_like_torch_at_two_batch_sizes(tmp_path):
    """Attention merges the batch with the heads ((seq, batch*heads, head_dim)); the import keeps them apart."""
    module = _transformer()
    path = savedmodel.save(module, tmp_path / "tr", example_inputs=(torch.randn(2, 5, 16),))
    model = runtime.load(path)
    for batch in BATCHES:
        x = torch.randn(batch, 5, 16, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = module(x).numpy()
        got = model.predict(x.numpy())
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


class MaskedEncoder(nn.Module):
    """A transformer encoder called with a key padding mask (True = padding), as in text classifiers."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _transformer()

    def forward(self, x, padding):
        return self.encoder(x, src_key_padding_mask=padding)


def test_transformer_encoder_with_a_key_padding_mask_predicts_like_torch(tmp_path):
    module = MaskedEncoder().eval()
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 3:] = True
    path = savedmodel.save(module, tmp_path / "masked", example_inputs=(torch.randn(2, 5, 16), padding))
    model = runtime.load(path)
    for batch in BATCHES:
        x = torch.randn(batch, 5, 16, generator=torch.Generator().manual_seed(batch))
        pad = torch.zeros(batch, 5, dtype=torch.bool)
        pad[-1, 2:] = True
        with torch.no_grad():
            expected = module(x, pad).numpy()
        got = model.predict({"x": x.numpy(), "padding": pad.numpy()})
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_module_without_example_inputs_is_refused():
    with pytest.raises(SavedModelError, match=r"needs example_inputs=\(tensor, \.\.\.\)"):
        to_graph(PlainCNN())


def test_example_inputs_must_be_tensors():
    with pytest.raises(SavedModelError, match=r"example_inputs must be a non-empty tuple of torch tensors; "
                                              r"received \['ndarray'\]"):
        to_graph(PlainCNN(), example_inputs=(np.zeros((1, 3, 16, 16), np.float32),))


def test_example_inputs_for_a_non_torch_source_is_refused(tmp_path):
    with pytest.raises(SavedModelError, match=r"example_inputs= is only for torch.nn.Module sources; "
                                              r"received a PosixPath"):
        to_graph(tmp_path / "model.onnx", example_inputs=(torch.zeros(1),))


def test_untraceable_module_reports_the_exporter_failure():
    class Spectrum(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs()  # no ONNX export for aten::fft_rfft at opset 17

    with pytest.raises(SavedModelError, match=r"PyTorch's ONNX exporter failed on Spectrum: \w+"):
        to_graph(Spectrum(), example_inputs=(torch.ones(1, 8),))


def test_a_file_from_the_dynamo_exporter_predicts_like_torch(tmp_path):
    """torch.onnx.export(dynamo=True) writes other shape patterns (Expand of zeros to the batch size)."""
    module, make_input = _build("lstm")
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(module, (make_input(2),), str(path), dynamo=True, input_names=["ids"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=18, verbose=False)
    model = runtime.load(savedmodel.save(path, tmp_path / "m"))
    for batch in BATCHES:
        ids = make_input(batch)
        with torch.no_grad():
            expected = module(ids).numpy()
        np.testing.assert_allclose(model.predict(ids.numpy()), expected, rtol=RTOL, atol=ATOL)
