"""Model profiles and the decline rule: which settings an assistant ends up with, and when it declines."""

from __future__ import annotations

import pytest

from slmkit.agent import AssistantConfig
from slmkit.agent.catalogue import CATALOGUE, profile_for
from slmkit.agent.decline import DeclineRule, answer_signals, passage_signals, says_not_found
from slmkit.agent.profiles import PROFILE_FIELDS, ModelProfile


def test_every_catalogue_model_has_a_profile_and_the_default_model_keeps_the_old_defaults():
    for model_id in CATALOGUE:
        assert isinstance(profile_for(model_id), ModelProfile)
    tiny = AssistantConfig(model="smollm2-135m-instruct").with_profile()
    assert (tiny.k, tiny.passage_chars, tiny.group_by_source) == (3, 400, True)


def test_a_profile_fills_the_fields_the_caller_did_not_set():
    profile = profile_for("qwen2.5-coder-0.5b-instruct")
    assert profile is not None
    config = AssistantConfig(model="qwen2.5-coder-0.5b-instruct").with_profile()
    for name in PROFILE_FIELDS:
        assert getattr(config, name) == getattr(profile, name), name


def test_explicit_settings_win_over_the_profile():
    config = AssistantConfig(model="qwen2.5-coder-0.5b-instruct", k=9, instructions="Be brief.").with_profile()
    assert (config.k, config.instructions) == (9, "Be brief.")
    assert config.passage_chars == profile_for("qwen2.5-coder-0.5b-instruct").passage_chars  # type: ignore[union-attr]


def test_a_gguf_path_has_no_profile_and_keeps_the_config_as_it_is():
    config = AssistantConfig(model="/models/other.gguf", k=5)
    assert profile_for("/models/other.gguf") is None
    assert config.with_profile() == config


def test_applying_a_profile_twice_changes_nothing_and_survives_a_round_trip():
    once = AssistantConfig(model="qwen2.5-coder-1.5b-instruct").with_profile()
    assert once.with_profile() == once
    assert AssistantConfig.model_validate(once.model_dump()).with_profile() == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The documents do not say.", True),
        ("The sources don't mention the year.", True),
        ("There is no information about it [1].", True),
        ("The answer is not stated in the sources.", True),
        ("The Normans came from Normandy [1].", False),
        ("It does matter.", False),
    ],
)
def test_the_models_own_refusal_is_recognised_in_its_common_forms(text, expected):
    assert says_not_found(text, "The documents do not say.") is expected


def test_passage_signals_see_question_words_and_names_missing_from_the_passages():
    passages = ["The Normans gave their name to Normandy in the 10th century."]
    covered = passage_signals("When did the Normans name Normandy?", passages, [0.7])
    missing = passage_signals("When did the Vikings name Iceland?", passages, [0.4])
    assert covered["question_coverage"] > missing["question_coverage"]
    assert (covered["missing_names"], missing["missing_names"]) == (0.0, 2.0)
    assert covered["top_relevance"] == 0.7


def test_answer_signals_measure_how_much_of_the_answer_the_passages_hold():
    passages = ["The battery stores 13.5 kWh and weighs 118 kg."]
    grounded = answer_signals("It stores 13.5 kWh.", passages, {"min_prob": 0.4, "mean_logprob": -0.2}, refused=False)
    invented = answer_signals("It stores 20 kWh of hydrogen.", passages, {}, refused=True)
    assert grounded["answer_support"] == 1.0
    assert invented["answer_support"] == 0.5  # "stores" and "kWh" are there, "20" and "hydrogen" are not
    assert (grounded["min_prob"], invented["refused"]) == (0.4, 1.0)


def test_a_decline_rule_declines_below_its_threshold_and_an_empty_rule_never_does():
    rule = DeclineRule(weights={"answer_support": 4.0}, bias=-2.0, threshold=0.5)
    assert rule.declines({"answer_support": 0.1}) is True
    assert rule.declines({"answer_support": 0.9}) is False
    assert 0.0 < rule.score({"answer_support": 0.5}) < 1.0
    assert DeclineRule().declines({"answer_support": 0.0}) is False


def test_a_decline_rule_standardises_signals_as_it_was_fitted():
    rule = DeclineRule(weights={"x": 1.0}, center={"x": 10.0}, scale={"x": 2.0})
    assert rule.score({"x": 10.0}) == pytest.approx(0.5)
    assert rule.score({"x": 12.0}) == pytest.approx(1 / (1 + 2.718281828**-1))


def test_the_profile_follows_the_local_model_that_answers_and_no_profile_fits_a_foreign_model(tmp_path):
    from langchain_core.language_models import GenericFakeChatModel

    from slmkit.agent import Assistant, ChatLocalSLM
    from slmkit.retrieval import KnowledgeBase
    from slmkit.retrieval.testing import BagOfWordsEmbedding
    from slmkit.routing import Route, RoutedChatModel, RoutingPolicy

    kb = KnowledgeBase(name="profiles", path=tmp_path, embedding=BagOfWordsEmbedding())
    qwen = ChatLocalSLM(model="qwen2.5-coder-0.5b-instruct")  # cheap: nothing loads before the first call
    routed = RoutedChatModel(policy=RoutingPolicy(routes={"local": Route(model=qwen, local=True)}))
    for model in (qwen, routed):
        config = Assistant(kb, model=model, guards=[]).config
        assert (config.model, config.group_by_source) == ("qwen2.5-coder-0.5b-instruct", False)
    foreign = Assistant(kb, model=GenericFakeChatModel(messages=iter([])), guards=[]).config
    assert foreign == AssistantConfig()
    assert foreign.decline is None
    assert Assistant(kb, guards=[]).config.decline == profile_for("smollm2-135m-instruct").decline  # type: ignore[union-attr]
