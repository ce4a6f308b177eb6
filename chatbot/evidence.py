"""The evidence of a generated answer: the sentences of the passages retrieval chose that answer the
question, each with its character offsets in its passage (the source highlights them).

A passage's text is split into sentences (`sentence_spans`): after its first line (the title, or
"title > heading", or a FAQ pair's question), at a full stop, question or exclamation mark followed
by a space, a Chinese full stop, question or exclamation mark or semicolon, or a line break. A
question is never evidence. Each sentence is embedded as a passage with the chat's embedder and
scored against the question by each dense model's cosine (for English, the two models' mean, as
`calibration.topic_score`); the best `limit` are kept, best first, passing over a sentence that
repeats one already kept (`repeats`: a FAQ answer and the policy it summarises often say the same
thing in nearly the same words, and two copies of it would crowd out the sentence with the
condition or the figure the question needs). A sentence about the other case than the customer's
(`checks.opened_case`: "Opened items ..." to "I never opened it") goes after every other: a
policy's sentences for opened and unopened items are near each other and near the question alike. The selection against the gold
sentences and the references is measured in docs/quality.md (`bench/evidence.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from chatbot.calibration import topic_score, unit_parts, unit_rows
from chatbot.checks import content_units, opened_case
from chatbot.embeddings import embedding_parts
from chatbot.index import Hit

# A sentence ends at . ! ? followed by a space or the end (not "14.95"), at 。！？； or at a line break.
_END = re.compile(r"[。！？；]+|[.!?]+(?=\s|$)|\n")
_WORD = re.compile(r"[0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff]")
_MIN_WORD_CHARS = 4
CACHED_SENTENCES = 4096  # sentence vectors kept between turns (a few MB)


@dataclass(frozen=True)
class Evidence:
    """One sentence of a passage: `text == passage.page_content[start:end]`."""

    hit: Hit  # the passage
    start: int
    end: int
    score: float

    @property
    def text(self) -> str:
        return self.hit.chunk.page_content[self.start : self.end]

    @property
    def title(self) -> str:
        return str(self.hit.chunk.metadata.get("title") or "")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of `text`'s sentences after its first line, stripped of spaces;
    questions and fragments of under four letters or characters left out. A passage with none
    gives its body after the first line whole."""
    first = text.find("\n")
    position = first + 1 if first >= 0 else 0
    spans = []
    for end_mark in [*_END.finditer(text, position), None]:
        end = len(text) if end_mark is None else (end_mark.start() if end_mark.group() == "\n" else end_mark.end())
        start = position
        while start < end and text[start].isspace():
            start += 1
        stop = end
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        sentence = text[start:stop]
        if len(_WORD.findall(sentence)) >= _MIN_WORD_CHARS and not sentence.rstrip("\"'”’)）").endswith(("?", "？")):
            spans.append((start, stop))
        if end_mark is None:
            break
        position = end_mark.end()
    if not spans:  # no sentence of its own (a passage that is a question, or a fragment): its body whole
        start, stop = first + 1 if first >= 0 else 0, len(text.rstrip())
        while start < stop and text[start].isspace():
            start += 1
        if len(_WORD.findall(text[start:stop])) >= _MIN_WORD_CHARS:
            spans.append((start, stop))
    return spans


def select(embedder, question_vector: np.ndarray, hits: list[Hit], lang: str, limit: int | None = 3, cache: dict | None = None,
           question: str = "") -> list[Evidence]:
    """The `limit` sentences of `hits` nearest the question (`question_vector`, as the chat embedded
    it; `question`, its words, for the customer's case), best first (every sentence with
    `limit=None`); an empty list when no passage has a sentence. `cache` (sentence → vector, shared
    by the chat's turns) spares embedding a passage's sentences again when it is given again."""
    candidates = [(hit, start, end) for hit in hits for start, end in sentence_spans(hit.chunk.page_content)]
    if not candidates:
        return []
    texts = [hit.chunk.page_content[start:end] for hit, start, end in candidates]
    vectors = _sentence_vectors(embedder, texts, cache)
    parts = embedding_parts(embedder, vectors.shape[1])
    cosines = np.stack([sentences @ unit_rows(question_vector[None, a:b])[0] for sentences, (a, b) in zip(unit_parts(vectors, parts), parts)], axis=1)
    scores = [topic_score(tuple(row), lang) for row in cosines.tolist()]
    case = opened_case(question)
    other_case = [case is not None and opened_case(t) not in (None, case) for t in texts]
    kept: list[int] = []
    said: list[set[str]] = []
    for i in sorted(range(len(candidates)), key=lambda i: (other_case[i], -scores[i])):
        if limit is not None and len(kept) == limit:
            break
        units = content_units(texts[i])
        if not any(repeats(units, other) for other in said):
            kept.append(i)
            said.append(units)
    return [Evidence(candidates[i][0], candidates[i][1], candidates[i][2], scores[i]) for i in kept]


def case_first(hits: list[Hit], question: str) -> list[Hit]:
    """`hits` with the passages about the other case than the customer's (`checks.opened_case` of
    the passage, whose text opens with its title, heading or FAQ question) after the rest, each
    group in retrieval's order: "I never opened my kettle" gets the unopened items' passage among
    the evidence where retrieval ranked two opened-items passages above it."""
    case = opened_case(question)
    if case is None:
        return hits
    return sorted(hits, key=lambda hit: opened_case(hit.chunk.page_content) not in (None, case))


def repeats(units: set[str], other: set[str]) -> bool:
    """Whether two sentences (their `checks.content_units`: words, numbers, Chinese character
    pairs, an opening verdict left out) say the same: one's units are all among the other's."""
    return bool(units) and bool(other) and (units <= other or other <= units)


def _sentence_vectors(embedder, texts: list[str], cache: dict | None) -> np.ndarray:
    """`texts` embedded as passages, those in `cache` taken from it (it is emptied when full). Safe
    to share between threads: each call reads what it needs once and only adds to the cache."""
    known = {t: v for t in texts if (v := cache.get(t)) is not None} if cache is not None else {}
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        new = dict(zip(missing, np.asarray(embedder.embed_documents(missing), dtype=np.float32)))
        known.update(new)
        if cache is not None:
            if len(cache) + len(new) > CACHED_SENTENCES:
                cache.clear()
            cache.update(new)
    return np.stack([known[t] for t in texts])
