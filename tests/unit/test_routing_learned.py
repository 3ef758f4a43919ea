"""LearnedRouter on synthetic data (fake embeddings), its fallback to length, RouteLLM's metrics, the public surface."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

import slmkit.routing
from slmkit.core.errors import ConfigurationError
from slmkit.core.tokens import estimate_tokens
from slmkit.routing import LearnedRouter
from slmkit.routing.evaluation import apgr, cpt, evaluate_router, oracle_scores, routing_curve
from slmkit.routing.learned import FORMAT, STRUCTURE_FEATURES, structure_features
from slmkit.routing.prompt_features import PROMPT_FEATURES, prompt_features


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


def test_save_and_load_keeps_the_fallback_settings(tmp_path):
    prompts, labels = topical()
    router = LearnedRouter(TopicEmbeddings(), neighbours=4, learned_weight=0.7, length_slope=1.2,
                           novelty_ramp=(0.01, 0.1), shape_tail=0.02).fit(prompts, labels)  # fmt: skip
    router.save(tmp_path / "r.npz")
    back = LearnedRouter.load(tmp_path / "r.npz", TopicEmbeddings())
    assert (back.learned_weight, back.length_slope, back.novelty_ramp, back.shape_tail) == (0.7, 1.2, (0.01, 0.1), 0.02)
    probe = ["Question 5 about rockets?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:", "taxes?"]
    assert back.scores(probe) == pytest.approx(router.scores(probe))


def test_routers_saved_in_the_first_format_are_refused(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, meta=np.asarray(json.dumps({"format": "slmkit.routing.learned_router/v1"})))
    with pytest.raises(ConfigurationError, match="fit a new one"):
        LearnedRouter.load(path, DeterministicFakeEmbedding(size=16))
    assert FORMAT.endswith("/v2")


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
    with pytest.raises(ConfigurationError, match="learned_weight"):
        LearnedRouter(learned_weight=1.5)
    with pytest.raises(ConfigurationError, match="novelty_ramp"):
        LearnedRouter(novelty_ramp=(0.5, 0.1))


def test_structure_features_are_named():
    assert len(structure_features("What is 2+2?\nA. 3\nB. 4")) == len(STRUCTURE_FEATURES)
    assert STRUCTURE_FEATURES == PROMPT_FEATURES


def test_prompt_features_see_options_numbers_and_code():
    def value(prompt: str, name: str) -> float:
        return prompt_features(prompt)[PROMPT_FEATURES.index(name)]

    mcq = "Which gas do plants absorb?\nA. oxygen\nB. carbon dioxide\nC. helium\nD. neon\nAnswer:"
    assert value(mcq, "log_options") == pytest.approx(np.log1p(4))
    assert value(mcq, "log_stem_chars") == pytest.approx(np.log1p(len("Which gas do plants absorb?\n")))
    assert value("A train leaves at 3 pm.", "log_options") == 0.0
    assert value("Q: How far is it?\nA: 3 km.\nQ: And back?\nA: 3 km.", "log_options") == 0.0  # answers, not options
    assert value("Pick one:\n(a) red\n(b) blue\nC) green", "log_options") == pytest.approx(np.log1p(3))
    assert value("It costs 12.50 dollars, 3 times 4.", "log_numbers") == pytest.approx(np.log1p(3))
    assert value("def f(x):\n    return {x: 1}", "log_code_markers") > 0
    assert value("Tell me about cats.", "log_code_markers") == 0.0
    assert value("", "log_tokens") == 0.0  # the empty prompt has features too


# -- the fallback: a prompt unlike the training data is ranked by length alone --------------------------------
class TopicEmbeddings(Embeddings):
    """Unit vectors near one axis per topic word (cats, rockets, ...), with a little seeded noise per text."""

    TOPICS = ("cats", "rockets", "taxes", "poems")

    def vector(self, text: str) -> list[float]:
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        v = rng.normal(scale=0.05, size=8)
        for axis, topic in enumerate(self.TOPICS):
            if topic in text:
                v[axis] += 1.0
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text)


def topical(n: int = 240) -> tuple[list[str], list[int]]:
    """Questions on cats (easy) and rockets (hard), with answer options; length says nothing about the label."""
    prompts, labels = [], []
    for i in range(n):
        topic = "rockets" if i % 2 else "cats"
        filler = " and why" * (i % 7)
        prompts.append(f"Question {i} about {topic}{filler}?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:")
        labels.append(int(topic == "rockets"))
    return prompts, labels


@pytest.fixture(scope="module")
def topic_router() -> LearnedRouter:
    prompts, labels = topical()
    return LearnedRouter(TopicEmbeddings(), neighbours=8).fit(prompts, labels)


def test_familiar_prompts_get_the_learned_part(topic_router):
    parts = topic_router.parts(
        ["Question 7 about rockets and why?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:",
         "Question 8 about cats and why?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:"]
    )  # fmt: skip
    assert parts["weight"].tolist() == pytest.approx([topic_router.learned_weight] * 2)
    assert parts["learned"][0] > 0.8 > 0.2 > parts["learned"][1]
    assert parts["score"][0] > parts["score"][1]


@pytest.mark.parametrize(
    "prompts",
    [
        # another format: no answer options (a feature outside everything seen in training)
        [
            "How many cats fit in a box?",
            "A shop sells 3 cats for 12 dollars each and 4 more for 9 dollars. "
            "How much does it earn if it sells all of them twice a day?",
        ],
        # another topic in the same format: unlike every training prompt in the embedding space
        [
            "Question 1 about taxes?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:",
            "Question 2 about taxes and why and why and why?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:",
        ],
    ],
)
def test_unfamiliar_prompts_fall_back_to_the_length_prior(topic_router, prompts):
    parts = topic_router.parts(prompts)
    assert parts["weight"].tolist() == [0.0, 0.0]
    assert parts["score"] == pytest.approx(parts["prior"])
    assert parts["score"][1] > parts["score"][0]  # the longer prompt ranks higher, whatever the learned part says


def test_fallback_scores_rank_exactly_as_token_length(topic_router):
    rng = np.random.default_rng(0)
    prompts = [" ".join(["poems"] + ["rhyme"] * int(k)) for k in rng.integers(1, 60, size=30)]
    scores = topic_router.scores(prompts)
    tokens = [estimate_tokens(p) for p in prompts]
    assert np.argsort(scores, kind="stable").tolist() == np.argsort(tokens, kind="stable").tolist()
    # the same order and the same ties: every threshold splits the prompts as length does, so APGR is equal
    weak, strong = rng.random(30) < 0.5, np.ones(30, dtype=bool)
    assert apgr(scores, weak, strong) == apgr(np.asarray(tokens, dtype=float), weak, strong)


def test_learned_weight_zero_is_the_length_rule():
    prompts, labels = topical()
    router = LearnedRouter(TopicEmbeddings(), neighbours=8, learned_weight=0.0).fit(prompts, labels)
    scores = router.scores(prompts[:40])
    tokens = np.asarray([estimate_tokens(p) for p in prompts[:40]])
    assert np.all(np.diff(scores[np.argsort(tokens)]) >= 0)


def test_training_scores_leave_each_prompt_out_of_its_own_neighbours(topic_router):
    # the threshold comes from training prompts scored as if unseen: their similarity percentiles spread over 0-1
    prompts, _ = topical()
    percentiles = topic_router.parts(prompts)["similarity_percentile"]
    assert percentiles.min() >= 0.0
    assert percentiles.max() == 1.0


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
