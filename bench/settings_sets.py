"""Each retrieval setting's effect on every labelled set: hit@1 and hit@5 of the in-scope questions
(all, and follow-ups apart) with the shipped settings and with one setting changed at a time, and
the plain baseline the issue holds every set to (reciprocal-rank fusion of BM25 and the dense
models over the question with the last 2 turns, no subject tracking).

    .venv/bin/python bench/settings_sets.py [--only SET ...] [--variant NAME ...]

Sets as in `bench/cross_domain.py`. Not a test: the table of docs/quality.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.calibration import resolve
from chatbot.config import load_settings
from chatbot.evaluation import first_gold_rank, load_knowledge, load_queries, prepare_index
from chatbot.retrieval import Retriever
from cross_domain import labelled_sets

VARIANTS = {
    "shipped": {},
    "plain rrf (question + 2 turns)": {"fusion": "rrf", "subject_tracking": False, "bm25_weight": 1.0},
    "no subject tracking": {"subject_tracking": False},
    "title_weight 0": {"title_weight": 0.0},
    "no change-of-topic check": {"topic_change_gap": None},
    "check on every follow-up": {"gate": False},
    "question_weight 0": {"question_weight": 0.0},
    "history_roles user": {"history_roles": "user"},
    "bm25_weight 0": {"bm25_weight": 0.0},
    "bm25_weight 0.5": {"bm25_weight": 0.5},
    "score_answers off": {"score_answers": False},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", help="sets to run (default: every set)")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="variants to run (default: all)")
    args = parser.parse_args()
    settings = load_settings()
    for name, spec in labelled_sets().items():
        if args.only and name not in args.only:
            continue
        index, embedder = prepare_index(settings, load_knowledge(spec["knowledge"]), progress=False)
        queries = load_queries(spec["in"])
        for lang in sorted({q.lang for q in queries}):
            mine = [q for q in queries if q.lang == lang]
            print(f"== {name} {lang}: {len(mine)} questions, {sum(bool(q.history) for q in mine)} follow-ups", flush=True)
            for variant, changes in VARIANTS.items():
                if args.variant and variant not in args.variant:
                    continue
                started = time.perf_counter()
                changes = dict(changes)
                gate = changes.pop("gate", True)  # the change-of-topic check only for questions on topic by their own words
                retriever = Retriever(index, embedder, settings.retrieval.model_copy(update=changes))
                enough = resolve(retriever.settings, index.manifest.get("calibration")).answer if gate else None
                ranks = [
                    (bool(q.history), first_gold_rank([h.chunk.metadata["id"] for h in retriever.retrieve(q.question, q.history, k=5, enough=enough).passages], q.gold_ids))
                    for q in mine
                ]
                print(f"   {variant:32} {_hits(ranks)}  follow-ups {_hits([r for r in ranks if r[0]])}  ({time.perf_counter() - started:.0f} s)", flush=True)


def _hits(ranks: list[tuple[bool, int | None]]) -> str:
    if not ranks:
        return "-"
    n = len(ranks)
    return f"{sum(r == 1 for _, r in ranks) / n:.3f} / {sum(r is not None for _, r in ranks) / n:.3f}"


if __name__ == "__main__":
    main()
