"""Prompt-lookup decoding without a model: the n-gram drafter, and the accept/reject loop against a fake."""

from __future__ import annotations

import pytest

from slmkit.agent.prompt_lookup import DraftStats, NgramDrafter, speculate


def test_drafts_what_followed_the_last_ngram_in_the_prompt():
    # prompt: "the cat sat on the mat", answer so far: "... the cat"
    drafter = NgramDrafter([1, 2, 3, 4, 1, 5, 9, 1, 2], min_ngram=2)
    assert drafter.draft(3) == [3, 4, 1]
    assert drafter.draft(10) == [3, 4, 1, 5, 9, 1, 2], "a draft stops where the context ends"


def test_longer_ngrams_win_over_earlier_shorter_ones():
    # "8 2" first occurs followed by 1; "7 8 2" occurs later followed by 5; the tail is "7 8 2".
    drafter = NgramDrafter([8, 2, 1, 7, 8, 2, 5, 6, 7, 8, 2], max_ngram=3, min_ngram=2)
    assert drafter.match() == (3, 6)
    assert drafter.draft(2) == [5, 6]


def test_the_first_occurrence_of_an_ngram_is_used():
    # Passages come first: the first occurrence is where an answer copies from.
    drafter = NgramDrafter([5, 6, 1, 5, 6, 2, 5, 6], max_ngram=2, min_ngram=2)
    assert drafter.draft(1) == [1]


def test_no_match_no_draft():
    drafter = NgramDrafter([1, 2, 3, 4])
    assert drafter.match() == (0, -1)
    assert drafter.draft(5) == []
    assert NgramDrafter().draft(5) == []
    assert NgramDrafter([1]).draft(5) == []


def test_the_tail_itself_is_never_its_own_match():
    drafter = NgramDrafter([1, 2, 3], max_ngram=3, min_ngram=2)
    assert drafter.draft(4) == []
    drafter.extend([1, 2])
    assert drafter.draft(4) == [3, 1, 2], "the earlier '1 2' is found, not the one just appended"


def test_appending_updates_the_index_like_building_it_at_once():
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9, 5]
    grown = NgramDrafter(tokens[:5], min_ngram=1)
    for i, token in enumerate(tokens[5:], start=5):
        grown.append(token)
        whole = NgramDrafter(tokens[: i + 1], min_ngram=1)
        assert grown.match() == whole.match()
        assert grown.draft(4) == whole.draft(4)


def test_tails_shorter_than_three_tokens_draft_nothing_by_default():
    drafter = NgramDrafter([1, 2, 3, 4, 9, 2])
    assert drafter.draft(3) == [], "a lone '2' is too weak a cue"
    assert NgramDrafter([1, 2, 3, 4, 9, 2], min_ngram=1).draft(3) == [3, 4, 9]
    drafter.append(3)
    assert drafter.draft(3) == [], "so is '2 3'"
    assert NgramDrafter([1, 2, 3, 4, 9, 2, 3], min_ngram=2).draft(3) == [4, 9, 2]
    drafter.extend([4, 9])
    assert drafter.draft(3) == [2, 3, 4], "'3 4 9' and longer tails match"


def test_repeating_patterns_draft_across_the_tail():
    drafter = NgramDrafter([4, 5, 4, 5], max_ngram=2, min_ngram=2)
    assert drafter.draft(4) == [4, 5], "the match ends where the context ends"


def test_zero_or_negative_length_drafts_nothing():
    drafter = NgramDrafter([1, 2, 1, 2])
    assert drafter.draft(0) == []
    assert drafter.draft(-1) == []


@pytest.mark.parametrize(("lo", "hi"), [(0, 2), (3, 2)])
def test_bad_ngram_bounds_are_refused(lo, hi):
    with pytest.raises(ValueError, match="min_ngram"):
        NgramDrafter([], min_ngram=lo, max_ngram=hi)


# -- the accept/reject loop, against a fake model ------------------------------------------------------------------


class FakeModel:
    """A deterministic "greedy model" behind the BatchVerifier protocol, with a KV cache that can go wrong.

    The next token is a function of the whole context: the scripted answer while the context is the prompt plus a
    prefix of it, and a hash of the context otherwise. So a rejected draft token left in the cache, or a row read
    for the wrong position, changes what comes out.
    """

    def __init__(self, prompt, answer):
        self.prompt = list(prompt)
        self.answer = list(answer)
        self.cache = list(prompt)  # tokens whose keys/values the cache holds
        self.rows: list[int] = []  # next-token picks of the last batch, by row
        self.batch_start = 0
        self.picked: list[int] = []  # what the sampler recorded (its repeat-penalty window)
        self.batches: list[list[int]] = []

    def next_token(self, context):
        produced = context[len(self.prompt) :]
        if context[: len(self.prompt)] == self.prompt and produced == self.answer[: len(produced)]:
            return self.answer[len(produced)] if len(produced) < len(self.answer) else 0
        return 1000 + hash(tuple(context)) % 97

    def decode(self, tokens):
        self.batches.append(list(tokens))
        self.batch_start = len(self.cache)
        self.cache.extend(tokens)
        self.rows = [self.next_token(self.cache[: self.batch_start + i + 1]) for i in range(len(tokens))]

    def pick(self, row):
        token = self.rows[row]
        self.picked.append(token)
        return token

    def keep(self, rows):
        assert 1 <= rows <= len(self.batches[-1])
        del self.cache[self.batch_start + rows :]


