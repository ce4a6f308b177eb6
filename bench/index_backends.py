"""`chatbot eval` on both index backends: the same labelled set's index saved as files (`faiss`)
and in PostgreSQL with pgvector (`pgvector`, a server of its own from the pgserver wheel, as the
tests start it), each loaded back and evaluated by the same code. Prints each backend's figures,
their largest difference, and the time to save and to load a version.

    .venv/bin/python bench/index_backends.py [--knowledge K] [--queries Q ...] [--limit N]

Default: the development set (dstc11, in-scope and out-of-scope turns). Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chatbot.config import load_settings  # noqa: E402
from chatbot.evaluation import evaluate_index, load_knowledge, load_queries, prepare_index  # noqa: E402
from chatbot.index_store import FileVersions, PgVersions  # noqa: E402
from labelled_set import DSTC11  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402


def _figures(report: dict, prefix: str = "") -> dict[str, float]:
    """Every number of a report, flattened, the latencies left out."""
    out = {}
    for key, value in report.items():
        if key in ("latency_ms", "calibration"):
            continue
        if isinstance(value, dict):
            out |= _figures(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--knowledge", type=Path, default=DSTC11 / "knowledge.jsonl")
    parser.add_argument("--queries", type=Path, action="append")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    queries_from = args.queries or [DSTC11 / "queries.jsonl", DSTC11 / "queries_out_of_scope.jsonl"]
    settings = load_settings()
    index, embedder = prepare_index(settings, load_knowledge(args.knowledge), progress=False)
    queries = load_queries(queries_from, args.limit)
    print(f"{len(index.chunks)} passages, {len(queries)} queries")
    reports = {}
    with tempfile.TemporaryDirectory() as tmp, postgres_server(pgvector=True) as url:
        for name, versions in (("faiss", FileVersions(Path(tmp) / "index", Path(tmp) / "kb")), ("pgvector", PgVersions(url))):
            started = time.perf_counter()
            versions.save(index, lambda step: None)
            saved = time.perf_counter() - started
            started = time.perf_counter()
            loaded = versions.load()
            load_s = time.perf_counter() - started
            reports[name] = evaluate_index(settings, loaded, embedder, queries, progress=False)
            print(f"{name:9} save {saved:6.2f} s, load {load_s:6.2f} s: {json.dumps({k: reports[name][k] for k in ('all', 'abstain', 'latency_ms') if k in reports[name]})}")
    faiss, pgvector = _figures(reports["faiss"]), _figures(reports["pgvector"])
    differences = {k: abs(faiss[k] - pgvector.get(k, float("nan"))) for k in faiss}
    worst = max(differences, key=lambda k: differences[k])
    print(f"largest difference between the backends: {differences[worst]:.4f} ({worst}) over {len(differences)} figures")


if __name__ == "__main__":
    main()
