#!/usr/bin/env python3
"""Turn Math-Verify's extracted test cases into corpus rows labelled by the mathematics.

Usage:
    python3 math/corpus/tools/extract_math_verify.py REPO > raw.jsonl
    python3 math/corpus/tools/label_math_verify.py raw.jsonl > math/corpus/sources/math_verify_tests.jsonl

Every case starts from the label Math-Verify's own test expects. Each case was
then read by hand against the corpus conventions (math/corpus/README.md); where
the mathematics says otherwise the label is overridden below, with the reason
kept in the row's `note`. Cases that are not a question with a mathematical
answer (a grader switch on identical text, or a gold that is filler words
between boxes written to exercise Math-Verify's box joining), and cases whose
text a Python escape mangled (`"\\text"` written without `r`, so `\t` became a
tab), are left out, with the reason printed to stderr.
"""

import json
import re
import sys

# (gold, prediction) -> (label by the mathematics, why Math-Verify's test says otherwise)
RELABEL = {
    ("$9$", "Answer $ \n 9 \n $"): (
        True,
        "Math-Verify's test expects 0 (its inline-math pattern does not cross a newline); the answer written is 9",
    ),
    ("$9$", "Answer \\( \n 9 \n \\)"): (
        True,
        "Math-Verify's test expects 0 (its inline-math pattern does not cross a newline); the answer written is 9",
    ),
    ("$\\frac{1}{3}$", "0.3333$"): (
        False,
        "Math-Verify's test passes float_rounding=4; 0.3333 is a rounding of 1/3, not 1/3 (corpus convention: decimals for a non-terminating exact gold must agree to 1e-6)",
    ),
    ("$(\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix})$", "$\\begin{pmatrix}0.33\\\\0.2 \\end{pmatrix}$"): (
        False,
        "Math-Verify's test passes float_rounding=2; 0.33 is a rounding of 1/3, not 1/3",
    ),
    ("$(\\frac{3}{5},\\frac{8}{3}]$", "$(0.6,2.6667]$"): (
        False,
        "Math-Verify's test passes float_rounding=2; 2.6667 is a rounding of 8/3, not 8/3",
    ),
    ("$1 - \\frac{1}{\\mathrm{e}}$", "$1 + \\frac{1}{\\mathrm{e}}$"): (
        False,
        "Math-Verify's test expects 1, but 1 + 1/e and 1 - 1/e differ (1.368 vs 0.632)",
    ),
    ("$x \\in [-2,7]$", "$-2 \\\\le x \\\\le 7$"): (
        True,
        "Math-Verify expects 0 with allow_set_relation_comp=False and 1 with it on; the inequality and the interval are the same set",
    ),
    ("$f(x)$", "$f(y)$"): (
        False,
        "Math-Verify expects 0 with strict=True and 1 with strict=False; an answer in another variable than the problem's is not the answer asked for",
    ),
}

# (gold, prediction) -> why the case is not a labelled grading case
LEAVE_OUT = {
    ("\\boxed{1} and and and or thus but \\boxed{2} and \\boxed{3}", "$\\boxed{2,3}$"): "the gold is filler words between boxes, written to test Math-Verify's box joining",
    ("\\boxed{1} and and and or thus but \\boxed{2} and \\boxed{3}", "$\\boxed{1,2,3}$"): "the gold is filler words between boxes, written to test Math-Verify's box joining",
    ("\\boxed{1} no no no or no no \\boxed{2}", "$\\boxed{1,2}$"): "the gold is filler words between boxes, written to test Math-Verify's box joining",
    ("\\boxed{1} no no no no no \\boxed{2}", "$\\boxed{1,2}$"): "the gold is filler words between boxes, written to test Math-Verify's box joining",
}


