"""How many document passages would the router's privacy rule keep local: every PII type vs personal data only.

A passage "holds PII" when `PIIGuard().detect` finds anything in it; "holds personal data" when it finds one of
`slmkit.guards.pii.PERSONAL_DATA` (what `KeepLocalIfPII` looks for by default). Passages: a seeded sample of SQuAD 2.0
dev paragraphs (Wikipedia) and the example documents, whole.

    .venv/bin/python benchmarks/privacy_share.py --n 150
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "qa" / "squad2_dev.json"


def paragraphs(path: Path) -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("context"), str):
                found.append(node["context"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=150, help="SQuAD paragraphs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from slmkit.guards import PIIGuard
    from slmkit.guards.pii import PERSONAL_DATA
    from slmkit.retrieval.loaders import load_file

    guard = PIIGuard()
    squad = random.Random(args.seed).sample(paragraphs(SQUAD), args.n)
    examples = [d.page_content for p in sorted((ROOT / "examples" / "docs").iterdir()) for d in load_file(p)]
    print("| passages | n | any PII type | personal data | most frequent types |\n|---|---|---|---|---|")
    for name, texts in (("SQuAD paragraphs", squad), ("example documents", examples)):
        kinds: collections.Counter[str] = collections.Counter()
        any_type = personal = 0
        for text in texts:
            types = {f.entity_type for f in guard.detect(text)}
            kinds.update(types)
            any_type += bool(types)
            personal += bool(types & set(PERSONAL_DATA))
        common = ", ".join(f"{k} {v}" for k, v in kinds.most_common(5))
        print(f"| {name} | {len(texts)} | {any_type / len(texts):.2f} | {personal / len(texts):.2f} | {common} |")


if __name__ == "__main__":
    main()
