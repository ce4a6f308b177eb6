"""The shop's own labelled set in the `chatbot eval` format (../shared/eval/README.md), made from the
live knowledge base (`knowledge/`, indexed) and the labelled questions of `bench/probes.jsonl` and
`bench/answers.jsonl` (gold = the chunks under their gold headings or FAQ questions).

    .venv/bin/python bench/shop_set.py [--out bench/shop]
    .venv/bin/chatbot eval --knowledge bench/shop/knowledge.jsonl --queries bench/shop/queries_zh.jsonl \\
        --queries bench/shop/queries_out_of_scope_zh.jsonl

Writes knowledge.jsonl (every chunk: its id, document title and text) and, per language, the
in-scope queries and the out-of-scope ones, so English and Chinese are scored apart. Run it again
after `knowledge/` changes; a gold heading that no chunk has is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.evaluation import read_jsonl
from chatbot.index import KnowledgeIndex
from chatbot.language import detect_language

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "shop")
    args = parser.parse_args()
    index = KnowledgeIndex.load(load_settings().index_dir)
    by_heading: dict[str, list[str]] = {}
    passages = []
    for chunk in index.chunks:
        meta = chunk.metadata
        for name in {meta.get("heading"), meta.get("question")} - {None, ""}:
            by_heading.setdefault(name, []).append(meta["id"])
        text = chunk.page_content
        prefix = f"{meta['title']} > "
        passages.append({"id": meta["id"], "title": meta["title"], "text": text[len(prefix):] if text.startswith(prefix) else text, "lang": meta["lang"]})
    files: dict[str, list[dict]] = {}
    for source, gold_key, expect_key in ((HERE / "probes.jsonl", "gold", "expect"), (HERE / "answers.jsonl", "gold_headings", "expect")):
        for n, item in enumerate(read_jsonl(source)):
            lang = item.get("lang") or detect_language(item["question"])
            gold = [] if item[expect_key] == "abstain" else item[gold_key]
            missing = [h for h in gold if h not in by_heading]
            if missing:
                sys.exit(f"{source.name}:{n + 1}: no chunk has the heading {missing[0]!r}")
            ids = sorted({i for h in gold for i in by_heading[h]})
            name = f"queries_{lang}.jsonl" if ids else f"queries_out_of_scope_{lang}.jsonl"
            files.setdefault(name, []).append({"id": f"{source.stem}-{n + 1}", "history": item.get("history") or [], "question": item["question"], "gold_ids": ids, "lang": lang})
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in {"knowledge.jsonl": passages, **files}.items():
        (args.out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{args.out.name}/{name}: {len(rows)}")


if __name__ == "__main__":
    main()
