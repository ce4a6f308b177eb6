"""Follow-ups that change topic without naming it, made from a labelled set's first turns: one
question, the bot's answer (the text of its first gold passage), then a question whose gold passages
lie under other titles. Is the new question held to the old document?

    .venv/bin/python bench/topic_changes.py [--knowledge K] [--queries Q ...] [--pairs N] [--set key=value ...]

Defaults: the sample knowledge's English set (`bench/shop/`). Prints hit@1 and hit@5 over the pairs
for the configured retrieval and for variants with the follow-up rules turned off (docs/quality.md).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.calibration import resolve
from chatbot.config import load_settings
from chatbot.evaluation import load_knowledge, load_queries, prepare_index
from chatbot.retrieval import Retriever

SHOP = Path(__file__).resolve().parent / "shop"
VARIANTS = {
    "configured": {},
    "no change-of-topic check": {"topic_change_gap": None},
    "check on every follow-up (not only on-topic ones)": {"gate": False},
    "no title score, no check (the fallback before)": {"title_weight": 0, "topic_change_gap": None},
    "question only": {"history_turns": 0},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--knowledge", type=Path, default=SHOP / "knowledge.jsonl")
    parser.add_argument("--queries", type=Path, action="append")
    parser.add_argument("--pairs", type=int, default=150, help="pairs drawn at random (seed 1)")
    parser.add_argument("--set", action="append", default=[], help="a settings override, e.g. retrieval.title_weight=1")
    args = parser.parse_args()
    base = dict(item.split("=", 1) for item in args.set)
    passages = load_knowledge(args.knowledge)
    text = {d.metadata["id"]: d.page_content.split("\n", 1)[-1] for d in passages}
    title = {d.metadata["id"]: d.metadata["title"] for d in passages}
    firsts = [q for q in load_queries(args.queries or [SHOP / "queries_en.jsonl"]) if q.in_scope and not q.history]
    pairs = [(a, b) for a in firsts for b in firsts if {title[g] for g in a.gold_ids}.isdisjoint(title[g] for g in b.gold_ids)]
    pairs = random.Random(1).sample(pairs, min(args.pairs, len(pairs)))
    settings = load_settings(overrides=base)
    index, embedder = prepare_index(settings, passages, progress=False)
    print(f"{len(pairs)} changes of topic from {len(firsts)} first turns")
    for name, overrides in VARIANTS.items():
        overrides = dict(overrides)
        gate = overrides.pop("gate", True)
        s = load_settings(overrides=base | {f"retrieval.{k}": v for k, v in overrides.items()})
        retriever = Retriever(index, embedder, s.retrieval)
        enough = resolve(s.retrieval, index.manifest.get("calibration")).answer if gate else None
        hit1 = hit5 = 0
        for a, b in pairs:
            history = [{"role": "user", "content": a.question}, {"role": "assistant", "content": text[sorted(a.gold_ids)[0]]}]
            ids = [h.chunk.metadata["id"] for h in retriever.retrieve(b.question, history, enough=enough).passages]
            hit1 += ids[0] in b.gold_ids
            hit5 += bool(b.gold_ids.intersection(ids[:5]))
        print(f"  {name:48} hit@1 {hit1 / len(pairs):.3f}  hit@5 {hit5 / len(pairs):.3f}", flush=True)


if __name__ == "__main__":
    main()
