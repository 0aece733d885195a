//! Property tests: no input panics, and integer answers (the synthetic
//! curriculum's form) grade exactly.

use gradus_math::{GradeConfig, Reason, grade};
use proptest::prelude::*;

fn latexish() -> impl Strategy<Value = String> {
    let tok = prop::sample::select(vec![
        "\\frac",
        "{",
        "}",
        "^",
        "_",
        "\\sqrt",
        "[",
        "]",
        "(",
        ")",
        "\\boxed{",
        "\\{",
        "\\}",
        "1",
        "2",
        "0.5",
        "x",
        "e",
        "i",
        "\\pi",
        "+",
        "-",
        "/",
        ",",
        "=",
        "<",
        "\\le",
        "\\pm",
        "\\cdot",
        "!",
        "%",
        "$",
        "\\text{",
        " and ",
        " ",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "&",
        "\\\\",
        "\\infty",
        "\\cup",
        "\\sum_{k=1}^{",
        "\\sin",
        "10^{",
        "é",
        "<think>",
        "</think>",
        "The answer is ",
    ]);
    prop::collection::vec(tok, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn never_panics_on_latexish_input(s in latexish(), g in latexish()) {
        for cfg in [GradeConfig::strict(), GradeConfig::lenient()] {
            let _ = grade(&g, &s, &cfg);
            let _ = grade(&s, &format!("\\boxed{{{s}}}"), &cfg);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_unicode(s in "\\PC{0,200}") {
        let _ = grade("5", &s, &GradeConfig::lenient());
        let _ = grade(&s, "\\boxed{5}", &GradeConfig::strict());
    }

    #[test]
    fn integers_grade_exactly(n in any::<i64>(), d in 1i64..1000) {
        let cfg = GradeConfig::strict();
        let gold = n.to_string();
        let right = format!("So $\\boxed{{{n}}}$.");
        let ok = grade(&gold, &right, &cfg).correct;
        prop_assert!(ok);
        let wrong = n.checked_add(d).unwrap_or(n - d);
        let boxed_wrong = format!("\\boxed{{{wrong}}}");
        let g = grade(&gold, &boxed_wrong, &cfg);
        let rejected = !g.correct && g.reason == Reason::NotEquivalent;
        prop_assert!(rejected);
        let bare = grade(&gold, &n.to_string(), &cfg).reason;
        prop_assert_eq!(bare, Reason::NoAnswer);
    }
}
