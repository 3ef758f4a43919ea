"""A router learned from labelled prompts: which requests need the strong route?

Training data are prompts with a label each: 1 when the strong route was needed (e.g. the weak model answered
wrongly and the strong one rightly), else 0. Features are the prompt's embedding (by default the static token
table distilled from the packaged MiniLM, see routing/embedding.py) and a few length/structure features (tokens,
characters, digits, math symbols, lines, code fences). Two estimates of P(strong needed) are averaged:

    prompt -> [embedding | structure] -> standardise -> logistic regression ----------.
    prompt -> embedding -> cosine k-nearest training prompts -> share labelled 1 -------+-> mean -> score in [0, 1]

The logistic regression generalises along directions (e.g. 'maths-like'); the neighbour vote keeps local detail
(clusters of hard questions) that a linear model smooths away. scikit-learn is used only to fit; scoring is two
dot products in numpy. The threshold is calibrated to a target share of strong calls on the training prompts
(neighbour votes leave the prompt itself out), and can be recalibrated on real traffic with :meth:`calibrate`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.core.errors import ConfigurationError, MissingDependencyError
from slmkit.core.tokens import estimate_tokens
from slmkit.routing.embedding import default_router_embeddings, embed_texts

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

__all__ = ["FORMAT", "STRUCTURE_FEATURES", "LearnedRouter", "structure_features"]

FORMAT = "slmkit.routing.learned_router/v1"
"""Versioned name of the saved format: a saved router never changes meaning."""

_BLOCK = 1024
_MATH = re.compile(r"[=+\-*/^<>√∑∫πθλ%]")
STRUCTURE_FEATURES = (
    "log_tokens",
    "log_chars",
    "digit_share",
    "math_share",
    "log_lines",
    "log_longest_line",
    "question_marks",
    "code_fence",
)


def structure_features(prompt: str) -> list[float]:
    """Length and shape of a prompt, independent of its topic (values named by ``STRUCTURE_FEATURES``)."""
    n = max(len(prompt), 1)
    lines = prompt.splitlines() or [""]
    return [
        math.log1p(estimate_tokens(prompt)),
        math.log1p(len(prompt)),
        sum(c.isdigit() for c in prompt) / n,
        len(_MATH.findall(prompt)) / n,
        math.log1p(len(lines)),
        math.log1p(max(len(line) for line in lines)),
        float(prompt.count("?")),
        float("```" in prompt),
    ]


class LearnedRouter:
    """Scores how much a prompt needs the strong route, learned from labelled prompts.

    Example:
        .. code-block:: python

            router = LearnedRouter().fit(prompts, labels, target_share=0.3)   # labels: 1 = strong route needed
            router.score("Prove that there are infinitely many primes.")     # 0.71
            router.needs_strong("hi!")                                       # False
            router.save("router.npz"); LearnedRouter.load("router.npz")
    """

    def __init__(
        self,
        embeddings: Embeddings | None = None,
        *,
        neighbours: int = 64,
        regularization: float = 0.01,
        target_share: float = 0.5,
    ) -> None:
        """``neighbours``: k of the neighbour vote (0 turns it off); ``regularization``: inverse strength C of the
        logistic regression (small: many embedding dimensions, noisy labels); ``target_share``: share of prompts
        the calibrated threshold sends to the strong route."""
        if neighbours < 0 or regularization <= 0 or not 0 < target_share < 1:
            raise ConfigurationError(
                "LearnedRouter needs neighbours >= 0, regularization > 0 and 0 < target_share < 1; "
                f"got {neighbours}, {regularization}, {target_share}."
            )
        self._embeddings = embeddings
        self.neighbours = neighbours
        self.regularization = regularization
        self.target_share = target_share
        self.threshold: float | None = None
        self._state: dict[str, np.ndarray] | None = None

    # -- features --------------------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            self._embeddings = default_router_embeddings()
        return self._embeddings

    def _features(self, prompts: Sequence[str], vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        if vectors is None:
            vectors = embed_texts(self.embeddings, list(prompts))
        shape = np.asarray([structure_features(p) for p in prompts], dtype=np.float32)
        return vectors, np.hstack([vectors, shape])

    # -- training --------------------------------------------------------------------------------------------
    def fit(
        self,
        prompts: Sequence[str],
        labels: Sequence[int | bool],
        *,
        target_share: float | None = None,
        vectors: np.ndarray | None = None,
    ) -> LearnedRouter:
        """Learn from ``prompts`` and ``labels`` (1 = the strong route was needed), then calibrate the threshold.

        ``vectors``: the prompts' embeddings under this router's embedder, if already computed (unit length).
        """
        import numpy as np

        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as exc:
            raise MissingDependencyError("scikit-learn", extra="routing", purpose="training a LearnedRouter") from exc
        y = np.asarray([int(bool(v)) for v in labels], dtype=np.int64)
        if len(prompts) != len(y):
            raise ConfigurationError(f"fit got {len(prompts)} prompts but {len(y)} labels; pass one label per prompt.")
        if len(set(y.tolist())) < 2:
            raise ConfigurationError("fit needs both labels (some prompts that need the strong route, some not).")
        vectors, x = self._features(prompts, vectors)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=self.regularization, max_iter=3000).fit((x - mean) / scale, y)
        self._state = {
            "mean": mean.astype(np.float32),
            "scale": scale.astype(np.float32),
            "coef": model.coef_[0].astype(np.float32),
            "intercept": np.asarray(model.intercept_, dtype=np.float32),
            "train_vectors": vectors.astype(np.float32) if self.neighbours else np.zeros((0, vectors.shape[1])),
            "train_labels": y.astype(np.float32) if self.neighbours else np.zeros(0),
        }
        train_scores = self._score_features(vectors, x, leave_self_out=True)
        self.calibrate_scores(train_scores, target_share)
        return self

    def calibrate(self, prompts: Sequence[str], target_share: float | None = None) -> float:
        """Set the threshold so that ``target_share`` of ``prompts`` (e.g. recent traffic) go to the strong route."""
        return self.calibrate_scores(self.scores(prompts), target_share)

    def calibrate_scores(self, scores: np.ndarray, target_share: float | None = None) -> float:
        import numpy as np

        if target_share is not None:
            if not 0 < target_share < 1:
                raise ConfigurationError(f"target_share must be in (0, 1), not {target_share}.")
            self.target_share = target_share
        self.threshold = float(np.quantile(scores, 1 - self.target_share))
        return self.threshold

    # -- scoring ---------------------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self._state is not None

    def score(self, prompt: str, *, vector: np.ndarray | None = None) -> float:
        """P(the strong route is needed) for one prompt, in [0, 1]; ``vector``: its embedding, if already known."""
        vectors, x = self._features([prompt], None if vector is None else vector[None, :])
        return float(self._score_features(vectors, x)[0])

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """Scores of many prompts (embedded in batches)."""
        vectors, x = self._features(prompts)
        return self._score_features(vectors, x)

    def needs_strong(self, prompt: str) -> bool:
        """True if the score reaches the calibrated threshold."""
        if self.threshold is None:
            raise ConfigurationError("This LearnedRouter has no threshold yet: fit() or calibrate() it first.")
        return self.score(prompt) >= self.threshold

    def _score_features(self, vectors: np.ndarray, x: np.ndarray, *, leave_self_out: bool = False) -> np.ndarray:
        import numpy as np

        if self._state is None:
            raise ConfigurationError("This LearnedRouter is not trained: call fit(prompts, labels) or load() one.")
        s = self._state
        logits = ((x - s["mean"]) / s["scale"]) @ s["coef"] + s["intercept"][0]
        linear = 1.0 / (1.0 + np.exp(-logits))
        labels = s["train_labels"]
        k = min(self.neighbours, len(labels) - int(leave_self_out))
        if k <= 0:
            return np.asarray(linear, dtype=np.float64)
        vote = np.empty(len(vectors), dtype=np.float64)
        for start in range(0, len(vectors), _BLOCK):  # blocks keep the similarity matrix small
            similarity = vectors[start : start + _BLOCK] @ s["train_vectors"].T
            if leave_self_out:  # scoring the training prompts: a prompt is not its own neighbour
                rows = np.arange(len(similarity))
                similarity[rows, rows + start] = -np.inf
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            vote[start : start + _BLOCK] = labels[nearest].mean(axis=1)
        return np.asarray((linear + vote) / 2, dtype=np.float64)

    # -- persistence -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the trained router to a ``.npz`` file (no pickle)."""
        import numpy as np

        if self._state is None:
            raise ConfigurationError("Nothing to save: this LearnedRouter is not trained.")
        meta = {
            "format": FORMAT,
            "neighbours": self.neighbours,
            "regularization": self.regularization,
            "target_share": self.target_share,
            "threshold": self.threshold,
            "embedder": _embedder_name(self.embeddings),
            "structure_features": list(STRUCTURE_FEATURES),
        }
        arrays: dict[str, Any] = {"meta": np.asarray(json.dumps(meta)), **self._state}
        np.savez_compressed(Path(path), **arrays)

    @classmethod
    def load(cls, path: str | Path, embeddings: Embeddings | None = None) -> LearnedRouter:
        """Read a router written by :meth:`save`; pass the same embedder it was trained with."""
        import numpy as np

        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            state = {k: data[k] for k in data.files if k != "meta"}
        if meta.get("format") != FORMAT:
            raise ConfigurationError(f"{path} is not a saved LearnedRouter ({FORMAT}); it says {meta.get('format')!r}.")
        router = cls(
            embeddings,
            neighbours=meta["neighbours"],
            regularization=meta["regularization"],
            target_share=meta["target_share"],
        )
        if (name := _embedder_name(router.embeddings)) != meta["embedder"]:
            raise ConfigurationError(
                f"{path} was trained with the embedder {meta['embedder']!r}, not {name!r}; pass that embedder."
            )
        router._state, router.threshold = state, meta["threshold"]
        return router

    def __repr__(self) -> str:
        state = f"threshold={self.threshold:.3f}" if self.threshold is not None else "untrained"
        return f"LearnedRouter(neighbours={self.neighbours}, {state})"


def _embedder_name(embedder: Any) -> str:
    from slmkit.retrieval.embeddings import embedding_id

    return embedding_id(embedder)
