"""The ``savedmodel`` command line: export, inspect, run, serve, convert.

Errors print one line (``error: ...``) on stderr and exit with status 1;
usage errors exit with 2, as argparse does.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from savedmodel.errors import SavedModelError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except ModuleNotFoundError as e:
        if getattr(args, "extra", None) is None:
            raise
        print(f"error: {_missing_extra_message(args.command, args.extra, e.name)}", file=sys.stderr)
        return 1
    except (SavedModelError, OSError, ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="savedmodel", description="Export, inspect and run model bundles.")
    sub = p.add_subparsers(metavar="COMMAND")

    e = sub.add_parser("export", help="export a .keras, .h5 or .onnx model file as a new bundle version")
    e.add_argument("src", help="a .keras file, a legacy Keras .h5 file or an .onnx file")
    e.add_argument("base_path", help="the model base path (version directories go under it)")
    e.add_argument("--version", type=int, default=None, help="version number (default: the next free one)")
    e.add_argument("--labels", help="a text file with one class label per line (adds a classify signature)")
    e.set_defaults(func=_export)

    i = sub.add_parser("inspect", help="show a bundle's signatures, ops, parameters and metadata")
    i.add_argument("path", help="a bundle file, a version directory or a model base path")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=_inspect)

    r = sub.add_parser("run", help="run a bundle on inputs from .npy files")
    r.add_argument("path", help="a bundle file, a version directory or a model base path")
    r.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input by name (repeat for several inputs)")
    r.add_argument("--signature", default="serving_default", help="signature to run (default: serving_default)")
    r.add_argument("--output", help="write the outputs to this .npz file instead of printing them")
    r.set_defaults(func=_run)

    # The server and the converters register their own subcommands; their
    # modules import nothing heavy until the command runs.
    for module, name, extra, help_text in (
        ("server.cli", "serve", "server", "serve models over HTTP (TF Serving REST API and KServe V2)"),
        ("converters.cli", "convert", "lite", "convert a bundle to TFLite (.tflite) or TF.js (model.json)"),
    ):
        s = sub.add_parser(name, help=help_text)
        s.set_defaults(command=name, extra=extra)
        try:
            plugin = importlib.import_module(module)
        except ModuleNotFoundError as e:
            # An optional extra is not installed: the command explains what to install.
            s.add_argument("rest", nargs=argparse.REMAINDER)
            s.set_defaults(func=partial(_raise_missing, e))
            continue
        plugin.add_arguments(s)
        s.set_defaults(func=plugin.run)
    return p


def _raise_missing(error: ModuleNotFoundError, args: argparse.Namespace) -> int:
    raise error


def _missing_extra_message(command: str, extra: str, module: str | None) -> str:
    return (f"'savedmodel {command}' needs the {extra} extra (module {module!r} is missing); "
            f"install it with: pip install 'savedmodel-toolkit[{extra}]'")


def _export(args: argparse.Namespace) -> int:
    from savedmodel.export import save

    labels = None
    if args.labels:
        labels = [line.strip() for line in Path(args.labels).read_text().splitlines() if line.strip()]
    path = save(args.src, args.base_path, version=args.version, labels=labels)
    print(f"wrote {path}")
    return 0


def describe(path: str | Path) -> dict[str, Any]:
    """What ``inspect`` shows, as a JSON-able dict."""
    from savedmodel.reader import read_bundle
    from savedmodel.versions import resolve

    file = resolve(Path(path))
    bundle = read_bundle(file)
    graph = bundle.graph
    counts: dict[str, int] = {}
    for n in graph.nodes:
        counts[n.op] = counts.get(n.op, 0) + 1
    return {
        "file": str(file),
        "file_size": file.stat().st_size,
        "format_version": bundle.format_version,
        "producer": f"{bundle.producer} {bundle.producer_version}",
        "created": bundle.created,
        "signatures": {name: sig.to_json() for name, sig in bundle.signatures.items()},
        "ops": counts,
        "nodes": len(graph.nodes),
        "parameters": graph.parameter_count(),
        "assets": sorted(bundle.assets),
        "metadata": bundle.metadata,
    }


def _inspect(args: argparse.Namespace) -> int:
    info = describe(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['file']} ({info['file_size']:,} bytes, format {info['format_version']}, "
          f"by {info['producer']}, {info['created']})")
    for name, sig in info["signatures"].items():
        print(f"\nsignature_def[{name!r}]: method {sig['method']}")
        for kind in ("inputs", "outputs"):
            print(f"  {kind}:")
            for alias, spec in sig[kind].items():
                shape = ", ".join("-1" if d is None else str(d) for d in spec["shape"])
                print(f"    {kind}[{alias!r}]  dtype: {spec['dtype']}  shape: ({shape})  tensor: {spec['name']}")
    print(f"\nops ({info['nodes']} nodes): " + ", ".join(f"{op} x{n}" for op, n in sorted(info["ops"].items())))
    print(f"parameters: {info['parameters']:,}")
    if info["assets"]:
        print(f"assets: {', '.join(info['assets'])}")
    print(f"metadata: {json.dumps(info['metadata'], default=str)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import runtime

    model = runtime.load(args.path)
    if args.signature not in model.signatures:
        raise SavedModelError(f"no signature {args.signature!r}; the model has {sorted(model.signatures)}")
    inputs = {}
    for item in args.input:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise ValueError(f"--input must look like NAME=FILE.npy, got {item!r}")
        inputs[name] = np.load(file, allow_pickle=False)
    outputs = model.signatures[args.signature](**inputs)
    if args.output:
        np.savez(args.output, **outputs)
        print(f"wrote {args.output}: " + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in outputs.items()))
    else:
        with np.printoptions(threshold=200, precision=6, suppress=True):
            for name, value in outputs.items():
                print(f"{name}: {value.dtype} {list(value.shape)}\n{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