def kinds(gold, pred):
    text = gold + " " + pred
    k = []
    checks = [
        ("long_response", len(pred) > 300 or len(gold) > 300),
        ("matrix", re.search(r"\\begin\{[pbv]?matrix\}|\\begin\{array\}", text)),
        ("interval", re.search(r"[\[(]\s*-?[\w\\{}.+]+\s*,\s*-?[\w\\{}.+]+\s*[\])]", text) and re.search(r"\\cup|\\infty|\[", text)),
        ("inequality", re.search(r"\\le|\\ge|<|>|\\neq|!=|\\lt|\\gt", text)),
        ("percent", re.search(r"%|percent|pct", text)),
        ("set", re.search(r"\\\{|\{\s*-?\d[^{}]*,", text)),
        ("tuple", re.search(r"\(\s*-?[\w\\{}]+\s*[,;]\s*-?[\w\\{}]+", text)),
        ("multi_box", len(re.findall(r"\\boxed", pred)) > 1 or len(re.findall(r"\\boxed", gold)) > 1),
        ("text_in_box", re.search(r"\\boxed\{[^}]*\\text", text)),
        ("units", re.search(r"\\text\{?\s*(cm|m|meters|miles|yuan)|\\mbox|m²|€|\\\$|\$\d", text)),
        ("thousands_sep", re.search(r"\d,\d{3}|\d\{,\}\d|\d,\\!\s?\d|\d \d{3}\b", text)),
        ("decimal_comma", re.search(r"\b\d+,\d{1,2}\b(?!\d)", text)),
        ("degrees", "circ" in text),
        ("chat_template", "<|im_start|>" in text or "<think>" in text),
        ("equation", re.search(r"[a-zA-Z)}]\s*=", text)),
        ("fraction", "frac" in text or "/" in text),
        ("decimal", re.search(r"\d\.\d", text)),
        ("multiple_choice", re.search(r"\\text\{\(?[A-E]\)?\}|^\$?[A-E]\$?$", gold)),
        ("words", re.search(r"\\text\{[A-Za-z ]{3,}\}", text)),
    ]
    for name, hit in checks:
        if hit:
            k.append(name)
    return "|".join(k) or "expression"


def span(versions):
    """Which releases (exact tags) hold the case; else the commits that did."""
    tags = sorted({v for v in versions if re.fullmatch(r"[\d.]+", v)}, key=lambda t: [int(x) for x in t.split(".")])
    if tags:
        return f"releases {tags[0]}" + (f" to {tags[-1]}" if len(tags) > 1 else "")
    return f"commits {versions[0]} to {versions[-1]}, never released"


def main():
    merged = {}
    for line in open(sys.argv[1], encoding="utf-8"):
        e = json.loads(line)
        key = (e["gold"], e["pred"])
        m = merged.setdefault(key, {"tests": [], "versions": [], "labels": {}, "extras": []})
        for t in e["tests"]:
            if t not in m["tests"]:
                m["tests"].append(t)
        for v in e["versions"]:
            if v not in m["versions"]:
                m["versions"].append(v)
        last = list(e["mv_expected"].values())[-1]
        m["labels"][json.dumps(e["extra"], sort_keys=True)] = last
        if e["extra"]:
            m["extras"].append(e["extra"])
    n = 0
    for (gold, pred), m in merged.items():
        if any(ord(c) < 32 and c not in "\n\t" for c in gold + pred) or "\t" in gold + pred:
            print(f"left out (a Python escape mangled the text): {gold!r} / {pred!r}", file=sys.stderr)
            continue
        if (gold, pred) in LEAVE_OUT:
            print(f"left out ({LEAVE_OUT[(gold, pred)]}): {gold!r} / {pred!r}", file=sys.stderr)
            continue
        labels = set(m["labels"].values())
        note = None
        if (gold, pred) in RELABEL:
            expected, note = RELABEL[(gold, pred)]
        elif len(labels) == 1:
            expected = labels.pop() == 1
        else:
            sys.exit(f"label_math_verify: conflicting Math-Verify labels for {gold!r} / {pred!r}: {m['labels']} (add a RELABEL entry)")
        if note is None and m["extras"]:
            note = "Math-Verify's test runs with " + ", ".join(
                ", ".join(f"{k}={v}" for k, v in x.items()) for x in m["extras"]
            ) + "; the label holds by the mathematics"
        n += 1
        row = {
            "id": f"mv-{n}",
            "gold": gold,
            "response": pred,
            "expected": expected,
            "source": f"huggingface/Math-Verify {' '.join(m['tests'])} ({span(m['versions'])})",
            "kind": kinds(gold, pred),
        }
        if note:
            row["note"] = note
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
