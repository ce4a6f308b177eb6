"""Words for BM25: English (and other Latin-script text) lower-cased, stop words dropped, Snowball-
stemmed; Chinese segmented with jieba (search mode, so long words also yield their parts).

Kept apart from the index so the same tokens are made at index time and at query time.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

_LATIN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")  # a run of Chinese characters
_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "please", "so", "that", "the", "their", "them", "there", "these", "they", "this", "to", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your", "'s"]
)
_ZH_FUNCTION_WORDS = frozenset(["你们", "我们", "他们", "有没有", "能不能", "可不可以", "是不是", "一下", "请问"])  # not shown in a label
_ZH_STOPWORDS = frozenset(["的", "了", "吗", "呢", "吧", "啊", "是", "我", "你", "您", "们", "在", "和", "与", "或", "可以", "能", "怎么", "如何", "什么", "多少", "有", "没有", "要", "会", "请", "问"])


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def warm_up() -> None:
    """Load jieba's dictionary now (about 0.5 s), not on the first Chinese question."""
    _jieba().initialize()


def latin_words(text: str) -> list[str]:
    """The English (Latin-script) tokens of `text`, in order: lower-cased, stop words dropped, stemmed."""
    words = [w for w in _LATIN.findall(text.lower()) if w not in _STOPWORDS]
    return _stemmer().stemWords(words) if words else []


def surface_words(text: str) -> list[str]:
    """The words of `text` as written (lower-cased, not stemmed), stop words dropped; Chinese cut by
    jieba: words to show a person (a topic's label), where `tokenize` makes words to match."""
    text = text.lower()
    words = [w for w in _LATIN.findall(text) if w not in _STOPWORDS and not w.isdigit()]
    for run in HAN_RUN.findall(text):
        words.extend(t for t in _jieba().lcut(run) if t.strip() and t not in _ZH_STOPWORDS and t not in _ZH_FUNCTION_WORDS and len(t) > 1)
    return words


def tokenize(text: str) -> list[str]:
    """BM25 tokens of `text`, in order."""
    text = text.lower()
    tokens = latin_words(text)
    for run in HAN_RUN.findall(text):
        tokens.extend(t for t in _jieba().lcut_for_search(run) if t.strip() and t not in _ZH_STOPWORDS)
    return tokens
