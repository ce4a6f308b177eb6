"""The form of a turn: is it a question a knowledge base could answer, or a request to act, a choice
among options, the details of an order, a closing?

A FAQ bot cannot book a table, cancel an order or pick a hotel in the north; answering such a turn
from the nearest passage is the commonest wrong answer (docs/quality.md: similarity alone cannot
tell them apart, because they talk about the same things). The turn is compared, in the embedder's
multilingual space, with hand-written examples of both forms (`prompts/turns.yaml`, in several
domains and in English and Chinese): `score` is how much nearer its closest "act" examples are than
its closest "question" examples (the mean of the `retrieval.request_neighbours` nearest of each). A
customer's statement of a problem ("I was charged twice") is a question for the knowledge base, and
the examples say so. Cost per turn: one small matrix product on the question's vector, which
retrieval computes anyway.

The calibration's off-topic probes (`prompts/off_topic.yaml`) are kept here too: `off_topic` is a
question's best similarity to those of its language, leaving out the domains that are the
knowledge's own subject. A follow-up nearer such a probe than its conversation is to the knowledge
("明天天气怎么样？" after a delivery question) is not lifted by that conversation
(`calibration.turn_topic`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from langchain_core.embeddings import Embeddings

from chatbot.calibration import best_cosines, load_off_topic, topic_score, unit_parts, unit_rows
from chatbot.embeddings import cached_vectors, embed_queries, embedder_name, embedding_parts
from chatbot.errors import ConfigError


class TurnForms:
    """Examples of both forms, embedded once (cached under `cache_dir` by content and embedder)."""

    def __init__(self, act: np.ndarray, question: np.ndarray, part: tuple[int, int], nearest: int, probes: OffTopicProbes | None = None) -> None:
        self.act = act
        self.question = question
        self.part = part
        self.nearest = nearest  # examples averaged on each side (`retrieval.request_neighbours`)
        self.probes = probes

    @classmethod
    def load(cls, path: Path, embedder: Embeddings, nearest: int, cache_dir: Path | None = None, off_topic: Path | None = None) -> TurnForms:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            act, question = [str(t) for t in data["act"]], [str(t) for t in data["question"]]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: needs two lists of example turns, 'act' and 'question' ({e})") from e
        if len(act) < nearest or len(question) < nearest:
            raise ConfigError(f"{path}: give at least {nearest} examples in 'act' and in 'question' (retrieval.request_neighbours)")
        vectors = cached_vectors(cache_dir, embedder_name(embedder), act + question, lambda texts: embed_queries(embedder, texts), prefix="turns-")
        part = embedding_parts(embedder, vectors.shape[1])[0]  # the multilingual model's columns
        probes = OffTopicProbes.load(off_topic, embedder, cache_dir) if off_topic is not None else None
        return cls(unit_rows(vectors[: len(act), part[0] : part[1]]), unit_rows(vectors[len(act) :, part[0] : part[1]]), part, nearest, probes)

    def score(self, question_vector: np.ndarray) -> float:
        """Mean similarity to the nearest "act" examples minus that to the nearest "question"
        examples: above `retrieval.request_threshold` the turn is not a question for the knowledge."""
        v = unit_rows(np.asarray(question_vector, dtype=np.float32)[None, self.part[0] : self.part[1]])[0]
        return float(_top_mean(self.act @ v, self.nearest) - _top_mean(self.question @ v, self.nearest))


class OffTopicProbes:
    """The off-topic probes embedded (as the calibration embeds them: lower-cased, cached by content)."""

    def __init__(self, units: list[np.ndarray], parts: list[tuple[int, int]], langs: np.ndarray, domains: np.ndarray) -> None:
        self.units, self.parts, self.langs, self.domains = units, parts, langs, domains
        self._kept: dict[tuple[str, tuple[str, ...]], list[np.ndarray]] = {}  # `units` per language and domains left out

    @classmethod
    def load(cls, path: Path, embedder: Embeddings, cache_dir: Path | None = None) -> OffTopicProbes:
        probes = load_off_topic(path)
        vectors = cached_vectors(cache_dir, embedder_name(embedder), [p.text.lower() for p in probes], lambda texts: embed_queries(embedder, texts), prefix="probes-")
        parts = embedding_parts(embedder, vectors.shape[1])
        return cls(unit_parts(vectors, parts), parts, np.asarray([p.lang for p in probes]), np.asarray([p.domain for p in probes]))

    def nearest(self, question_vector: np.ndarray, lang: str, own_domains: tuple[str, ...] = ()) -> float:
        """The question's `topic_score` over the probes of `lang` outside `own_domains` (-1 with none)."""
        key = (lang, own_domains)
        if key not in self._kept:  # sliced once per knowledge base and language, not per turn
            keep = (self.langs == lang) & ~np.isin(self.domains, list(own_domains))
            self._kept[key] = [np.ascontiguousarray(u[keep]) for u in self.units]
        units = self._kept[key]
        if not len(units[0]):
            return -1.0
        best = best_cosines(units, np.asarray(question_vector, dtype=np.float32)[None, :], self.parts, [None])[0]
        return topic_score(tuple(best.tolist()), lang)


def _top_mean(scores: np.ndarray, n: int) -> float:
    return float(np.sort(scores)[-n:].mean())
