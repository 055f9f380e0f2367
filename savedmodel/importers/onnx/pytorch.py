"""PyTorch modules through PyTorch's ONNX exporter: module -> temporary .onnx -> Graph.

torch is imported here only, when a module is handed in. The export declares
the batch axis (axis 0 of every input) dynamic, so the imported graph keeps
it as None.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from savedmodel.errors import SavedModelError
from savedmodel.ir import Graph

OPSET = 17
BATCH_AXIS_NAME = "batch"


def is_torch_module(obj: Any) -> bool:
    """True for instances of torch.nn.Module (and subclasses), without importing torch."""
    return any(c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in type(obj).__mro__)


def import_torch_module(module: Any, example_inputs: Sequence[Any] | None) -> tuple[Graph, dict[str, Any]]:
    """The Graph of a torch.nn.Module traced on ``example_inputs`` (a tuple of tensors), and its source.

    >>> graph, source = import_torch_module(net, (torch.randn(1, 3, 32, 32),))   # doctest: +SKIP
    >>> source["framework"]                                                      # doctest: +SKIP
    'pytorch'
    """
    import onnx
    import torch

    from savedmodel.importers.onnx import import_onnx_file

    inputs = _example_tuple(example_inputs)
    names = _input_names(module, len(inputs))
    with tempfile.TemporaryDirectory(prefix="savedmodel-torch-") as tmp:
        path = Path(tmp) / "model.onnx"
        was_training = module.training
        module.eval()
        try:
            torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=OPSET, input_names=names,
                              dynamic_axes={n: {0: BATCH_AXIS_NAME} for n in names})
        except Exception as e:  # torch raises many types for untraceable modules; say which module failed
            raise SavedModelError(f"PyTorch's ONNX exporter failed on {type(module).__name__}: "
                                  f"{type(e).__name__}: {e}") from e
        finally:
            module.train(was_training)
        graph, source = import_onnx_file(path)
    source.update({"framework": "pytorch", "version": torch.__version__, "class": type(module).__name__,
                   "exporter": "torch.onnx.export (TorchScript)", "onnx_version": onnx.__version__})
    return graph, source


def _example_tuple(example_inputs: Sequence[Any] | None) -> tuple[Any, ...]:
    import torch

    if example_inputs is None:
        raise SavedModelError("saving a torch.nn.Module needs example_inputs=(tensor, ...): PyTorch exports by "
                              "running the module once on them")
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    inputs = tuple(example_inputs)
    bad = [type(x).__name__ for x in inputs if not isinstance(x, torch.Tensor)]
    if not inputs or bad:
        raise SavedModelError(f"example_inputs must be a non-empty tuple of torch tensors; received "
                              f"{[type(x).__name__ for x in inputs]}")
    return inputs


def _input_names(module: Any, count: int) -> list[str]:
    """The forward() parameter names (the signature's input names), or input_0, input_1..."""
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params[:count] if len(params) >= count else [f"input_{i}" for i in range(count)]
