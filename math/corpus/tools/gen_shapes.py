#!/usr/bin/env python3
"""Writes sources/shapes_generated.jsonl: gold answers from public benchmark
files wrapped in the shapes reasoning models answer in, labelled by
construction (the final committed answer is the gold, or a near miss).

    python3 math/corpus/tools/gen_shapes.py MATH500.jsonl AIME24.jsonl AMC23.jsonl GSM8K.jsonl

MATH500.jsonl: HuggingFaceH4/MATH-500 test (fields unique_id, answer);
AIME24/AMC23/GSM8K: QwenLM/Qwen2.5-Math evaluation/data/{aime24,amc23,gsm8k}/test.jsonl.
Deterministic (seeded), so re-running gives the same rows.
"""
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "sources", "shapes_generated.jsonl")

FILLER = [
    "Let me set up the problem carefully before computing anything.",
    "First, I restate what is given and what is asked.",
    "We can simplify the expression step by step, checking each line.",
    "Substituting the known values gives a smaller equation.",
    "Wait, let me double-check the arithmetic in the previous step.",
    "That matches the constraint, so the computation is consistent.",
    "Alternatively, we could count the complementary cases, but the direct way is shorter.",
    "Now combine the two partial results.",
]


def reasoning(rng, n):
    return " ".join(rng.choice(FILLER) for _ in range(n))


def near_miss(gold, rng, pool):
    """A wrong answer close to the gold: an integer off by one or negated,
    else another problem's gold of the same rough shape."""
    g = gold.strip()
    if re.fullmatch(r"-?\d+", g):
        v = int(g)
        return str(v + rng.choice([-1, 1, 10])) if v != 0 else "1"
    same = [p for p in pool if p != g and (("\\frac" in p) == ("\\frac" in g)) and (("\\sqrt" in p) == ("\\sqrt" in g))]
    return rng.choice(same or [p for p in pool if p != g])


def shapes(gold, wrong, rng):
    """(response, expected, kind) for one gold."""
    G, W = gold, wrong
    out = [
        (f"<think>\n{reasoning(rng, 4)} Maybe it is $\\boxed{{{W}}}$? {reasoning(rng, 2)} No, that was a slip.\n</think>\n\n{reasoning(rng, 2)} The answer is $\\boxed{{{G}}}$.", True, "think|multi_box"),
        (f"<think>\n{reasoning(rng, 3)} I get $\\boxed{{{G}}}$.\n</think>\n\n{reasoning(rng, 1)} So the final answer is $\\boxed{{{W}}}$.", False, "think|multi_box"),
        (f"{reasoning(rng, 3)} Therefore the answer is $\\boxed{{{G}}}$.<|im_end|>", True, "chat_token"),
        (f"{reasoning(rng, 3)} Therefore the answer is $\\boxed{{{W}}}$.<|im_end|>", False, "chat_token"),
        (f"{reasoning(rng, 2)} \\[\\boxed{{{G}}}\\]<|eot_id|>", True, "chat_token"),
        (f"{reasoning(rng, 2)} The final answer is $\\boxed{{{G}}}$. I hope this helps!", True, "trailing_text"),
        (f"{reasoning(rng, 2)} For the first part we get $\\boxed{{{W}}}$; {reasoning(rng, 2)} Hence the final answer is $\\boxed{{{G}}}$.", True, "multi_box"),
        (f"{reasoning(rng, 2)} So the answer is $\\boxed{{{G}}}$. {reasoning(rng, 1)} Hmm, actually I made an error; correcting it, the answer is $\\boxed{{{W}}}$.", False, "multi_box|self_correction"),
        (f"{reasoning(rng, 6)} Continuing, the value of the expression is", False, "truncated"),
        (f"{reasoning(rng, 2)} Final: \\fbox{{{G}}}", True, "fbox"),
        ("\n\n".join(reasoning(rng, 5) for _ in range(rng.randint(3, 6))) + f"\n\n**Final Answer**\n\\[\n\\boxed{{{G}}}\n\\]", True, "long"),
        ("\n\n".join(reasoning(rng, 5) for _ in range(rng.randint(3, 6))) + f"\n\n**Final Answer**\n\\[\n\\boxed{{{W}}}\n\\]", False, "long"),
    ]
    return out


def load(path, key_field, answer_of):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((str(r[key_field]), answer_of(r)))
    return rows


def main():
    m500, aime, amc, gsm = sys.argv[1:5]
    sets = [
        ("HuggingFaceH4/MATH-500 test", load(m500, "unique_id", lambda r: r["answer"]), 120),
        ("QwenLM/Qwen2.5-Math evaluation/data/aime24/test.jsonl id", load(aime, "id", lambda r: str(r["answer"])), 30),
        ("QwenLM/Qwen2.5-Math evaluation/data/amc23/test.jsonl id", load(amc, "id", lambda r: str(r["answer"]).rstrip("0").rstrip(".") if "." in str(r["answer"]) else str(r["answer"])), 20),
        ("QwenLM/Qwen2.5-Math evaluation/data/gsm8k/test.jsonl idx", load(gsm, "idx", lambda r: r["answer"].split("####")[-1].strip().replace(",", "")), 30),
    ]
    rng = random.Random(20261202)
    rows = []
    n = 0
    for name, items, take in sets:
        pool = [a for _, a in items]
        # Shapes need a gold that survives being put in a box verbatim.
        usable = [(k, a) for k, a in items if a and "\n" not in a and a.count("{") == a.count("}")]
        for key, gold in rng.sample(usable, min(take, len(usable))):
            wrong = near_miss(gold, rng, pool)
            picked = rng.sample(shapes(gold, wrong, rng), 4)
            for response, expected, kind in picked:
                n += 1
                rows.append({
                    "id": f"sg-{n}",
                    "gold": gold,
                    "response": response,
                    "expected": expected,
                    "source": f"synthetic: {kind.split('|')[0]} shape, gold from {name} {key}",
                    "kind": kind,
                    **({"note": f"final committed answer is the near miss {wrong!r}"} if not expected and kind != "truncated" else {}),
                    **({"note": "no final answer: the response stops mid-sentence"} if kind == "truncated" else {}),
                })
    with open(OUT, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
