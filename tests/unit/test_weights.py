"""Joining a split GGUF: once, checked by sha256, never leaving a half-written file."""

import hashlib

import pytest

from chatbot.errors import ModelLoadError
from chatbot.weights import join_gguf, resolve_gguf


def _parts(tmp_path, blobs):
    paths = []
    for n, blob in enumerate(blobs):
        path = tmp_path / f"part{n}.bin"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def test_parts_are_joined_in_order_when_the_sha256_matches(tmp_path):
    blobs = [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c"]
    target = tmp_path / "cache" / "m.gguf"
    join_gguf(_parts(tmp_path, blobs), target, hashlib.sha256(b"".join(blobs)).hexdigest())
    assert target.read_bytes() == b"".join(blobs)
    assert list(target.parent.iterdir()) == [target]


def test_a_sha256_mismatch_refuses_and_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ModelLoadError, match="refusing to load m.gguf: its sha256 .* tampered"):
        join_gguf(_parts(tmp_path, [b"x", b"y"]), target, "0" * 64)
    assert list(target.parent.iterdir()) == []


def test_an_existing_joined_file_is_used_as_is(tmp_path):
    target = tmp_path / "m.gguf"
    target.write_bytes(b"already here")
    assert join_gguf([], target, "0" * 64) == target and target.read_bytes() == b"already here"


def test_an_unknown_model_name_says_what_is_allowed(tmp_path):
    with pytest.raises(ModelLoadError, match="no packaged model 'qwen-99b'; packaged models: qwen2.5-coder-0.5b"):
        resolve_gguf("packaged:qwen-99b", tmp_path)
    with pytest.raises(ModelLoadError, match="llamacpp backend needs"):
        resolve_gguf("Qwen/Qwen2.5-7B-Instruct", tmp_path)
