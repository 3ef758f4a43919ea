"""LearnedRouter on synthetic data (fake embeddings), RouteLLM's metrics on hand-checked cases, the public surface."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

import slmkit.routing
from slmkit.core.errors import ConfigurationError
from slmkit.routing import LearnedRouter
from slmkit.routing.evaluation import apgr, cpt, evaluate_router, oracle_scores, routing_curve
from slmkit.routing.learned import STRUCTURE_FEATURES, structure_features


def synthetic(n: int = 300) -> tuple[list[str], list[int]]:
    """Prompts whose need for the strong route shows in their length and digits (what structure features see)."""
    prompts, labels = [], []
    for i in range(n):
        hard = i % 3 == 0
        body = "compute 17*23+4/9 = ? " * (8 + i % 5) if hard else "say hello " * (1 + i % 4)
        prompts.append(f"{i}: {body}")
        labels.append(int(hard))
    return prompts, labels


@pytest.fixture(scope="module")
def router() -> LearnedRouter:
    prompts, labels = synthetic()
    return LearnedRouter(DeterministicFakeEmbedding(size=16), neighbours=5).fit(prompts, labels, target_share=0.3)


def test_scores_are_probabilities_and_rank_hard_prompts_first(router):
    hard, easy = router.score("compute 3*4+5/6 = ? " * 9), router.score("say hello")
    assert 0.0 <= easy < hard <= 1.0
    assert router.needs_strong("compute 3*4+5/6 = ? " * 9)
    assert not router.needs_strong("say hello")


def test_threshold_is_calibrated_to_the_target_share(router):
    prompts, _ = synthetic()
    share = float(np.mean(router.scores(prompts) >= router.threshold))
    assert share == pytest.approx(0.3, abs=0.06)
    router.calibrate(prompts, target_share=0.5)
    assert float(np.mean(router.scores(prompts) >= router.threshold)) == pytest.approx(0.5, abs=0.06)


def test_save_and_load_round_trip(router, tmp_path):
    path = tmp_path / "router.npz"
    router.save(path)
    back = LearnedRouter.load(path, DeterministicFakeEmbedding(size=16))
    assert back.threshold == router.threshold
    assert back.score("compute 1+1 = ?") == pytest.approx(router.score("compute 1+1 = ?"))
    with pytest.raises(ConfigurationError, match="trained with the embedder"):
        LearnedRouter.load(path, DeterministicFakeEmbedding(size=8))


def test_logistic_only_router_works_without_neighbours():
    prompts, labels = synthetic()
    plain = LearnedRouter(DeterministicFakeEmbedding(size=16), neighbours=0).fit(prompts, labels)
    assert plain.score("compute 3*4+5/6 = ? " * 9) > plain.score("say hello")


@pytest.mark.parametrize(
    ("prompts", "labels", "message"),
    [(["a", "b"], [1], "one label per prompt"), (["a", "b"], [1, 1], "both labels")],
)
def test_fit_rejects_bad_training_data(prompts, labels, message):
    with pytest.raises(ConfigurationError, match=message):
        LearnedRouter(DeterministicFakeEmbedding(size=4)).fit(prompts, labels)


def test_untrained_router_says_what_to_do():
    with pytest.raises(ConfigurationError, match="fit"):
        LearnedRouter(DeterministicFakeEmbedding(size=4)).score("x")
    with pytest.raises(ConfigurationError):
        LearnedRouter(target_share=1.5)


def test_structure_features_are_named():
    assert len(structure_features("What is 2+2?\nA. 3\nB. 4")) == len(STRUCTURE_FEATURES)


# -- RouteLLM's metrics ------------------------------------------------------------------------------------------
WEAK = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
STRONG = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 1], dtype=bool)


def test_curve_runs_from_all_strong_to_all_weak():
    curve = routing_curve(np.arange(10), WEAK, STRONG)
    assert curve[0].tolist() == [0.0, WEAK.mean()]
    assert curve[-1].tolist() == [1.0, STRONG.mean()]


def test_apgr_anchors():
    rng = np.random.default_rng(0)
    weak, strong = rng.random(20_000) < 0.6, rng.random(20_000) < 0.8
    assert apgr(rng.random(20_000), weak, strong) == pytest.approx(0.5, abs=0.03)
    assert apgr(oracle_scores(weak, strong), weak, strong) > 1.0
    assert apgr(-oracle_scores(weak, strong), weak, strong) < 0.0


def test_cpt_and_quality_report():
    scores = oracle_scores(WEAK, STRONG)
    quality = evaluate_router("oracle", scores, WEAK, STRONG)
    assert quality.cpt50 == pytest.approx(cpt(scores, WEAK, STRONG, 0.5))
    assert 0.0 <= quality.cpt50 <= quality.cpt80 <= 1.0
    assert quality.n == 10


def test_public_surface_is_frozen_and_resolves():
    assert "LearnedRouter" in slmkit.routing.__all__
    for name in slmkit.routing.__all__:
        assert getattr(slmkit.routing, name) is not None
