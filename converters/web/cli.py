"""``savedmodel convert SRC --to web --out DIR``: the web converter's command line.

The common ``convert`` parser (converters/cli.py) dispatches ``--to web`` to
:func:`run`; :func:`add_arguments` adds the web-specific flags to it (only
those it does not define already). Standalone::

    python -m converters.web.cli models/mnist --out web_model/ --quantize uint8

Exit status 0 on success, 1 on an error (one ``error: ...`` line on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from converters.web import format as fmt
from converters.web.convert import FORMATS, QUANTIZATIONS, convert
from savedmodel.errors import SavedModelError


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    if flag not in parser._option_string_actions:  # the common parser may define it already
        parser.add_argument(flag, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the web converter's flags (``--quantize``, ``--shard-size-bytes``, ``--format``) to ``parser``."""
    _add(parser, "--quantize", default=None, metavar="|".join(QUANTIZATIONS),
         help="web: store float weights as uint8 or uint16 (affine, 0.0 exact) or float16")
    _add(parser, "--shard-size-bytes", type=int, default=fmt.DEFAULT_SHARD_SIZE, metavar="N",
         help=f"web: largest weight shard in bytes (default {fmt.DEFAULT_SHARD_SIZE}, 4 MB)")
    _add(parser, "--format", default="auto", choices=FORMATS,
         help="web: layers (tf.loadLayersModel), graph (tf.loadGraphModel) or auto (layers when TF.js has a "
              "faithful layer for every node, else graph; default)")


def run(args: argparse.Namespace) -> int:
    """Convert ``args.src`` into ``args.out``; print what was written."""
    src = getattr(args, "src", None) or getattr(args, "SRC", None)
    out = getattr(args, "out", None)
    if src is None or out is None:
        print("error: convert --to web needs SRC and --out DIR", file=sys.stderr)
        return 2
    quantize = getattr(args, "quantize", None)
    if quantize is not None and quantize not in QUANTIZATIONS:
        print(f"error: --quantize {quantize!r} is not available for --to web; choose one of "
              f"{', '.join(QUANTIZATIONS)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        result = convert(src, out, quantization=quantize,
                         shard_size=getattr(args, "shard_size_bytes", fmt.DEFAULT_SHARD_SIZE),
                         format=getattr(args, "format", "auto") or "auto")
    except (SavedModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    loader = "tf.loadLayersModel" if result.format == fmt.FORMAT_LAYERS else "tf.loadGraphModel"
    print(f"wrote {result.path} ({result.format}, {len(result.shards)} shard(s), {result.size:,} bytes"
          f"{', ' + quantize if quantize else ''}) in {seconds:.2f} s; load it with {loader}")
    if result.fallback:
        print(f"note: a graph model was written because {result.fallback}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converters.web.cli",
                                     description="Convert a model bundle to a TF.js model (model.json + shards).")
    parser.add_argument("src", help="a bundle file, version directory or model base path, or a .keras/.h5 file")
    parser.add_argument("--out", required=True, help="the output directory")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
