"""Where a query's time goes: each part of `Retriever.retrieve` timed over a labelled set's
in-scope questions (embedding the question and its conversation with both models, the dense
searches, BM25, the best cosine over every passage for the topic check, and the rest: fusion,
subject tracking, the form check).

    .venv/bin/python bench/query_parts.py [--knowledge K] [--queries Q ...] [--limit N]

Defaults: the development set (dstc11), its first 300 in-scope questions. Prints milliseconds per
query, p50 of the whole and the mean of each part (docs/quality.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import chatbot.retrieval as retrieval
from chatbot.calibration import resolve
from chatbot.config import load_settings
from chatbot.evaluation import load_knowledge, load_queries, prepare_index
from chatbot.index import KnowledgeIndex
from chatbot.runtime import turn_forms

DSTC11 = ROOT.parent / "shared" / "eval" / "dstc11"


def timed(owner, name: str, part: str, spent: dict[str, float]) -> None:
    """Replace `owner.name` with a wrapper that adds its time to `spent[part]`."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[part] = spent.get(part, 0.0) + (time.perf_counter() - started) * 1000

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--knowledge", type=Path, default=DSTC11 / "knowledge.jsonl")
    parser.add_argument("--queries", type=Path, action="append")
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    settings = load_settings()
    index, embedder = prepare_index(settings, load_knowledge(args.knowledge), progress=False)
    retriever = retrieval.Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder))
    thresholds = resolve(settings.retrieval, index.manifest.get("calibration"))
    queries = [q for q in load_queries(args.queries or [DSTC11 / "queries.jsonl"]) if q.in_scope][: args.limit]
    spent: dict[str, float] = {}
    timed(retrieval, "embed_queries", "embed: question (+ searched text), one batch", spent)
    timed(retriever, "_embed", "embed: the conversation for the topic check", spent)
    timed(KnowledgeIndex, "search", "dense search (FAISS)", spent)
    timed(KnowledgeIndex, "bm25_scores", "BM25", spent)
    timed(retriever, "best_cosines", "best cosine over every passage (topic checks)", spent)
    retriever.retrieve(queries[0].question, queries[0].history, enough=thresholds.answer)  # warm up
    spent.clear()
    totals = []
    for q in queries:
        started = time.perf_counter()
        retriever.retrieve(q.question, q.history, k=5, enough=thresholds.answer)
        totals.append((time.perf_counter() - started) * 1000)
    n = len(queries)
    print(f"{n} queries, {len(index.chunks)} passages: p50 {statistics.median(totals):.1f} ms, mean {statistics.mean(totals):.1f} ms")
    for part, ms in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"   {part:52} {ms / n:6.1f} ms  ({ms / sum(totals):.0%})")
    rest = sum(totals) - sum(spent.values())
    print(f"   {'the rest (fusion, subjects, form check)':52} {rest / n:6.1f} ms  ({rest / sum(totals):.0%})")


if __name__ == "__main__":
    main()
