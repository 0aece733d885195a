//! The checker's strict decoder of the program's replies (`plain_loads` in
//! harness.py) against CPython's marshal: every plain value round-trips
//! with its exact types; code objects, other types and mangled bytes are
//! refused with ValueError/TypeError, never decoded into anything but
//! plain builtins.

use std::process::Command;

const SCRIPT: &str = r#"
import marshal, math, random, sys
sys.path.insert(0, sys.argv[1])
import harness

PLAIN = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)

def same(a, b):
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is complex:
        return same(a.real, b.real) and same(a.imag, b.imag)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b

def only_plain(v, depth=0):
    assert type(v) in PLAIN, type(v)
    if type(v) in (list, tuple, set, frozenset):
        for x in v:
            only_plain(x, depth + 1)
    if type(v) is dict:
        for k, x in v.items():
            only_plain(k, depth + 1)
            only_plain(x, depth + 1)

shared = "shared-string"
values = [
    None, True, False, 0, 1, -1, 2**31 - 1, -2**31, 2**31, -2**63, 10**100, -(10**100), 2**15, 2**30,
    0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 1e-310, complex(1, -2), complex(0.0, float("inf")),
    "", "a", "x" * 300, "héllo", "日本語", "\ud800", "emoji \U0001F600", b"", b"\x00\xff" * 200, bytearray(b"ab"),
    (), (1,), tuple(range(300)), [], [1, [2, [3, [4]]]], {}, {"a": 1, 2: [3], (4, 5): {"b": None}},
    set(), {1, 2, 3}, frozenset(), frozenset({"a", (1, 2)}), [shared, shared, (shared,), {shared: shared}],
    {"v": [[1, 2], [3, 4]], "exc": "NameError", "msg": "m"}, [[0.5] * 3] * 3,
]
for v in values:
    for version in range(2, marshal.version + 1):
        got = harness.plain_loads(marshal.dumps(v, version))
        want = bytes(v) if type(v) is bytearray else v
        assert same(got, want), (v, version, got)

refused = 0
for bad in [(lambda: 1).__code__, Ellipsis, StopIteration, slice(1, 2) if marshal.version >= 5 else ...]:
    try:
        harness.plain_loads(marshal.dumps({"v": bad}))
    except ValueError:
        refused += 1
assert refused == 4, refused
for bad in [b"", b"{", b"i\x01", b"N N", b"r\x00\x00\x00\x00", b"\xf2\x00\x00\x00\x00", b"[\x01\x00\x00\x00r\x00\x00\x00\x00", b"(" + b"\xff" * 4]:
    try:
        harness.plain_loads(bad)
        raise SystemExit("decoded %r" % bad)
    except (ValueError, TypeError):
        pass

# Mangled frames: decoded into plain values or refused, nothing else.
rng = random.Random(19)
seeds = [marshal.dumps(v) for v in values if type(v) is not bytearray]
decoded = rejected = 0
for _ in range(20000):
    b = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(3)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            del b[rng.randrange(len(b)):]
    try:
        only_plain(harness.plain_loads(bytes(b)))
        decoded += 1
    except (ValueError, TypeError, RecursionError):
        rejected += 1
print("ok", decoded, rejected)
"#;

#[test]
fn the_checkers_decoder_takes_plain_values_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("harness.py"),
        include_str!("../src/harness.py"),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir.path())
        .output()
        .expect("python3 is required (the sandbox runs Python programs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok "),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
}
