"""SQuAD 2.0 as documents: the shared data of the document-Q&A benchmarks (answers, reranker, cascade).

The file (``../shared/data/qa/squad2_dev.json`` or ``--data``) holds Wikipedia articles whose paragraphs carry
questions; about half of them are unanswerable from the text (``is_impossible``). Here:

    articles -> one ``<title>.txt`` per article (title line, paragraphs separated by blank lines)
             -> ``KnowledgeBase.ingest`` (as a user's folder)                               ``write_articles``
    questions -> a seeded sample, half answerable and half not                              ``sample``
    reply + gold answers -> SQuAD normalisation (lower case, no punctuation or articles)    ``contains_answer``
    passage -> does it hold the gold paragraph's answer (answer + its neighbouring words)   ``holds_gold``
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slmkit.retrieval import KnowledgeBase

SQUAD = Path(
    os.environ.get("SQUAD_FILE", Path(__file__).resolve().parents[2] / "shared" / "data" / "qa" / "squad2_dev.json")
)
WORK = Path(os.environ.get("SLMKIT_BENCH_DIR", Path(__file__).resolve().parent / "out"))


@dataclass(frozen=True)
class Question:
    id: str
    article: str
    question: str
    answers: tuple[str, ...]
    """Gold answers (empty for unanswerable questions)."""
    impossible: bool
    paragraph: str
    """The paragraph the question was written on (answerable or not)."""
    starts: tuple[int, ...] = ()
    """Character offset of each gold answer in ``paragraph``."""


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]


def load(path: Path = SQUAD) -> tuple[list[Article], list[Question]]:
    """Articles and all their questions, in file order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    articles, questions = [], []
    for entry in data:
        title = entry["title"]
        paragraphs = tuple(p["context"] for p in entry["paragraphs"])
        articles.append(Article(title, paragraphs))
        for paragraph in entry["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or []
                questions.append(
                    Question(
                        id=qa["id"],
                        article=title,
                        question=qa["question"].strip(),
                        answers=tuple(dict.fromkeys(a["text"] for a in answers)),
                        impossible=bool(qa.get("is_impossible")),
                        paragraph=paragraph["context"],
                        starts=tuple(dict.fromkeys(a["answer_start"] for a in answers)),
                    )
                )
    return articles, questions


def file_name(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", title) + ".txt"


def write_articles(articles: Sequence[Article], folder: Path) -> Path:
    """One text file per article; files already there with the same text are left alone (ingestion skips them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for article in articles:
        text = article.title.replace("_", " ") + "\n\n" + "\n\n".join(article.paragraphs) + "\n"
        target = folder / file_name(article.title)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return folder


def sample(
    questions: Sequence[Question], n: int, seed: int = 0, *, articles: Iterable[str] | None = None
) -> list[Question]:
    """``n`` questions, half answerable and half not (as far as there are), seeded, in a shuffled order;
    ``articles`` restricts the sample to those titles."""
    wanted = set(articles) if articles is not None else None
    pool = [q for q in questions if wanted is None or q.article in wanted]
    rng = random.Random(seed)
    answerable = [q for q in pool if not q.impossible]
    unanswerable = [q for q in pool if q.impossible]
    picked = rng.sample(answerable, min(n - n // 2, len(answerable)))
    picked += rng.sample(unanswerable, min(n // 2, len(unanswerable)))
    rng.shuffle(picked)
    return picked


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether ``text`` contains one of the gold answers as whole words, both normalised."""
    padded = f" {normalize(text)} "
    return any(norm and f" {norm} " in padded for norm in map(normalize, answers))


def holds_gold(passage: str, question: Question, window: int = 6) -> bool:
    """Whether ``passage`` holds the gold answer *in its gold paragraph's words*: the answer and most of the
    ``window`` words on each side of it (a bare "1066" elsewhere in the article does not count)."""
    if question.impossible:
        return False
    body = f" {normalize(passage)} "
    have = set(body.split())
    for answer, start in zip(question.answers, question.starts, strict=False):
        norm = normalize(answer)
        if not norm or f" {norm} " not in body:
            continue
        before = normalize(question.paragraph[:start]).split()[-window:]
        after = normalize(question.paragraph[start + len(answer) :]).split()[:window]
        around = before + after
        if not around or sum(w in have for w in around) >= 0.6 * len(around):
            return True
    return False


_DECLINE = re.compile(
    r"\b(?:(?:i|we) (?:do not|don't|cannot|can't) (?:know|answer|find|determine|say)"
    r"|(?:do(?:es)?|did) not (?:say|mention|specify|state|provide|contain|include|answer|give)"
    r"|(?:does|do|did)n't (?:say|mention|specify|state|provide|contain|include|answer|give)"
    r"|(?:is|are|was|were) not (?:mentioned|specified|stated|provided|given|available|known|clear)"
    r"|no (?:information|mention|answer|details?)"
    r"|not (?:possible|able) to (?:answer|determine|say)|cannot be (?:answered|determined)"
    r"|unknown|not enough information)\b",
    re.IGNORECASE,
)


def declines(text: str) -> bool:
    """Whether a free-text reply says it does not know or that the context does not say (the chain's decline)."""
    return bool(_DECLINE.search(text)) or not text.strip()


def knowledge_base(path: Path | None = None, data: Path = SQUAD) -> KnowledgeBase:
    """The articles ingested into a knowledge base of the default settings (only changes on later calls)."""
    from slmkit.retrieval import KnowledgeBase

    articles, _ = load(data)
    root = path or WORK / "squad"
    folder = write_articles(articles, root / "articles" / Path(data).stem)
    kb = KnowledgeBase(name=re.sub(r"[^A-Za-z0-9._-]", "-", Path(data).stem), path=root / "kb")
    kb.ingest([folder], show_progress=False)
    return kb
