"""The abstain decision's two thresholds measured on a labelled set with out-of-scope queries:
`retrieval.request_threshold` (the form of the turn, `chatbot/turns.py`) and
`retrieval.answer_threshold` (the question's similarity to the passages it would be answered from).

    .venv/bin/python bench/abstain.py [--knowledge K] [--queries Q ...] [--limit N] [--set key=value ...]

Every query goes through the chat's own retrieval once; then each pair of thresholds on a grid is
scored by the share of in-scope queries answered and of out-of-scope queries abstained on. Prints
the configured pair's figures, each signal alone, and the pairs that do best on the worse of the
two shares. Not a test: a measurement for the config (docs/quality.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.dialogue import decide
from chatbot.evaluation import load_knowledge, load_queries, prepare_index
from chatbot.retrieval import Retriever
from chatbot.turns import TurnForms
from labelled_set import parse


def main() -> None:
    args, overrides, query_files = parse("a settings override, e.g. retrieval.bm25_weight=0.5")
    settings = load_settings(overrides=overrides)
    queries = load_queries(query_files, args.limit)
    index, embedder = prepare_index(settings, load_knowledge(args.knowledge), progress=False)
    forms = TurnForms.load(settings.prompts_dir / "turns.yaml", embedder, settings.retrieval.request_neighbours, settings.data_dir / "cache" / "embeddings")  # even with the check off
    retriever = Retriever(index, embedder, settings.retrieval, forms)
    rows = []
    for q in queries:
        r = retriever.retrieve(q.question, q.history)
        rows.append((q.in_scope, r.lang, r.relevance, r.request, r))
    y = np.asarray([row[0] for row in rows])
    if y.all() or not y.any():
        sys.exit("need both in-scope and out-of-scope queries")
    rel = np.asarray([row[2] for row in rows])
    req = np.asarray([row[3] for row in rows])

    def shares(answered: np.ndarray) -> tuple[float, float]:
        return float(answered[y].mean()), float((~answered[~y]).mean())

    r = settings.retrieval
    configured = np.asarray([decide(row[4], r.faq_threshold, r.answer_threshold, r.request_threshold) != "abstain" for row in rows])
    a, o = shares(configured)
    print(f"{len(rows)} queries ({int(y.sum())} in scope); configured: request_threshold {r.request_threshold}, answer_threshold {r.answer_threshold}")
    print(f"  in-scope answered {a:.3f}, out-of-scope abstained {o:.3f}")
    grid_rel = np.quantile(rel, np.linspace(0.0, 0.6, 61))
    grid_req = np.quantile(req, np.linspace(0.4, 1.0, 121))
    for name, values, grid in (("relevance alone", rel, grid_rel), ("request alone", -req, -grid_req)):
        best = max((min(shares(values >= t)), t) for t in grid)
        print(f"  {name}: best worse-share {best[0]:.3f} at {abs(best[1]):.4f}")
    results = []
    for t_req in grid_req:
        for t_rel in grid_rel:
            ans, ab = shares((req < t_req) & (rel >= t_rel))
            results.append((min(ans, ab), ans, ab, t_req, t_rel))
    t_best = max(results)[3]
    print(f"at request_threshold {t_best:.4f}, by answer_threshold: in-scope answered, out-of-scope abstained")
    for t_rel in np.arange(0.79, 0.861, 0.01):
        ans, ab = shares((req < t_best) & (rel >= t_rel))
        print(f"  {t_rel:.2f}: {ans:.3f}, {ab:.3f}")
    results.sort(reverse=True)
    print("best pairs (request_threshold, answer_threshold): in-scope answered, out-of-scope abstained")
    for worse, ans, ab, t_req, t_rel in results[:8]:
        print(f"  {t_req:.4f}, {t_rel:.3f}: {ans:.3f}, {ab:.3f}")
    held_out(forms, embedder, r.request_threshold)


def held_out(forms: TurnForms, embedder, threshold: float | None) -> None:
    """The form check at `threshold` on bench/forms.jsonl: turns written apart from the examples,
    requests and questions (statements of a problem among them) in several domains."""
    if threshold is None:
        return
    rows = [json.loads(line) for line in (Path(__file__).parent / "forms.jsonl").read_text(encoding="utf-8").splitlines()]
    wrong = [r["text"] for r in rows if (forms.score(np.asarray(embedder.embed_query(r["text"].lower()))) >= threshold) != (r["form"] == "act")]
    print(f"bench/forms.jsonl at request_threshold {threshold}: {len(rows) - len(wrong)}/{len(rows)} right; wrong: {wrong}")


if __name__ == "__main__":
    main()
