#!/usr/bin/env python3
"""The Math-Verify side of `gradus bench math`.

Grades the labelled cases in a JSONL file with HF Math-Verify (its `parse` of
the gold answer and of the response, then `verify`), in this one process on
one core, for at least `--seconds` of wall time (whole passes), and prints one
JSON line: version, cases, passes, seconds (wall), cpu_seconds, cases_per_s, agree,
disagreements
(indices of rows whose verdict differs from the label, first pass).

Gold answers without math delimiters are wrapped in `$...$` before `parse`, as
Math-Verify's README does for gold answers (without them its LaTeX extractor
finds nothing in a bare `\\frac{\\pi}{2}`); responses are passed as they are.

Exit status 3 means math-verify is not importable; the Rust side then prints
the pip command and still reports gradus's figures.
"""
import argparse
import json
import os
import sys
import time

# This file is named like the package it benchmarks: keep its own directory
# off the import path so `import math_verify` finds the installed package.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]


def load(path):
    cases = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            gold = row.get("gold", row.get("answer"))
            pred = next((row[k] for k in ("pred", "response", "completion", "output") if k in row), None)
            if gold is None or pred is None or not isinstance(row.get("expected"), bool):
                continue
            cases.append((gold_for_mv(str(gold)), str(pred), row["expected"]))
    return cases


def gold_for_mv(gold):
    """Math-Verify expects delimited gold answers; bare ones get `$...$`."""
    if any(d in gold for d in ("$", "\\boxed", "\\(", "\\[")):
        return gold
    return f"${gold}$"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    try:
        import math_verify
        from math_verify import parse, verify
    except ImportError as e:
        print(f"math-verify is not importable: {e}", file=sys.stderr)
        sys.exit(3)
    version = getattr(math_verify, "__version__", None)
    if version is None:
        from importlib.metadata import version as pkg_version

        version = pkg_version("math-verify")
    cases = load(args.cases)

    def one_pass():
        verdicts = []
        for gold, pred, _ in cases:
            try:
                ok = bool(verify(parse(gold), parse(pred)))
            except Exception:  # a crash is a "false", as in a reward function
                ok = False
            verdicts.append(ok)
        return verdicts

    start, cpu_start = time.perf_counter(), time.process_time()
    verdicts = one_pass()
    passes = 1
    while time.perf_counter() - start < args.seconds:
        one_pass()
        passes += 1
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    disagreements = [i for i, (v, c) in enumerate(zip(verdicts, cases)) if v != c[2]]
    print(
        json.dumps(
            {
                "version": version,
                "cases": len(cases),
                "passes": passes,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "cases_per_s": len(cases) * passes / seconds,
                "agree": len(cases) - len(disagreements),
                "disagreements": disagreements,
            }
        )
    )


if __name__ == "__main__":
    main()
