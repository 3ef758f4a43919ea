"""Development data for the grounding guard: four data sets of (context, question, answer, label, hallucinated spans).

    ragtruth_summary, ragtruth_data2txt   RAGTruth responses of six LLMs with annotated hallucination spans
    halueval_qa                            HaluEval QA: one right and one hallucinated one-line answer per question
    squad_qa                               made here from SQuAD 2.0 (below): QA over retrieved passages

``squad_qa`` resembles question answering over retrieved passages by an LLM. For a seeded sample of answerable
questions: the context is the gold paragraph and two other paragraphs of the same article (shuffled, as a list of
passages or one "Passage 1: ..." string); the answer is built from the sentence of the gold paragraph that holds the
gold answer (as it is, with a lead-in such as "Based on the passages,", with a neighbouring sentence, or as "The
answer is X."). Four in ten answers are then made wrong, in one of these ways (the changed sentence is the
hallucinated span):

    other_answer      the gold answer replaced by the answer of another question on the same paragraph
    number            a number (or a year) replaced by another one the context does not hold
    name              a capitalised name replaced by a name from another article
    added_sentence    a sentence of a paragraph of the same article that is not in the context, appended
    added_clause      the same as a clause: "..., and <clause>"

Articles are the groups (no article in two folds); every item has ``set``, ``source`` (group id), ``context``,
``question``, ``answer``, ``label`` (1 = hallucinated), ``spans`` (character spans of the answer) and ``kind``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("ragtruth_summary", "ragtruth_data2txt", "halueval_qa", "squad_qa")

_LEADS = ("", "", "Based on the passages, ", "According to the passage, ", "The passage states that ")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_COMMON = frozenset(
    str.split(
        "the a an in on at it its this that these those there after before during when while as for by from "
        "with although however since some many most one two"
    )
)


def load(name: str, n_squad: int = 900, seed: int = 0) -> list[dict]:
    if name == "squad_qa":
        return squad_qa(n_squad, seed)
    rows = [json.loads(line) for line in (DATA / "hallucination" / f"{name}.jsonl").read_text().splitlines() if line]
    items = []
    if name == "halueval_qa":
        for i, r in enumerate(rows):
            for answer, label in ((r["right_answer"], 0), (r["hallucinated_answer"], 1)):
                items.append(
                    _item(name, f"halu{i}", r["knowledge"], r["question"], answer, label, [(0, len(answer))] * label)
                )
        return items
    for r in rows:
        for resp in r["responses"]:
            spans = [(lab["start"], lab["end"]) for lab in resp["labels"]]
            items.append(
                _item(name, f"{name}{r['source_id']}", r["source"], None, resp["response"], int(bool(spans)), spans)
            )
    return items


def _item(name: str, source: str, context, question, answer: str, label: int, spans, kind: str = "") -> dict:
    return {
        "set": name,
        "source": source,
        "context": context,
        "question": question,
        "answer": answer,
        "label": label,
        "spans": list(spans),
        "kind": kind or ("hallucinated" if label else "right"),
    }


def _sentences(paragraph: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE.finditer(paragraph):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(paragraph)))
    return spans


def squad_qa(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    data = json.loads((DATA / "qa" / "squad2_dev.json").read_text())["data"]
    all_names = sorted(
        {m.group(0) for a in data for p in a["paragraphs"] for m in _NAME.finditer(p["context"]) if " " in m.group(0)}
    )
    candidates = []
    for a, article in enumerate(data):
        paragraphs = [p["context"] for p in article["paragraphs"]]
        for p, para in enumerate(article["paragraphs"]):
            answerable = [q for q in para["qas"] if not q["is_impossible"] and q["answers"]]
            for q in answerable:
                candidates.append((a, p, q, answerable, paragraphs))
    rng.shuffle(candidates)
    items: list[dict] = []
    for a, p, q, answerable, paragraphs in candidates:
        if len(items) >= n:
            break
        item = _squad_item(rng, data[a]["title"], a, p, q, answerable, paragraphs, all_names)
        if item is not None:
            items.append(item)
    return items


def _squad_item(rng, title, a, p, q, answerable, paragraphs, all_names) -> dict | None:
    para = paragraphs[p]
    gold = q["answers"][0]
    start, text = gold["answer_start"], gold["text"]
    sentence_spans = _sentences(para)
    k = next((i for i, (b, e) in enumerate(sentence_spans) if b <= start < e), None)
    if k is None:
        return None
    b, e = sentence_spans[k]
    sentence = para[b:e].strip()
    others = [i for i in range(len(paragraphs)) if i != p]
    shown = rng.sample(others, min(2, len(others)))
    hidden = [i for i in others if i not in shown]
    passages = [para] + [paragraphs[i] for i in shown]
    rng.shuffle(passages)
    context: object = passages
    if rng.random() < 0.5:
        context = "\n\n".join(f"Passage {i + 1}: {t}" for i, t in enumerate(passages))
    style = rng.choice(("sentence", "sentence", "two", "short"))
    if style == "short":
        body = f"The answer is {text.rstrip('.')}."
    elif style == "two" and k + 1 < len(sentence_spans):
        nb, ne = sentence_spans[k + 1]
        body = sentence + " " + para[nb:ne].strip()
    else:
        body = sentence
    lead = rng.choice(_LEADS)
    if lead and style != "short":
        first = body.split(" ", 1)[0]
        body = lead + (body[0].lower() + body[1:] if first.lower() in _COMMON else body)
    kind = "right"
    if rng.random() < 0.4:
        kind = rng.choice(("other_answer", "number", "name", "added_sentence", "added_clause"))
    full_text = " ".join(paragraphs[i] for i in (p, *shown))
    answer, span = _corrupt(rng, kind, body, text, q, answerable, full_text, [paragraphs[i] for i in hidden], all_names)
    if answer is None:
        return None
    label = int(kind != "right")
    return _item("squad_qa", f"squad{a}", context, q["question"], answer, label, [span] if label else [], kind)


def _corrupt(rng, kind, body, gold, q, answerable, context_text, hidden, all_names):
    """The answer after the change, and the changed span (the whole sentence it is in)."""
    if kind == "right":
        return body, None
    if kind == "other_answer":
        wrong = [
            x["answers"][0]["text"]
            for x in answerable
            if x is not q
            and x["answers"][0]["text"].lower() not in gold.lower()
            and gold.lower() not in x["answers"][0]["text"].lower()
        ]
        if not wrong or gold not in body:
            return None, None
        new = rng.choice(wrong)
        i = body.index(gold)
        return body[:i] + new + body[i + len(gold) :], _sentence_span(body, i)
    if kind == "number":
        found = [m for m in _NUMBER.finditer(body) if m.group(0).strip(",.")]
        if not found:
            return None, None
        m = rng.choice(found)
        token = m.group(0).rstrip(",.")
        digits = token.replace(",", "")
        try:
            value = int(float(digits))
        except ValueError:
            return None, None
        for _ in range(20):
            if 1000 <= value <= 2100:
                new_value = value + rng.choice((-1, 1)) * rng.randint(2, 60)
            else:
                new_value = max(0, int(value * rng.uniform(0.3, 3.0)) + rng.randint(1, 9))
            new = f"{new_value:,}" if "," in token else str(new_value)
            if new not in context_text and new_value != value:
                break
        else:
            return None, None
        return body[: m.start()] + new + body[m.start() + len(token) :], _sentence_span(body, m.start())
    if kind == "name":
        found = [m for m in _NAME.finditer(body) if m.start() > 0 and m.group(0) not in ("The", "Based", "According")]
        if not found:
            return None, None
        m = rng.choice(found)
        for _ in range(20):
            new = rng.choice(all_names)
            if new not in context_text:
                break
        else:
            return None, None
        return body[: m.start()] + new + body[m.end() :], _sentence_span(body, m.start())
    pool = [s for h in hidden for s in _SENTENCE.split(h) if 40 <= len(s) <= 220]
    if not pool:
        return None, None
    extra = rng.choice(pool).strip()
    if kind == "added_sentence":
        return body + " " + extra, (len(body) + 1, len(body) + 1 + len(extra))
    clause = extra.rstrip(".")
    if clause.split(" ", 1)[0].lower() in _COMMON:
        clause = clause[0].lower() + clause[1:]
    start = len(body.rstrip(".")) + 2
    return body.rstrip(".") + ", and " + clause + ".", (start, start + len(clause) + 5)


def _sentence_span(body: str, position: int) -> tuple[int, int]:
    for b, e in _sentences(body):
        if b <= position < e:
            return b, e
    return 0, len(body)


if __name__ == "__main__":
    import collections

    items = squad_qa(900)
    print(len(items), collections.Counter(i["kind"] for i in items))
    for item in random.Random(1).sample(items, 8):
        print(item["kind"], "|", item["question"], "|", item["answer"])