def plain_greedy(model, limit):
    """What one-token-at-a-time decoding produces: the reference the loop must reproduce exactly."""
    context, out = list(model.prompt), []
    while len(out) < limit:
        token = model.next_token(context)
        out.append(token)
        context.append(token)
    return out


def run(prompt, answer, *, n_draft, limit, stop_after=None):
    model = FakeModel(prompt, answer)
    first = model.next_token(model.prompt)  # picked from the prompt's logits by the caller
    model.picked.append(first)
    stats = DraftStats()
    out = [first]
    gen = speculate(first, NgramDrafter(prompt, min_ngram=2), model, n_draft=n_draft, limit=limit, stats=stats)
    for token, row in gen:
        assert token == model.rows[row], "the yielded row holds the logits the token was picked from"
        out.append(token)
        if stop_after is not None and len(out) >= stop_after:
            gen.close()
            break
    return model, out, stats


PASSAGE = list(range(100, 160))


@pytest.mark.parametrize(
    "answer",
    [
        PASSAGE[10:40],  # a verbatim copy
        [7, 8, *PASSAGE[5:15], 9, *PASSAGE[30:45], 11, 12],  # copies with words in between
        [*PASSAGE[20:25], 200, *PASSAGE[26:50]],  # a copy that deviates once, then rejoins the passage
        [5, 6, 7, 8, 9, 10, 11, 12],  # nothing copied
        [*PASSAGE[0:6], *PASSAGE[0:6], *PASSAGE[0:6]],  # repeats itself
    ],
)
@pytest.mark.parametrize("n_draft", [1, 3, 8, 23])
def test_the_output_is_plain_greedy_decoding_token_for_token(answer, n_draft):
    prompt = [1, 2, *PASSAGE, 3, 4]
    for limit in (1, 2, 5, len(answer), len(answer) + 5):
        model, out, stats = run(prompt, answer, n_draft=n_draft, limit=limit)
        assert out == plain_greedy(FakeModel(prompt, answer), limit), limit
        # The sampler recorded exactly the output: its repeat-penalty window is the plain loop's.
        assert model.picked == out
        # The cache holds the prompt and every token but the last (not decoded yet).
        assert model.cache == prompt + out[:-1]
        # Every batch is the last token plus a draft no longer than n_draft, and none reaches past the limit.
        assert all(1 <= len(b) <= n_draft + 1 for b in model.batches)
        assert len(model.batches) == len(out) - 1 - stats.accepted
        assert 0 <= stats.accepted <= stats.drafted


def test_copied_spans_take_fewer_batches_than_tokens():
    prompt = [1, 2, *PASSAGE, 3, 4]
    answer = PASSAGE[10:40]
    model, out, stats = run(prompt, answer, n_draft=8, limit=len(answer))
    assert out == answer
    # The first token comes from the prompt; "4 110" is not in the prompt, so the second batch is [110] alone;
    # from then on "110 111" ... match, and each batch of 1 + 8 yields 9 tokens: 1 + 1 + 9 + 9 + 9 + 1 = 30.
    assert [len(b) for b in model.batches] == [1, 9, 9, 9, 1]
    assert stats.accepted == stats.drafted == 24


def test_a_rejected_draft_is_dropped_from_the_cache():
    # "110 111" occurs twice in the prompt, followed by 112 first: the answer takes the other branch.
    prompt = [1, 110, 111, 112, 113, 114, 2, 110, 111, 150, 151, 152, 3]
    answer = [110, 111, 150, 151, 152, 4]
    model, out, stats = run(prompt, answer, n_draft=3, limit=len(answer))
    assert out == answer
    assert stats.drafted > stats.accepted
    assert model.batches[1][:2] == [111, 112], "the first occurrence was drafted and rejected"
    assert model.cache == prompt + out[:-1]


def test_stopping_early_leaves_a_cache_that_matches_its_tokens():
    prompt = [1, 2, *PASSAGE, 3, 4]
    answer = PASSAGE[10:40]
    for stop_after in range(2, 12):
        model, out, _ = run(prompt, answer, n_draft=8, limit=len(answer), stop_after=stop_after)
        assert out == answer[:stop_after]
        # The last batch may still be in the cache whole; what it holds is the answer's own tokens at their positions.
        assert model.cache[: len(prompt)] == prompt
        generated = model.cache[len(prompt) :]
        assert generated == answer[: len(generated)]


def test_nothing_is_decoded_when_the_first_token_is_the_limit():
    model, out, stats = run([1, 2, 3], [7, 8, 9], n_draft=4, limit=1)
    assert out == [7]
    assert model.batches == []
    assert stats == DraftStats()
