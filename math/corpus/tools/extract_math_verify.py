#!/usr/bin/env python3
"""Pull the (gold, prediction) cases out of Math-Verify's test suites, every version.

Usage:
    python3 math/corpus/tools/extract_math_verify.py REPO > raw.jsonl

REPO is a git clone of https://github.com/huggingface/Math-Verify. At every commit
of its history (so every release and the cases later removed), every `tests/*.py` is executed with `pytest`, `math_verify`,
`sympy` and `latex2sympy2_extended` replaced by inert stand-ins, so only the
literal `@pytest.mark.parametrize` tables are recorded (nothing of Math-Verify
runs); direct `compare_strings(gold, pred, ...) == N` asserts are read from the
syntax tree. Each distinct (gold, prediction) pair is printed once, as JSON, with
the versions it appears in, the test it belongs to, and the label Math-Verify's
test expects (`mv_expected`). Those labels are Math-Verify's; the corpus rows are
relabelled by the mathematics in `label_math_verify.py`.

String-extraction tests (a prediction with no gold) are not grading cases and are
skipped.
"""

import ast
import json
import subprocess
import sys
import types


class Inert:
    """Stands for any attribute, call or class of a stubbed module."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __getattr__(self, name):
        return Inert()

    def __call__(self, *args, **kwargs):
        return Inert(*args)

    def __repr__(self):
        return "Inert"


class InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Inert


RECORDED = []


class Mark:
    def parametrize(self, names, values, **kwargs):
        def deco(fn):
            RECORDED.append((fn.__name__, names, list(values)))
            return fn

        return deco

    def __getattr__(self, name):
        return lambda *a, **k: (lambda fn: fn)


def install_stubs():
    pytest = types.ModuleType("pytest")
    pytest.mark = Mark()
    pytest.raises = Inert
    pytest.fixture = lambda *a, **k: (lambda fn: fn) if not (a and callable(a[0])) else a[0]
    sys.modules["pytest"] = pytest
    for name in [
        "math_verify",
        "math_verify.parser",
        "math_verify.grader",
        "math_verify.errors",
        "math_verify.utils",
        "math_verify.metric",
        "math_verify.few_shots",
        "sympy",
        "sympy.parsing",
        "sympy.parsing.latex",
        "latex2sympy2_extended",
        "latex2sympy2_extended.latex2sympy2",
        "tests",
        "tests.test_all",
    ]:
        sys.modules[name] = InertModule(name)


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def describe(repo, ref):
    """A release tag for a tagged commit, else `<last tag>+<commit>`."""
    short = git(repo, "rev-parse", "--short=7", ref).strip()
    try:
        tag = git(repo, "describe", "--tags", "--abbrev=0", ref).strip()
    except subprocess.CalledProcessError:
        return f"pre-release@{short}"
    exact = subprocess.run(["git", "-C", repo, "describe", "--tags", "--exact-match", ref], capture_output=True, text=True)
    return tag if exact.returncode == 0 else f"{tag}+{short}"


def direct_asserts(source):
    """`compare_strings("g", "p", ...) == N` written out in a test body."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq):
            continue
        call, right = node.left, node.comparators[0]
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "compare_strings"):
            continue
        if len(call.args) < 2 or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args[:2]):
            continue
        if not (isinstance(right, ast.Constant) and isinstance(right.value, (int, bool))):
            continue
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if isinstance(k.value, ast.Constant)}
        out.append((call.args[0].value, call.args[1].value, int(right.value), kwargs))
    return out


def cases_of(fn, names, values):
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    if "gold" not in names or "pred" not in names:
        return
    for v in values:
        if not isinstance(v, (tuple, list)) or len(v) != len(names):
            continue
        row = dict(zip(names, v))
        exp = row.get("expected", row.get("result"))
        gold, pred = row["gold"], row["pred"]
        if not (isinstance(gold, str) and isinstance(pred, str) and isinstance(exp, (int, bool))):
            continue
        extra = {k: row[k] for k in names if k not in ("gold", "pred", "expected", "result")}
        yield gold, pred, int(exp), {k: x for k, x in extra.items() if isinstance(x, (int, float, bool, str))}


def main():
    repo = sys.argv[1]
    install_stubs()
    refs = git(repo, "rev-list", "--reverse", "--date-order", "HEAD", "--tags").split()
    found = {}
    for ref in refs:
        version = describe(repo, ref)
        files = [f for f in git(repo, "ls-tree", "-r", "--name-only", ref).split() if f.startswith("tests/") and f.endswith(".py")]
        for path in files:
            source = git(repo, "show", f"{ref}:{path}")
            RECORDED.clear()
            try:
                exec(compile(source, path, "exec"), {"__name__": "extracted"})
            except Exception as e:  # a test module whose top level needs the real library
                print(f"extract: {ref}:{path}: {type(e).__name__}: {e}", file=sys.stderr)
            cases = [(fn, c) for fn, names, values in RECORDED for c in cases_of(fn, names, values)]
            cases += [("(direct assert)", c) for c in direct_asserts(source)]
            for fn, (gold, pred, exp, extra) in cases:
                key = (gold, pred, json.dumps(extra, sort_keys=True))
                e = found.setdefault(key, {"gold": gold, "pred": pred, "extra": extra, "tests": [], "versions": [], "mv_expected": {}})
                t = f"{path}::{fn}"
                if t not in e["tests"]:
                    e["tests"].append(t)
                if version not in e["versions"]:
                    e["versions"].append(version)
                e["mv_expected"][version] = exp
    for e in found.values():
        print(json.dumps(e, ensure_ascii=False))


if __name__ == "__main__":
    main()
