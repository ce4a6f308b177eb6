"""How well `chatbot/evidence.py` picks the sentences that answer a question, with no LM.

    .venv/bin/python bench/evidence.py [--answers bench/answers.jsonl] [--sample 300]

1. The answer set on the live knowledge base (`bench/answers.jsonl`, its answerable items): the share
   whose `must` facts are all in the best sentence, in the best three, and in the two passages given
   to the LM (what the evidence could hold at best).
2. dstc11's references (a fixed sample of in-scope turns, seed 0): token F1 against the agent's
   reply and recall of the gold passages' content words, for the best sentence, the best three, and
   the top passage quoted whole; and how often the best sentence comes from a gold passage.
Not a test: the figures of docs/quality.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.calibration import resolve
from chatbot.config import load_settings
from chatbot.evaluation import content_recall, load_knowledge, load_queries, prepare_index, read_jsonl, token_f1
from chatbot.evidence import select
from chatbot.llm import FakeChatModel
from chatbot.retrieval import Retriever
from chatbot.runtime import build_dialogue_manager, turn_forms
from labelled_set import DSTC11


def has_all(text: str, must: list[list[str]]) -> bool:
    lowered = text.lower()
    return all(any(alt.lower() in lowered for alt in group) for group in must)


def answer_set(settings, path: Path) -> None:
    manager = build_dialogue_manager(settings, FakeChatModel())
    retriever, thresholds = manager.retriever, manager.thresholds()
    given = settings.retrieval.passages_in_prompt
    counts = {"best sentence": 0, "best 3 sentences": 0, f"{given} passages": 0}
    items = [i for i in read_jsonl(path) if i["expect"] == "answer" and i.get("must")]
    took = []
    for item in items:
        r = retriever.retrieve(item["question"], item.get("history") or [], enough=thresholds.answer)
        started = time.perf_counter()
        evidence = select(retriever.embedder, r.vector, r.passages[:given], r.lang)
        took.append((time.perf_counter() - started) * 1000)
        counts["best sentence"] += has_all(evidence[0].text if evidence else "", item["must"])
        counts["best 3 sentences"] += has_all(" ".join(e.text for e in evidence), item["must"])
        counts[f"{given} passages"] += has_all(" ".join(h.chunk.page_content for h in r.passages[:given]), item["must"])
    print(f"answer set: {len(items)} answerable items with facts; all facts in:")
    for name, n in counts.items():
        print(f"  {name:18} {n / len(items):.3f}")
    print(f"  selection p50 {statistics.median(took):.1f} ms, p95 {sorted(took)[int(0.95 * len(took))]:.1f} ms (embedding the sentences)")


def references(settings, sample: int) -> None:
    queries = [q for q in load_queries([DSTC11 / "queries.jsonl"]) if q.in_scope and q.reference]
    queries = random.Random(0).sample(queries, min(sample, len(queries)))
    index, embedder = prepare_index(settings, load_knowledge(DSTC11 / "knowledge.jsonl"), progress=False)
    retriever = Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder))
    thresholds = resolve(settings.retrieval, index.manifest.get("calibration"))
    by_id = {c.metadata["id"]: c.page_content for c in index.chunks}
    given = settings.retrieval.passages_in_prompt
    rows = {"best sentence": [], "best 3 sentences": [], "top passage": []}
    from_gold = 0
    for q in queries:
        r = retriever.retrieve(q.question, q.history, enough=thresholds.answer)
        evidence = select(embedder, r.vector, r.passages[:given], r.lang)
        grounding = " ".join(by_id[g] for g in sorted(q.gold_ids) if g in by_id)
        texts = {"best sentence": evidence[0].text if evidence else "", "best 3 sentences": " ".join(e.text for e in evidence),
                 "top passage": r.passages[0].chunk.page_content if r.passages else ""}
        for name, text in texts.items():
            rows[name].append((token_f1(text, q.reference), content_recall(text, grounding)))
        from_gold += bool(evidence) and evidence[0].hit.chunk.metadata["id"] in q.gold_ids
    print(f"dstc11 references: {len(queries)} in-scope turns (seed 0); token F1 against the reference, gold content recall:")
    for name, values in rows.items():
        print(f"  {name:18} F1 {statistics.mean(v[0] for v in values):.3f}   recall {statistics.mean(v[1] for v in values):.3f}")
    print(f"  best sentence from a gold passage: {from_gold / len(queries):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=Path, default=ROOT / "bench" / "answers.jsonl")
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--skip-references", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    answer_set(settings, args.answers)
    if not args.skip_references:
        references(settings, args.sample)


if __name__ == "__main__":
    main()
