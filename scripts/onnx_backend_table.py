"""Count ONNX's backend node tests per op through our importer and runtime, as a Markdown table.

Runs the same collection as tests/savedmodel/test_onnx_backend.py and writes the table between the
``<!-- backend-table -->`` markers of docs/ONNX.md, and the importer's op list between the
``<!-- supported-ops -->`` markers (or prints both with --print).

    .venv/bin/python scripts/onnx_backend_table.py           # rewrite the table in docs/ONNX.md
    .venv/bin/python scripts/onnx_backend_table.py --print   # print it

Cases whose outcome disagrees with the test module's EXPECTED_FAILURES are listed on stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ONNX.md"
TABLE = "backend-table"
OPS = "supported-ops"


def outcomes() -> tuple[dict[str, Counter], Counter, list[str]]:
    """Per op: passed / failed / expected-failure counts; the cases left out, by (op, reason); and the cases
    whose outcome disagrees with the test module's EXPECTED_FAILURES (with why)."""
    sys.path.insert(0, str(ROOT))
    from tests.savedmodel import test_onnx_backend as backend

    cases, left_out = backend.collect()
    per_op: dict[str, Counter] = defaultdict(Counter)
    surprises = []
    for case in cases:
        expected = backend.expected_failure(case.name)
        try:
            backend.check_outputs(case, backend.run_case(case))
            result = "passed"
            if expected:
                surprises.append(f"{case.name}: passes, but is listed as failing ({expected[0]})")
        except Exception as e:  # noqa: BLE001 - any failure is counted; the test module reports it in detail
            result = "expected failure" if expected else "failed"
            if not expected:
                surprises.append(f"{case.name}: fails, unlisted: {type(e).__name__}: {str(e).splitlines()[0]}")
        per_op[case.op][result] += 1
    return per_op, left_out, surprises


def table(per_op: dict[str, Counter], left_out: Counter) -> str:
    """The Markdown table: one row per op, then a total row."""
    skipped: Counter = Counter()
    for (op, _), n in left_out.items():
        skipped[op] += n
    lines = ["| op | cases run | passed | expected failures | failed | not run |",
             "| --- | --- | --- | --- | --- | --- |"]
    total: Counter = Counter()
    for op in sorted(set(per_op) | set(skipped)):
        c = per_op.get(op, Counter())
        run = sum(c.values())
        total.update(c)
        total["not run"] += skipped[op]
        lines.append(f"| {op} | {run} | {c['passed']} | {c['expected failure']} | {c['failed']} | {skipped[op]} |")
    run = total["passed"] + total["expected failure"] + total["failed"]
    lines.append(f"| **total** | {run} | {total['passed']} | {total['expected failure']} | {total['failed']} | "
                 f"{total['not run']} |")
    return "\n".join(lines)


def supported() -> str:
    """The importer's converted ops as Markdown bullets, one per domain."""
    from savedmodel.importers.onnx.registry import supported_ops

    by_domain: dict[str, list[str]] = defaultdict(list)
    for entry in supported_ops():
        domain, op = entry.split("::")
        by_domain[domain].append(op)
    return "\n".join(f"- **{domain}**: {', '.join(ops)}." for domain, ops in sorted(by_domain.items()))


def replace_between(doc: str, marker: str, text: str) -> str:
    """``doc`` with the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` replaced."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, found, rest = doc.partition(start)
    if not found:
        raise SystemExit(f"{DOC} has no {start} marker")
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{text}\n{end}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table instead of writing docs/ONNX.md")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's reference warns on log(0) and the like while building cases
        per_op, left_out, surprises = outcomes()
    for line in surprises:
        print("EXPECTED_FAILURES is out of date:", line, file=sys.stderr)
    counts = table(per_op, left_out)
    ops = supported()
    if args.print:
        print(ops, counts, sep="\n\n")
        return
    DOC.write_text(replace_between(replace_between(DOC.read_text(), OPS, ops), TABLE, counts))


if __name__ == "__main__":
    main()
