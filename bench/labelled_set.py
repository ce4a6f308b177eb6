"""The command line shared by the benchmark scripts that run a labelled set (format:
../shared/eval/README.md): `--knowledge`, `--queries` (repeatable), `--limit`, `--set key=value`.
Without `--knowledge` and `--queries`, the dstc11 development set and its out-of-scope turns."""

from __future__ import annotations

import argparse
from pathlib import Path

DSTC11 = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "dstc11"


def parse(set_help: str) -> tuple[argparse.Namespace, dict[str, str], list[Path]]:
    """The parsed arguments, the `--set` overrides as a dict, and the query files."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--knowledge", type=Path, default=DSTC11 / "knowledge.jsonl")
    parser.add_argument("--queries", type=Path, action="append")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--set", action="append", default=[], help=set_help)
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    return args, overrides, args.queries or [DSTC11 / "queries.jsonl", DSTC11 / "queries_out_of_scope.jsonl"]
