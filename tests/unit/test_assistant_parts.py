"""The assistant's small parts: citation attribution, the sentence cap, excerpts, follow-up handling, the CLI's
errors. Table-driven where the behaviour is a table."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from slmkit.agent.citations import SentenceCap, attribute, strip_markers
from slmkit.agent.memory import ConversationMemory, check_rewrite, fallback_query, looks_like_follow_up
from slmkit.agent.prompts import answer_messages, excerpt, one_per_source, rewrite_messages
from slmkit.cli import EXIT_ERROR, EXIT_USAGE, main

PASSAGES = [
    "Every full-time employee has 28 paid vacation days per calendar year.",
    "The GridBox 3 has a 10-year warranty. It weighs 118 kg.",
]


@pytest.mark.parametrize(
    ("answer", "text", "cited"),
    [
        ("Employees get 28 paid vacation days per year.", "Employees get 28 paid vacation days per year [1].", [0]),
        ("The GridBox 3 has a 10-year warranty [1].", "The GridBox 3 has a 10-year warranty [2].", [1]),  # wrong
        ("The GridBox 3 has a 10-year warranty [2].", "The GridBox 3 has a 10-year warranty [2].", [1]),  # right
        ("The GridBox 3 has a 10-year warranty. [2]", "The GridBox 3 has a 10-year warranty [2].", [1]),
        ("It weighs 118 kg [7].", "It weighs 118 kg [2].", [1]),  # out of range
        ("Yes.", "Yes.", []),  # too few words to prove anything
        ("Penguins eat fish in Antarctica [1].", "Penguins eat fish in Antarctica.", []),  # supported by none
        (
            "Employees get 28 vacation days [1]. The GridBox 3 has a 10-year warranty.",
            "Employees get 28 vacation days [1]. The GridBox 3 has a 10-year warranty [2].",
            [0, 1],
        ),
    ],
)
def test_attribute(answer, text, cited):
    result = attribute(answer, PASSAGES)
    assert result.text == text
    assert result.cited == cited


@pytest.mark.parametrize(
    ("answer", "text", "cited"),
    [
        ("No.", "No [2].", [1]),  # a reply about the question: the passage covering the question
        ("Yes, the GridBox 3 warranty lasts 10 years.", "Yes, the GridBox 3 warranty lasts 10 years [2].", [1]),
        ("Penguins eat fish in Antarctica.", "Penguins eat fish in Antarctica.", []),  # says something new
    ],
)
def test_attribute_a_reply_to_the_question(answer, text, cited):
    result = attribute(answer, PASSAGES, question="Does the GridBox 3 have a 10-year warranty?")
    assert (result.text, result.cited) == (text, cited)


def test_a_restatement_of_the_question_cites_the_passage_covering_the_question():
    result = attribute(
        "Based on the provided sources, it is true that the GridBox 3 warranty is long. Penguins sing at night.",
        PASSAGES,
        question="Does the GridBox 3 have a 10-year warranty?",
    )
    assert result.text == (
        "Based on the provided sources, it is true that the GridBox 3 warranty is long [2]. Penguins sing at night."
    )
    assert result.cited == [1]


def test_a_restatement_cites_the_top_ranked_passage_over_one_sharing_more_of_its_words():
    # Passage 2 shares every word of the question by coincidence; passage 1 is what the retriever ranked first
    # for it and is the one the reply is about.
    passages = [
        "Survey of liver transplant programs in 2001: a third required patients to stop methadone before listing.",
        "In 2001, 32 liver transplant patients were asked to stop smoking; programs required no methadone data.",
    ]
    question = "Is it true that 32% of liver transplant programs required patients to stop methadone in 2001?"
    answer = "No, it is not true that 32% of liver transplant programs required patients to stop methadone in 2001."
    result = attribute(answer, passages, question=question)
    assert (result.cited, result.text[-12:]) == ([0], "in 2001 [1].")
    # A marker the model wrote itself is kept when its passage covers the sentence ...
    assert attribute(answer[:-1] + " [2].", passages, question=question).cited == [1]
    # ... and without the question the sentence is a claim of its own: the passage covering all of it.
    assert attribute(answer, passages).cited == [1]


def test_a_long_restatement_with_a_few_new_words_is_still_a_reply():
    # 3 of the sentence's 14 terms are new (fewer than a third): it restates the question, so it cites the
    # top-ranked passage, not the one that also names the two countries.
    passages = [
        "The GridBox 3 battery keeps its 10-year warranty when installed outdoors, including cold regions.",
        "Installers in northern Norway and Sweden mount the GridBox 3 battery outdoors; cold regions void no "
        "warranty after 10 years.",
    ]
    question = "Does the GridBox 3 battery keep a 10-year warranty when installed outdoors in cold regions?"
    answer = (
        "Yes, the GridBox 3 battery keeps its 10-year warranty when installed outdoors in cold northern regions of "
        "Norway and Sweden."
    )
    assert attribute(answer, passages, question=question).cited == [0]
    assert attribute(answer, passages).cited == [1]


def test_a_reply_cites_a_source_that_words_the_question_differently():
    # The top-ranked source says "outcome" where the question says "outcomes" (a SciFact claim): a stemmer that
    # matched only one form left it covering a fifth of the question, and the reply cited the second source.
    passages = [
        "Stable partnership and outcome in HIV infected patients receiving antiretroviral therapy.",
        "Caregiver burden in HIV-positive partners of men with AIDS.",
    ]
    question = "Is it true that having a main partner worsens HIV outcomes?"
    answer = "Based on the provided sources, it is not true that having a main partner worsens HIV outcomes."
    assert attribute(answer, passages, question=question).cited == [0]


def test_a_bare_reply_to_a_question_no_passage_covers_cites_nothing():
    assert attribute("No.", PASSAGES, question="Is the sky green today?").cited == []


@pytest.mark.parametrize(
    ("answer", "cited"),
    [
        ("The answer is: 28", [0]),  # the passage that holds it and covers the question
        ("28.", [0]),
        ("118", []),  # a passage holds it, but not one about vacation days
        ("30", []),  # no passage holds it
        ("Vacation.", []),  # only repeats the question
    ],
)
def test_a_bare_answer_cites_the_passage_holding_it_beside_the_question(answer, cited):
    question = "How many vacation days do employees get per year?"
    assert attribute(answer, PASSAGES, question=question).cited == cited
    assert attribute(answer, PASSAGES).cited == []  # without the question one word proves nothing


def test_attribute_counts_removed_markers():
    assert attribute("Penguins eat fish [1, 2].", PASSAGES).removed_markers == 2
    assert attribute("It weighs 118 kg [2].", PASSAGES).removed_markers == 0


def test_strip_markers_leaves_other_brackets():
    assert strip_markers("Mail [it-help@x.example] now [1][2].") == "Mail [it-help@x.example] now."


def test_sentence_cap_never_shows_a_word_of_a_sentence_past_the_limit():
    cap = SentenceCap(2)
    pieces = [
        "The",
        " box",
        " has",
        " 10",
        ".",
        "5 kWh",
        ".",
        " It",
        " weighs",
        " 118 kg",
        ".",
        " Also",
        " it",
        " sings",
        " loudly",
    ]
    shown = [cap.feed(p) for p in pieces]
    assert "".join(shown) == "The box has 10.5 kWh. It weighs 118 kg."
    assert not any(c.isalpha() for piece in shown[-4:] for c in piece)  # "Also it sings loudly": held, dropped
    assert cap.text == "The box has 10.5 kWh. It weighs 118 kg."
    assert cap.done
    assert cap.feed(" more") == ""
    assert cap.flush() == ""


def test_sentence_cap_does_not_count_short_pieces_and_flushes_a_short_tail():
    cap = SentenceCap(1)
    shown = "".join(cap.feed(p) for p in ["The answer is:", "\n\n1.", " The box weighs 118 kg", ".", " Yes", "."])
    assert shown == "The answer is:\n\n1. The box weighs 118 kg."  # "Yes." is held: it might grow
    assert cap.flush() == " Yes."
    assert cap.text == "The answer is:\n\n1. The box weighs 118 kg. Yes."


def test_sentence_cap_none_lets_everything_through_but_trailing_space():
    cap = SentenceCap(None)
    assert "".join(cap.feed(p) for p in ["One.", " Two.", " Three. "]) == "One. Two. Three."
    assert cap.flush() == ""
    assert not cap.done


def test_excerpt_keeps_the_sentences_sharing_most_words_in_order_within_budget():
    text = "Cats purr. The warranty lasts 10 years. Dogs bark loudly at night. Warranty claims need a receipt."
    out = excerpt(text, "How long does the warranty last?", budget=70)
    assert out == "The warranty lasts 10 years. Warranty claims need a receipt."
    assert len(excerpt("word " * 200, "word", budget=50)) <= 54  # one long sentence is cut, with " ..."


def test_excerpt_with_a_scorer_keeps_the_best_scored_sentences_in_order():
    text = "Cats purr. The warranty lasts 10 years. Dogs bark loudly at night. Warranty claims need a receipt."
    asked = []

    def scorer(query, sentences):
        asked.append((query, sentences))
        return [len(s) if "a" in s.split()[0].lower() else 0 for s in sentences]  # favours "Cats", "Warranty"

    out = excerpt(text, "How long?", budget=60, scorer=scorer)
    assert out == "Cats purr. Warranty claims need a receipt."
    assert asked == [
        (
            "How long?",
            [
                "Cats purr.",
                "The warranty lasts 10 years.",
                "Dogs bark loudly at night.",
                "Warranty claims need a receipt.",
            ],
        )
    ]


def test_answer_prompt_puts_sources_next_to_the_question():
    messages = answer_messages("Q?", ["alpha", "beta"], instructions="Be brief.", history=[AIMessage("earlier")])
    assert [m.type for m in messages] == ["system", "ai", "human"]
    assert messages[-1].content == "Sources:\n[1] alpha\n[2] beta\n\nQuestion: Q?"


def test_rewrite_prompt_shows_the_conversation():
    messages = rewrite_messages("Do they expire?", [HumanMessage("Vacation days?"), AIMessage("28.")])
    assert "User: Vacation days?\nAssistant: 28." in str(messages[-1].content)
    assert str(messages[-1].content).endswith("Follow-up question: Do they expire?\nStandalone question:")


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("Do they carry over?", True),
        ("What about it?", True),
        ("And Tuesday?", True),  # too short to search on
        ("How many vacation days do employees get?", False),
        ("What does error code E17 mean on the GridBox?", False),
    ],
)
def test_looks_like_follow_up(question, follow_up):
    assert looks_like_follow_up(question) is follow_up


HISTORY = [HumanMessage("How many vacation days do employees get per year?"), AIMessage("The answer is: 2")]


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        ("Do vacation days carry over to the next year?", "Do vacation days carry over to the next year?"),
        ("Standalone question: Do vacation days carry over?", "Do vacation days carry over?"),
        ('"Do unused vacation days carry over?"\nThey do.', "Do unused vacation days carry over?"),
        ("", None),
        ("The answer is: 2", None),  # an earlier answer
        ("The answer is: No", None),  # nothing of the earlier question
        ("Do they carry over?", None),  # the subject is still missing
        ("How many vacation days do employees get per year?", None),  # lost what the follow-up asks
    ],
)
def test_check_rewrite(rewrite, expected):
    assert check_rewrite(rewrite, "Do they carry over?", HISTORY) == expected


def test_fallback_query_joins_the_previous_question():
    assert fallback_query("Do they carry over?", HISTORY) == (
        "How many vacation days do employees get per year? Do they carry over?"
    )
    assert fallback_query("Hello?", []) == "Hello?"


def test_memory_keeps_the_last_turns():
    memory = ConversationMemory(max_turns=2)
    for i in range(3):
        memory.add(f"q{i}", f"a{i}")
    assert [m.content for m in memory.messages()] == ["q1", "a1", "q2", "a2"]
    assert [m.content for m in memory.messages(last=1)] == ["q2", "a2"]
    assert memory.messages(last=0) == []


def test_cli_ask_without_a_knowledge_base_says_how_to_make_one(tmp_path, capsys):
    code = main(["ask", "How long is the warranty?", "--kb", "nothing", "--path", str(tmp_path)])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert "no knowledge base 'nothing'" in err
    assert "slmkit ingest PATH --kb nothing" in err
    assert "--no-kb" in err


def test_cli_chat_without_a_knowledge_base_fails_the_same_way(tmp_path, capsys):
    assert main(["chat", "--kb", "nothing", "--path", str(tmp_path)]) == EXIT_ERROR
    assert "no knowledge base 'nothing'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["ask"], ["ask", "q", "-k", "many"], ["chat", "--bogus"]])
def test_cli_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE


def test_one_per_source_merges_chunks_of_a_source_in_text_order_and_keeps_k_sources():
    def chunk(cid: str, source: str, start: int, text: str, page: int | None = None) -> Document:
        meta = {"source": source, "start_index": start, "start_line": start, "end_line": start + 1}
        if page is not None:
            meta["page"] = page
        return Document(id=cid, page_content=text, metadata=meta)

    docs = [
        chunk("a2", "a.md", 50, "Second part."),
        chunk("b1", "b.pdf", 0, "Page one.", page=1),
        chunk("a1", "a.md", 0, "First part."),
        chunk("b2", "b.pdf", 0, "Page two.", page=2),
        chunk("c1", "c.md", 0, "Never shown."),
    ]
    out = one_per_source(docs, k=3)
    assert [(d.id, d.page_content) for d in out] == [
        ("a2", "First part.\nSecond part."),
        ("b1", "Page one."),
        ("b2", "Page two."),
    ]
    assert (out[0].metadata["start_line"], out[0].metadata["end_line"]) == (0, 51)
