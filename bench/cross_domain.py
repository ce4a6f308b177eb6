"""Each labelled set's knowledge with its own questions, and with every other set's questions as
off-topic turns (cross-domain off-topic sets): retrieval, and the calibrated decision on both.

    .venv/bin/python bench/cross_domain.py [--only NAME ...] [--limit N] [--set key=value ...]

Sets: dstc11 (hotel and restaurant reviews and FAQs, dialogues; ../shared/eval), the shop
(`bench/shop/`, policies and a FAQ, English and Chinese) and every folder of `bench/sets/` (a help
centre's FAQ in English, a city's service guides in Chinese, a mobile carrier's FAQ in Chinese).
Another set's questions (the first --limit of each) are asked as first turns with no gold passage: nothing in this knowledge
should answer them; with --mid, the other sets' opening questions also in the middle of this set's own conversations. Prints, per knowledge base: the calibration, hit@1/hit@5 and the share of its
own questions answered, its own out-of-scope turns refused where it has them, and per other set
the share of its questions refused, with why. Not a test: the figures of docs/quality.md.
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
from chatbot.dialogue import abstain_reason, decide
from chatbot.evaluation import Query, calibration_lines, first_gold_rank, load_knowledge, load_queries, prepare_index
from chatbot.retrieval import Retriever
from chatbot.runtime import turn_forms
from labelled_set import DSTC11

SHOP = ROOT / "bench" / "shop"
SETS = ROOT / "bench" / "sets"


def labelled_sets() -> dict[str, dict]:
    """Each set's knowledge, in-scope query files and out-of-scope query files."""
    sets = {
        "dstc11": {"knowledge": DSTC11 / "knowledge.jsonl", "in": [DSTC11 / "queries.jsonl"], "oos": [DSTC11 / "queries_out_of_scope.jsonl"]},
        "shop": {"knowledge": SHOP / "knowledge.jsonl", "in": [SHOP / "queries_en.jsonl", SHOP / "queries_zh.jsonl"],
                 "oos": [SHOP / "queries_out_of_scope_en.jsonl", SHOP / "queries_out_of_scope_zh.jsonl"]},
    }
    for folder in sorted(SETS.iterdir()) if SETS.is_dir() else []:
        if (folder / "knowledge.jsonl").is_file():
            sets[folder.name] = {"knowledge": folder / "knowledge.jsonl", "in": [folder / "queries.jsonl"], "oos": sorted(folder.glob("queries_out_of_scope*.jsonl"))}
    return sets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", help="knowledge bases to run (default: every set)")
    parser.add_argument("--limit", type=int, default=300, help="questions taken from each other set")
    parser.add_argument("--mid", action="store_true", help="also ask the other sets' questions in the middle of this set's conversations (after the history of one of its own follow-ups)")
    parser.add_argument("--set", action="append", default=[], help="a settings override, e.g. retrieval.request_threshold=0.01")
    args = parser.parse_args()
    settings = load_settings(overrides=dict(item.split("=", 1) for item in args.set))
    sets = labelled_sets()
    for name, spec in sets.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        index, embedder = prepare_index(settings, load_knowledge(spec["knowledge"]), progress=False)
        retriever = Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder))
        thresholds = resolve(settings.retrieval, index.manifest.get("calibration"))
        print(f"== {name}: {len(index.chunks)} passages; calibrated in {index.manifest['calibration']['seconds']:.1f} s")
        for line in calibration_lines(index.manifest.get("calibration")):
            print(f"   {line}")
        groups = [("own", load_queries(spec["in"])), ("own out-of-scope", load_queries(spec["oos"]))]
        histories = [q.history for q in groups[0][1] if q.history]
        for other, other_spec in sets.items():
            if other != name:
                asked = load_queries(other_spec["in"])[: args.limit]  # as first turns: their history is another business's
                groups.append((other, [Query(q.id, q.question, [], frozenset(), q.lang) for q in asked]))
                # After one of this knowledge's conversations, each in turn; only questions that opened
                # a conversation of their own: a follow-up of another set ("Is there parking?",
                # "需要什么材料？") may rightly read as a follow-up of this one.
                opening = [q for q in load_queries(other_spec["in"]) if not q.history][: args.limit]
                if args.mid and histories and opening:
                    groups.append((f"{other} mid", [Query(q.id, q.question, histories[n % len(histories)], frozenset(), q.lang) for n, q in enumerate(opening)]))
        for group, queries in groups:
            for lang in ("en", "zh"):
                mine = [q for q in queries if q.lang == lang]
                if mine:
                    print(f"   {group:17} {lang} " + _line(retriever, thresholds, mine))
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)


def _line(retriever: Retriever, thresholds, queries: list[Query]) -> str:
    ranks, answered, reasons = [], [], {}
    for q in queries:
        r = retriever.retrieve(q.question, q.history, k=5, enough=thresholds.answer)
        mode = decide(r, thresholds)
        answered.append(mode != "abstain")
        if mode == "abstain":
            reason = abstain_reason(r, thresholds) or "none"
            reasons[reason] = reasons.get(reason, 0) + 1
        if q.in_scope:
            ranks.append(first_gold_rank([h.chunk.metadata["id"] for h in r.passages], q.gold_ids))
    n = len(queries)
    why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    if ranks:
        hit1 = sum(1 for x in ranks if x == 1) / n
        hit5 = sum(1 for x in ranks if x is not None) / n
        return f"n={n:4}  hit@1 {hit1:.3f}  hit@5 {hit5:.3f}  answered {sum(answered) / n:.3f}  (refused: {why or 'none'})"
    return f"n={n:4}  refused {1 - sum(answered) / n:.3f}  ({why or 'none'})"


if __name__ == "__main__":
    main()
