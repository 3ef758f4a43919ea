"""A router learned from labelled prompts, that falls back to prompt length where it knows nothing.

Training data are prompts with a label each: 1 when the strong route was needed (e.g. the weak model answered
wrongly and the strong one rightly), else 0. The score is a blend, in log-odds, of two estimates of P(strong needed):

    prior   = a + b * log(1 + tokens)              monotone in the prompt's length, nothing else
    learned = mean of  logistic regression on [embedding | topic-free prompt features | their hinges]
                  and  the share labelled 1 among the k most similar training prompts (cosine)
    weight  = learned_weight * familiar(similarity) * familiar(shape)
    score   = sigmoid((1 - weight) * prior + weight * learned)

``familiar(similarity)``: how similar the prompt is to its nearest training prompts, as a percentile of the same
figure among the training prompts themselves (each left out of its own neighbours), ramped from 0 to 1 between
``novelty_ramp``; ``familiar(shape)``: 0 when a topic-free feature (length, lines, numbers, code, answer options...,
routing/prompt_features.py) lies outside the range seen in training, rising to 1 once every feature has at least
``shape_tail`` of the training prompts on either side of it. A prompt unlike the training data (another kind of
task, another format) is therefore ranked by length alone: exactly the order of the length rule the router
replaces, never worse than it. A familiar prompt gets the learned part at ``learned_weight``.

The defaults were chosen by leaving whole MMLU subject groups out (benchmarks/routing_generalise.py, figures in
benchmarks/results/routing.md): the setting whose worst left-out group beats length by the most. Trained on MMLU,
every prompt with fewer than four answer options (a word problem, a chat request) falls back to length. In domain
the fallback costs a little (APGR 0.646 vs 0.661 for the learned part alone, 5 stratified folds); on left-out
groups the blend beats both parts (pooled 0.605 vs learned part 0.575 and length 0.580).

scikit-learn is used only to fit; scoring is dot products in numpy. The threshold is calibrated to a target share
of strong calls on the training prompts (neighbour votes leave the prompt itself out), and can be recalibrated on
real traffic with :meth:`calibrate`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.core.errors import ConfigurationError, MissingDependencyError
from slmkit.routing.embedding import default_router_embeddings, embed_texts
from slmkit.routing.prompt_features import PROMPT_FEATURES, prompt_features

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

__all__ = ["FORMAT", "STRUCTURE_FEATURES", "LearnedRouter", "structure_features"]

FORMAT = "slmkit.routing.learned_router/v2"
"""Versioned name of the saved format: a saved router never changes meaning (v1 files must be retrained)."""

STRUCTURE_FEATURES = PROMPT_FEATURES
"""Names of the topic-free features (kept under this name for callers of the first version)."""
structure_features = prompt_features

_BLOCK = 1024
_HINGES = (0.2, 0.4, 0.6, 0.8)
"""Training quantiles of each (standardised) feature where a hinge max(0, z - knot) starts: piecewise-linear effects."""
_NOVELTY_NEIGHBOURS = 16
_EPS = 1e-4


class LearnedRouter:
    """Scores how much a prompt needs the strong route, learned from labelled prompts, length where unfamiliar.

    Example:
        .. code-block:: python

            router = LearnedRouter().fit(prompts, labels, target_share=0.3)   # labels: 1 = strong route needed
            router.score("Prove that there are infinitely many primes.")     # 0.31
            router.parts(["hi!"])["weight"]                                  # [0.]: unlike training, length only
            router.needs_strong("hi!")                                       # False
            router.save("router.npz"); LearnedRouter.load("router.npz")
    """

    def __init__(
        self,
        embeddings: Embeddings | None = None,
        *,
        neighbours: int = 32,
        regularization: float = 0.01,
        target_share: float = 0.5,
        learned_weight: float = 0.75,
        length_slope: float = 0.6,
        novelty_ramp: tuple[float, float] = (0.0, 0.05),
        shape_tail: float = 0.02,
    ) -> None:
        """``neighbours``: k of the neighbour vote (0 turns it off); ``regularization``: inverse strength C of the
        logistic regression (small: many embedding dimensions, noisy labels); ``target_share``: share of prompts
        the calibrated threshold sends to the strong route; ``learned_weight``: weight of the learned part for a
        familiar prompt (0: length only, 1: learned only); ``length_slope``: log-odds per unit of log(1 + tokens)
        in the prior (its ranking is the length ranking whatever the value; the value sets its scale against the
        learned part); ``novelty_ramp``: percentiles of the training prompts' own similarity to their neighbours
        between which the learned part fades in; ``shape_tail``: share of training prompts a feature value must
        lie inside (on each side) to count as fully familiar."""
        low, high = novelty_ramp
        if neighbours < 0 or regularization <= 0 or not 0 < target_share < 1:
            raise ConfigurationError(
                "LearnedRouter needs neighbours >= 0, regularization > 0 and 0 < target_share < 1; "
                f"got {neighbours}, {regularization}, {target_share}."
            )
        if not 0 <= learned_weight <= 1 or length_slope <= 0 or not 0 <= low <= high <= 1 or not 0 <= shape_tail < 0.5:
            raise ConfigurationError(
                "LearnedRouter needs 0 <= learned_weight <= 1, length_slope > 0, 0 <= novelty_ramp[0] <= "
                f"novelty_ramp[1] <= 1 and 0 <= shape_tail < 0.5; got {learned_weight}, {length_slope}, "
                f"{novelty_ramp}, {shape_tail}."
            )
        self._embeddings = embeddings
        self.neighbours = neighbours
        self.regularization = regularization
        self.target_share = target_share
        self.learned_weight = learned_weight
        self.length_slope = length_slope
        self.novelty_ramp = (float(low), float(high))
        self.shape_tail = shape_tail
        self.threshold: float | None = None
        self._state: dict[str, np.ndarray] | None = None

    # -- features --------------------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            self._embeddings = default_router_embeddings()
        return self._embeddings

    def _inputs(self, prompts: Sequence[str], vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The prompts' unit-length embeddings and their raw topic-free features."""
        import numpy as np

        if vectors is None:
            vectors = embed_texts(self.embeddings, list(prompts))
        features = np.asarray([prompt_features(p) for p in prompts], dtype=np.float64).reshape(-1, len(PROMPT_FEATURES))
        return np.asarray(vectors, dtype=np.float32), features

    @staticmethod
    def _design(vectors: np.ndarray, features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs of the logistic regression: embedding, standardised features, hinges of the features."""
        import numpy as np

        z = (features - state["feature_mean"]) / state["feature_scale"]
        hinges = np.maximum(z[:, :, None] - state["knots"][None, :, :], 0.0).reshape(len(z), -1)
        return np.hstack([vectors, z, hinges])

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
        vectors, features = self._inputs(prompts, vectors)
        feature_mean, feature_scale = features.mean(axis=0), features.std(axis=0)
        feature_scale[feature_scale == 0] = 1.0
        z = (features - feature_mean) / feature_scale
        state: dict[str, np.ndarray] = {
            "feature_mean": feature_mean,
            "feature_scale": feature_scale,
            "knots": np.quantile(z, _HINGES, axis=0).T.copy(),
        }
        x = self._design(vectors, features, state)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=self.regularization, max_iter=3000).fit((x - mean) / scale, y)
        base = float(y.mean())
        log_tokens = features[:, 0]
        state |= {
            "mean": mean.astype(np.float32),
            "scale": scale.astype(np.float32),
            "coef": model.coef_[0].astype(np.float32),
            "intercept": np.asarray(model.intercept_, dtype=np.float32),
            "train_vectors": vectors.astype(np.float32),
            "train_labels": y.astype(np.float32),
            "feature_sorted": np.sort(features, axis=0),
            "prior": np.asarray([_logit(base) - self.length_slope * float(log_tokens.mean()), self.length_slope]),
            "base_rate": np.asarray([base]),
            "self_similarity": np.zeros(0),
        }
        self._state = state
        _, similarity = self._neighbourhood(vectors, leave_self_out=True)
        state["self_similarity"] = np.sort(similarity)
        train_scores = self._score(vectors, features, leave_self_out=True)["score"]
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
        vectors, features = self._inputs([prompt], None if vector is None else vector[None, :])
        return float(self._score(vectors, features)["score"][0])

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """Scores of many prompts (embedded in batches)."""
        return self.parts(prompts)["score"]

    def parts(self, prompts: Sequence[str], *, vectors: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The score of each prompt and what it is made of: ``prior`` and ``learned`` (probabilities); the
        ``similarity_percentile`` of its nearest-neighbour similarity among the training prompts' own, and its
        ``shape_tail`` (smallest share of training prompts at or beyond one of its feature values); the
        ``familiarity`` and ``shape`` factors (0-1) made of them, and the ``weight`` of the learned part."""
        return self._score(*self._inputs(prompts, vectors))

    def needs_strong(self, prompt: str) -> bool:
        """True if the score reaches the calibrated threshold."""
        if self.threshold is None:
            raise ConfigurationError("This LearnedRouter has no threshold yet: fit() or calibrate() it first.")
        return self.score(prompt) >= self.threshold

    def _require_state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise ConfigurationError("This LearnedRouter is not trained: call fit(prompts, labels) or load() one.")
        return self._state

    def _neighbourhood(self, vectors: np.ndarray, *, leave_self_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt: the share labelled 1 among its ``neighbours`` nearest training prompts (smoothed toward the
        base rate by one pseudo-neighbour; NaN without a vote), and its mean similarity to the nearest 16."""
        import numpy as np

        s = self._require_state()
        train, labels = s["train_vectors"], s["train_labels"]
        available = len(labels) - int(leave_self_out)
        k_vote, k_near = min(self.neighbours, available), min(_NOVELTY_NEIGHBOURS, available)
        vote = np.full(len(vectors), np.nan)
        similarity = np.ones(len(vectors))
        k = max(k_vote, k_near)
        if k <= 0:
            return vote, similarity
        for start in range(0, len(vectors), _BLOCK):  # blocks keep the similarity matrix small
            sim = vectors[start : start + _BLOCK] @ train.T
            if leave_self_out:  # scoring the training prompts: a prompt is not its own neighbour
                rows = np.arange(len(sim))
                sim[rows, rows + start] = -np.inf
            nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sim, nearest, axis=1), axis=1)
            nearest = np.take_along_axis(nearest, order, axis=1)
            block = slice(start, start + len(sim))
            if k_vote > 0:
                vote[block] = (labels[nearest[:, :k_vote]].sum(axis=1) + s["base_rate"][0]) / (k_vote + 1)
            similarity[block] = np.take_along_axis(sim, nearest[:, :k_near], axis=1).mean(axis=1)
        return vote, similarity

    def _score(self, vectors: np.ndarray, features: np.ndarray, *, leave_self_out: bool = False) -> dict[str, Any]:
        import numpy as np

        s = self._require_state()
        x = self._design(vectors, features, s)
        linear = _sigmoid(((x - s["mean"]) / s["scale"]) @ s["coef"] + s["intercept"][0])
        vote, similarity = self._neighbourhood(vectors, leave_self_out=leave_self_out)
        learned = np.where(np.isnan(vote), linear, (linear + np.nan_to_num(vote)) / 2)
        prior_logit = s["prior"][0] + s["prior"][1] * features[:, 0]
        percentile, tail = self._similarity_percentile(similarity), self._shape_tail(features)
        familiar, shape = _ramp(percentile, *self.novelty_ramp), _ramp(tail, 0.0, self.shape_tail)
        weight = self.learned_weight * familiar * shape
        logit = (1 - weight) * prior_logit + weight * _logit(learned)
        return {
            "score": np.asarray(_sigmoid(logit), dtype=np.float64),
            "prior": _sigmoid(prior_logit),
            "learned": np.asarray(learned, dtype=np.float64),
            "similarity_percentile": percentile,
            "shape_tail": tail,
            "familiarity": familiar,
            "shape": shape,
            "weight": weight,
        }

    def _similarity_percentile(self, similarity: np.ndarray) -> np.ndarray:
        """Share of training prompts whose own similarity to their neighbours is at most this one's."""
        import numpy as np

        reference = self._require_state()["self_similarity"]
        if len(reference) == 0:
            return np.ones(len(similarity))
        return np.searchsorted(reference, similarity, side="right") / len(reference)

    def _shape_tail(self, features: np.ndarray) -> np.ndarray:
        """Per prompt, the smallest share of training prompts at or beyond one of its feature values (0: outside
        the training range on some feature; 0.5: at the median of every feature)."""
        import numpy as np

        seen = self._require_state()["feature_sorted"]
        n = len(seen)
        tail = np.ones(len(features))
        for j in range(seen.shape[1]):
            below = np.searchsorted(seen[:, j], features[:, j], side="right") / n  # share <= value
            above = 1 - np.searchsorted(seen[:, j], features[:, j], side="left") / n  # share >= value
            tail = np.minimum(tail, np.minimum(below, above))
        return tail

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
            "learned_weight": self.learned_weight,
            "length_slope": self.length_slope,
            "novelty_ramp": list(self.novelty_ramp),
            "shape_tail": self.shape_tail,
            "threshold": self.threshold,
            "embedder": _embedder_name(self.embeddings),
            "features": list(PROMPT_FEATURES),
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
            raise ConfigurationError(
                f"{path} is not a saved LearnedRouter ({FORMAT}); it says {meta.get('format')!r}. "
                "Routers saved by an earlier version score differently: fit a new one and save it."
            )
        if meta.get("features") != list(PROMPT_FEATURES):
            raise ConfigurationError(f"{path} was trained on other prompt features; fit a new router.")
        router = cls(
            embeddings,
            neighbours=meta["neighbours"],
            regularization=meta["regularization"],
            target_share=meta["target_share"],
            learned_weight=meta["learned_weight"],
            length_slope=meta["length_slope"],
            novelty_ramp=(meta["novelty_ramp"][0], meta["novelty_ramp"][1]),
            shape_tail=meta["shape_tail"],
        )
        if (name := _embedder_name(router.embeddings)) != meta["embedder"]:
            raise ConfigurationError(
                f"{path} was trained with the embedder {meta['embedder']!r}, not {name!r}; pass that embedder."
            )
        router._state, router.threshold = state, meta["threshold"]
        return router

    def __repr__(self) -> str:
        state = f"threshold={self.threshold:.3f}" if self.threshold is not None else "untrained"
        return f"LearnedRouter(neighbours={self.neighbours}, learned_weight={self.learned_weight}, {state})"


def _ramp(value: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 at or below ``low``, 1 at or above ``high``, linear between (a step above ``low`` if they are equal)."""
    import numpy as np

    if high <= low:
        return (value > low).astype(np.float64)
    return np.asarray(np.clip((value - low) / (high - low), 0.0, 1.0), dtype=np.float64)


def _sigmoid(x: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _logit(p: Any) -> Any:
    import numpy as np

    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    out = np.log(q / (1 - q))
    return float(out) if out.ndim == 0 else out


def _embedder_name(embedder: Any) -> str:
    from slmkit.retrieval.embeddings import embedding_id

    return embedding_id(embedder)
