"""`chatbot eval` at the size the issue names: 20,000 passages and 5,000 queries, timed.

    .venv/bin/python bench/eval_scale.py [--passages 20000] [--queries 5000] [--qa 1.0] [--knowledge K] [--queries-from Q ...]

A set of that size is made from a real one (default: dstc11 and its out-of-scope turns): its
passages, then copies under new titles and ids until `--passages`, a share `--qa` of the copies
rewritten as a question and its answer (the worst case for time: each such passage's answer is
embedded too, `chatbot/index.py`); its queries repeated until `--queries`. The run has a data dir
of its own, so no embedding comes from the cache. Prints the wall time of the whole `chatbot eval`
run and its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from langchain_core.documents import Document

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.index import answer_text  # noqa: E402
DSTC11 = ROOT.parent / "shared" / "eval" / "dstc11"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--qa", type=float, default=1.0, help="share of the copied passages written as a question and its answer")
    parser.add_argument("--all-pairs", action="store_true", help="the original passages too written as a question and its answer (a FAQ-only set)")
    parser.add_argument("--knowledge", type=Path, default=DSTC11 / "knowledge.jsonl")
    parser.add_argument("--queries-from", type=Path, action="append")
    args = parser.parse_args()
    sources = args.queries_from or [DSTC11 / "queries.jsonl", DSTC11 / "queries_out_of_scope.jsonl"]
    passages = [json.loads(line) for line in args.knowledge.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = [json.loads(line) for path in sources for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    asked = [q["question"] for q in queries]

    if args.all_pairs:  # a statement gets a question from the queries put before it
        passages = [p if _paired(p) else p | {"text": f"{_as_question(asked[n % len(asked)])} {p['text']}"} for n, p in enumerate(passages)]
    made = list(passages)
    copy = 0
    while len(made) < args.passages:
        copy += 1
        for n, p in enumerate(passages):
            if len(made) >= args.passages:
                break
            text = p["text"]
            if (n % 100) < args.qa * 100:  # a question from the queries, the passage as its answer
                text = f"{_as_question(asked[(n + copy) % len(asked)])} {text}"
            else:
                text = f"{text} (copy {copy})"
            made.append({"id": f"{p['id']}|copy{copy}", "title": f"{p.get('title', '')} {copy}".strip(), "text": text})
    pooled = [dict(q) for q in queries[: args.queries]]
    while len(pooled) < args.queries:
        q = dict(queries[len(pooled) % len(queries)])
        q["id"] = f"{q['id']}|again{len(pooled)}"
        pooled.append(q)
    qa = sum(1 for p in made if _paired(p))
    print(f"{len(made)} passages ({qa} of them a question and its answer), {len(pooled)} queries", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        knowledge, query_file = Path(tmp) / "knowledge.jsonl", Path(tmp) / "queries.jsonl"
        knowledge.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in made), encoding="utf-8")
        query_file.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in pooled), encoding="utf-8")
        started = time.perf_counter()
        done = subprocess.run(  # a fresh data dir: nothing comes from the embedding cache
            [sys.executable, "-m", "chatbot.cli", "eval", "--knowledge", str(knowledge), "--queries", str(query_file), "--json"],
            cwd=ROOT, capture_output=True, text=True, env=os.environ | {"CHATBOT_DATA_DIR": str(Path(tmp) / "data")},
        )
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    print(f"chatbot eval: {elapsed:.0f} s ({elapsed / 60:.1f} min) in all")
    print(done.stdout.strip())


def _as_question(text: str) -> str:
    """A query as one question sentence (no stop before its question mark)."""
    return re.sub(r"[.!?。！？]+", " ", text).strip() + "?"


def _paired(passage: dict) -> bool:
    """Whether `chatbot.index.answer_text` reads the passage as a question and its answer."""
    return answer_text(Document(page_content=passage["text"], metadata={"title": passage.get("title", "")})) is not None


if __name__ == "__main__":
    main()
