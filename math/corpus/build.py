#!/usr/bin/env python3
"""Builds the grader corpus's two splits from its sources.

Reads every `sources/*.jsonl` (one file per origin, rows as README.md
describes), checks each row, drops rows already in the development set
(`../../../shared/data/math_dev.jsonl`, which rules were tuned on) and
repeated (gold, response) pairs, and writes `dev.jsonl` and `heldout.jsonl`.
A row's split is a function of its id alone (SHA-256 of the id, one in five
held out), so adding rows never moves an old one between splits.

Usage: python3 math/corpus/build.py [--check]   (--check: fail if the
committed splits differ from what the sources give)
"""
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED = ("id", "gold", "response", "expected", "source", "kind")
DEV_SET = os.path.join(HERE, "..", "..", "..", "shared", "data", "math_dev.jsonl")


def key(gold, response):
    return (gold.strip(), response.strip())


def split_of(row_id):
    return "heldout" if hashlib.sha256(row_id.encode()).digest()[0] % 5 == 0 else "dev"


def main():
    check = "--check" in sys.argv[1:]
    tuned = set()
    if os.path.exists(DEV_SET):
        with open(DEV_SET, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    tuned.add(key(r["gold"], r.get("pred", r.get("response", ""))))
    seen, ids, out, problems = set(), set(), {"dev": [], "heldout": []}, []
    dropped = {"in_dev_set": 0, "repeated": 0}
    src_dir = os.path.join(HERE, "sources")
    for name in sorted(os.listdir(src_dir)):
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(src_dir, name)
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"sources/{name}:{n}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    problems.append(f"{where}: invalid JSON: {e}")
                    continue
                missing = [k for k in REQUIRED if k not in row]
                if missing:
                    problems.append(f"{where}: missing {', '.join(missing)}")
                    continue
                if not isinstance(row["expected"], bool):
                    problems.append(f"{where}: expected must be true or false")
                    continue
                if not all(isinstance(row[k], str) and row[k] for k in ("id", "gold", "source", "kind")) \
                        or not isinstance(row["response"], str):
                    problems.append(f"{where}: id, gold, source, kind must be non-empty strings, response a string")
                    continue
                if row["id"] in ids:
                    problems.append(f"{where}: id {row['id']} repeated")
                    continue
                ids.add(row["id"])
                k = key(row["gold"], row["response"])
                if k in tuned:
                    dropped["in_dev_set"] += 1
                    continue
                if k in seen:
                    dropped["repeated"] += 1
                    continue
                seen.add(k)
                row = {f: row[f] for f in ("id", "gold", "response", "expected", "source", "kind", "note") if f in row}
                out[split_of(row["id"])].append(row)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    stale = []
    for split, rows in out.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        path = os.path.join(HERE, f"{split}.jsonl")
        if check:
            old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
            if old != text:
                stale.append(f"{split}.jsonl")
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        t = sum(r["expected"] for r in rows)
        print(f"{split}: {len(rows)} rows ({t} correct, {len(rows) - t} wrong)")
    print(f"dropped: {dropped['in_dev_set']} already in math_dev.jsonl, {dropped['repeated']} repeated")
    if stale:
        print(f"stale: {', '.join(stale)}; run python3 math/corpus/build.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
