"""Joining split model files (a GGUF, a zipped folder): once, checked by sha256, never leaving a
half-written file or folder."""

import hashlib
import zipfile

import pytest

from chatbot.errors import ModelLoadError
from chatbot.weights import join_parts, packaged_folder, resolve_gguf, unpack_folder


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
    join_parts(_parts(tmp_path, blobs), target, hashlib.sha256(b"".join(blobs)).hexdigest())
    assert target.read_bytes() == b"".join(blobs)
    assert list(target.parent.iterdir()) == [target]


def test_a_sha256_mismatch_refuses_and_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ModelLoadError, match="refusing to load m.gguf: its sha256 .* tampered"):
        join_parts(_parts(tmp_path, [b"x", b"y"]), target, "0" * 64)
    assert list(target.parent.iterdir()) == []


def test_an_existing_joined_file_is_used_as_is(tmp_path):
    target = tmp_path / "m.gguf"
    target.write_bytes(b"already here")
    assert join_parts([], target, "0" * 64) == target and target.read_bytes() == b"already here"


def test_an_unknown_model_name_says_what_is_allowed(tmp_path):
    with pytest.raises(ModelLoadError, match="no packaged model 'qwen-99b'; packaged models: qwen2.5-coder-0.5b"):
        resolve_gguf("packaged:qwen-99b", tmp_path)
    with pytest.raises(ModelLoadError, match="llamacpp backend needs"):
        resolve_gguf("Qwen/Qwen2.5-7B-Instruct", tmp_path)


def test_a_zipped_model_folder_is_unpacked_once_without_its_stray_files(tmp_path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", "{}")
        zf.writestr("model/1_Pooling/config.json", "{}")
        zf.writestr("model/desktop.ini", "junk")
        zf.writestr("elsewhere.txt", "not the model")
    target = unpack_folder(archive, "model", tmp_path / "cache" / "model")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == ["1_Pooling/config.json", "config.json"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no temporary folder left
    archive.unlink()
    assert unpack_folder(archive, "model", target) == target  # already there: the archive is not read


def test_a_packaged_folder_that_is_not_installed_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(ModelLoadError, match=r"pip install -e '\.\[en-mpnet\]'"):
        packaged_folder("all-mpnet-base-v2", tmp_path)
    with pytest.raises(ModelLoadError, match="no packaged model folder 'bge-m3'"):
        packaged_folder("bge-m3", tmp_path)
