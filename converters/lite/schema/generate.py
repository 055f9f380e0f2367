"""Regenerate ``tflite_generated.py`` from ``tflite.fbs`` with flatc.

    python converters/lite/schema/generate.py [--flatc PATH]

The generated module is committed, so flatc is needed only to change the
schema subset, never to install or run the converter.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "tflite.fbs"
TARGET = HERE / "tflite_generated.py"
HEADER = "# ruff: noqa\n# Generated from tflite.fbs by converters/lite/schema/generate.py; do not edit.\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flatc", default=shutil.which("flatc") or "flatc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.flatc, "--python", "--gen-onefile", "-o", tmp, str(SCHEMA)], check=True)
        text = (Path(tmp) / "tflite_generated.py").read_text()
    TARGET.write_text(HEADER + text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
