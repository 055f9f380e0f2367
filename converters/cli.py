"""``savedmodel convert SRC --to lite|web --out PATH``: the converters' command line.

    savedmodel convert models/mnist --to lite --out mnist.tflite --calibration calib.npz \\
        [--mode int8|float16|dynamic|float32] [--int8-io]

``--to lite`` runs :func:`converters.lite.convert` and prints its report;
``--to web`` hands the parsed arguments to ``converters.web.cli.run(args)``
(whose ``add_arguments``, when present, adds its own flags to this parser).
The ``savedmodel`` CLI wires :func:`add_arguments` and :func:`run` in as its
``convert`` command; errors propagate to it as SavedModelError.
"""

from __future__ import annotations

import argparse
import importlib
import json

from savedmodel.errors import SavedModelError

TARGETS = ("lite", "web")


def _web_cli():
    try:
        return importlib.import_module("converters.web.cli")
    except ImportError:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``convert`` arguments to ``parser``."""
    from converters.lite.calibration import METHODS
    from converters.lite.convert import MODES

    parser.add_argument("src", help="a bundle (model base path, version directory or file) or a .keras/.h5 file")
    parser.add_argument("--to", choices=TARGETS, default="lite", help="target format (default: lite)")
    parser.add_argument("--out", required=True, help="the .tflite file (lite) or output directory (web) to write")
    lite = parser.add_argument_group("lite")
    lite.add_argument("--calibration", metavar="DATA.npz",
                      help="representative data for int8: a .npy (one input) or .npz (one array per input name)")
    lite.add_argument("--mode", choices=MODES, default="int8",
                      help="int8 (full integer, default), float16 (float16 weights), dynamic (int8 weights, "
                           "float activations) or float32")
    lite.add_argument("--int8-io", action="store_true", help="int8 model inputs and outputs instead of float32")
    lite.add_argument("--calibration-method", choices=METHODS, default="minmax",
                      help="activation ranges from min/max (default, as TF) or percentiles")
    lite.add_argument("--percentile", type=float, default=99.99, help="the percentile of --calibration-method "
                                                                      "percentile (default 99.99)")
    lite.add_argument("--validation", metavar="DATA.npz",
                      help="held-out data on which the report measures error against the float model")
    lite.add_argument("--exact-ranges", action="store_true",
                      help="calibrate the true ranges instead of reproducing TF's converter bit for bit")
    lite.add_argument("--json", action="store_true", help="print the report as JSON")
    lite.add_argument("--quiet", action="store_true", help="no progress bar")
    web = _web_cli()
    if web is not None and hasattr(web, "add_arguments"):
        web.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``convert`` with parsed arguments; returns the exit status."""
    if args.to == "web":
        web = _web_cli()
        if web is None:
            raise SavedModelError("--to web needs converters.web, which is not installed")
        return int(web.run(args) or 0)
    from converters.lite import convert

    report = convert(
        args.src, args.out, representative_data=args.calibration, mode=args.mode, int8_io=args.int8_io,
        calibration=args.calibration_method, percentile=args.percentile, validation_data=args.validation,
        tf_compatible=not args.exact_ranges, progress=False if args.quiet else None,
    )
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report)
    return 0


def main(argv=None) -> int:
    """``python -m converters.cli``: the convert command on its own."""
    parser = argparse.ArgumentParser(prog="python -m converters.cli", description="Convert a model bundle.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
