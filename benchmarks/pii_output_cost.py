"""What checking answers for PII costs: `PIIGuard` on the output side, per answer, beside the answer's own time.

The default guards check the question (input) and, since issue 14, the answer (output, findings reported, text
kept); `PIIGuard(output_action="redact")` hides what an answer repeats from the documents. This times the output
check alone on real answers: the assistant's answers recorded by `benchmarks/qa_squad.py` (SQuAD articles) and
answers that repeat contact data, as an answer from an HR or customer document would. Each answer is checked with
``detect`` (what the report needs) and with ``anonymize`` (the redacting policy); the model loads are excluded
(one warm-up call). Reported: p50 / p95 ms per answer and the answer's own p50 seconds, from the same rows.

    .venv/bin/python benchmarks/pii_output_cost.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "benchmarks" / "out" / "qa_squad" / "squad2_dev"
CONTACT_ANSWERS = [
    "Questions about payroll go to Dana Whitfield at dana.whitfield@example.com or +1 415 555 0137 [1].",
    "Report a lost badge to the security desk (security@example.org, extension 4410) within one day [2].",
    "The landlord, Mr. Okafor, can be reached at 020 7946 0958; rent is paid to IBAN GB29 NWBK 6016 1331 9268 19 [1].",
    "Send the signed form to Maria Lopez, 221 Baker Street, London NW1 6XE, before March 3 [1].",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=Path, default=ROWS / "smollm2-135m-instruct__assistant-n40-s0.jsonl")
    parser.add_argument("--repeat", type=int, default=3, help="timings per answer (the median is kept)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from slmkit.guards import PIIGuard

    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    answers = [r["text"] for r in rows if r.get("text")] + CONTACT_ANSWERS
    answer_seconds = statistics.median(r["total_ms"] / 1000 for r in rows if r.get("total_ms"))
    guard = PIIGuard()
    guard.detect("warm-up: Jane Doe, jane@example.com")

    def per_answer(check) -> list[float]:
        times = []
        for text in answers:
            runs = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                check(text)
                runs.append((time.perf_counter() - started) * 1000)
            times.append(statistics.median(runs))
        return times

    detect = per_answer(guard.detect)
    redact = per_answer(lambda text: guard.anonymize(text, action="redact"))
    found = sum(bool(guard.detect(text)) for text in CONTACT_ANSWERS)

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1]

    print(f"{len(answers)} answers ({len(rows)} from {args.rows.name}, {len(CONTACT_ANSWERS)} with contact data)")
    print(
        "| output check | p50 ms | p95 ms | share of the answer's own time (p50 answer: "
        f"{answer_seconds:.2f} s) |\n|---|---|---|---|"
    )
    for name, values in (("detect (report)", detect), ("anonymize (redact)", redact)):
        print(f"| {name} | {p(values, 50):.1f} | {p(values, 95):.1f} | {p(values, 50) / 1000 / answer_seconds:.1%} |")
    print(f"contact answers with findings: {found}/{len(CONTACT_ANSWERS)}")


if __name__ == "__main__":
    main()
