//! Finding the answer in a model response (and in a gold solution).
//!
//! Strict extraction reads only the last `\boxed{...}` / `\fbox{...}` outside
//! `<think>...</think>`. Boxes separated only by punctuation, "and"/"or",
//! spacing or a `y_2 =` label are one multi-part answer, so `\boxed{1},
//! \boxed{2}, \boxed{3}` is the list `1, 2, 3` and hedging across boxes is a
//! list that does not match a single gold value. Lenient fallbacks
//! ([`crate::Fallbacks`]) add answer phrases, the last math span, the whole
//! response and the last number, in that order; each is a candidate and the
//! first one that parses wins.
//!
//! Everything here is a linear scan over bytes: no regexes, no backtracking.

use crate::config::Fallbacks;

/// Where an extracted answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Boxed,
    AnswerPhrase,
    LastLatex,
    WholeResponse,
    LastNumber,
}

/// Tokens that end the model's turn (or start another). Text after the
/// first one that follows some content is a turn the model was never asked
/// for (a hallucinated user turn and its answer), not this response.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|start_header_id|>",
    "<|end|>",
    "<|user|>",
    "<end_of_turn>",
    "<start_of_turn>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "<\u{ff5c}User\u{ff5c}>",
    "</s>",
];

/// The response up to the first end-of-turn token that follows content;
/// tokens before any content (a template's `<|im_start|>assistant`) stay.
pub fn cut_turn(s: &str) -> &str {
    let mut from = 0;
    // End of the last end-of-turn token seen before any content.
    let mut seg = 0;
    while let Some(off) = s[from..].find('<') {
        let at = from + off;
        if let Some(tok) = END_OF_TURN.iter().find(|t| s[at..].starts_with(**t)) {
            // `<|im_start|>assistant` before any content: a role name is not content.
            let piece = s[seg..at].trim();
            let piece = ["assistant", "user", "system"]
                .iter()
                .find_map(|r| piece.strip_prefix(r))
                .unwrap_or(piece);
            if !piece.trim().is_empty() {
                return &s[..at];
            }
            from = at + tok.len();
            seg = from;
        } else {
            from = at + 1;
        }
    }
    s
}

/// The part of a response that answers: this turn only ([`cut_turn`]), after
/// the last `</think>`.
pub fn answer_text(s: &str) -> &str {
    strip_think(cut_turn(s))
}

/// The part of a response after reasoning: after the last `</think>`. A
/// response that opens `<think>` and never closes it has no answer yet.
pub fn strip_think(s: &str) -> &str {
    if let Some(i) = s.rfind("</think>") {
        &s[i + "</think>".len()..]
    } else if s.contains("<think>") {
        ""
    } else {
        s
    }
}

/// One `\boxed` occurrence: byte span of the whole command and of its content.
#[derive(Clone, Copy, Debug)]
struct BoxSpan {
    start: usize,
    end: usize,
    inner: (usize, usize),
}

/// Byte index of the `}` matching the `{` at byte `open` of `s`.
pub(crate) fn brace_end(s: &str, open: usize) -> Option<usize> {
    match_brace(s.as_bytes(), open)
}

/// Index of the `}` matching the `{` at `open`, honouring `\{` and `\}`.
fn match_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn boxes(s: &str) -> Vec<BoxSpan> {
    let b = s.as_bytes();
    let mut out: Vec<BoxSpan> = Vec::new();
    let mut i = 0;
    while let Some(off) = s[i..].find('\\') {
        let start = i + off;
        i = start + 1;
        let name_len = if s[start..].starts_with("\\boxed") {
            6
        } else if s[start..].starts_with("\\fbox") {
            5
        } else {
            continue;
        };
        let mut j = start + name_len;
        if j < b.len() && b[j].is_ascii_alphabetic() {
            continue;
        }
        if out.last().is_some_and(|prev| start < prev.end) {
            continue; // nested inside the previous box
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == b'{' {
            let Some(close) = match_brace(b, j) else {
                continue;
            };
            out.push(BoxSpan {
                start,
                end: close + 1,
                inner: (j + 1, close),
            });
            i = close + 1;
        } else if j > start + name_len {
            // `\boxed 5`: the next run of non-space characters.
            let from = j;
            while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'$' {
                j += 1;
            }
            if j > from {
                out.push(BoxSpan {
                    start,
                    end: j,
                    inner: (from, j),
                });
                i = j;
            }
        }
    }
    out
}

/// Separators allowed between the boxes of one multi-part answer.
const JOINERS: &[&str] = &[
    "\\text{and}",
    "\\text{ and }",
    "\\text{or}",
    "\\text{ or }",
    "\\qquad",
    "\\quad",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "\\,",
    "\\;",
    "\\\\",
    "$",
    ",",
    ";",
    ".",
    "&",
    "~",
    "and",
    "or",
];

/// Whether the text between two boxes only separates parts of one answer:
/// separators, spacing, and at most a short label like `y_2 =`.
/// Allocation-free, since it runs once per adjacent pair of boxes.
fn is_joiner(gap: &str) -> bool {
    if gap.len() > 60 {
        return false;
    }
    let mut g = gap;
    let mut labels = 0;
    loop {
        g = g.trim_start();
        if g.is_empty() {
            return true;
        }
        if let Some(p) = JOINERS.iter().find(|p| g.starts_with(*p)) {
            g = &g[p.len()..];
            continue;
        }
        // `y_2 =`: a short name, then `=`.
        let name = g
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || b"_{}".contains(c))
            .count();
        let rest = g[name..].trim_start();
        if labels == 0
            && (1..=8).contains(&name)
            && g.as_bytes()[0].is_ascii_alphabetic()
            && rest.starts_with('=')
        {
            labels += 1;
            g = &rest[1..];
            continue;
        }
        return false;
    }
}

/// Most boxes joined into one answer; more would exceed any sane item cap.
const MAX_JOINED: usize = 1024;

/// The content of the last box, joined with the boxes just before it when
/// only separators lie between them.
pub fn last_boxed(s: &str) -> Option<String> {
    joined_run(s, &boxes(s))
}

/// [`last_boxed`] on boxes already found.
fn joined_run(s: &str, spans: &[BoxSpan]) -> Option<String> {
    let last = spans.len().checked_sub(1)?;
    let mut first = last;
    // Past MAX_JOINED parts the answer is unparseable anyway (too many items).
    while first > 0
        && last - first < MAX_JOINED
        && is_joiner(&s[spans[first - 1].end..spans[first].start])
    {
        first -= 1;
    }
    let parts: Vec<&str> = spans[first..=last]
        .iter()
        .map(|b| s[b.inner.0..b.inner.1].trim())
        .collect();
    Some(parts.join(", "))
}

/// The last `k` boxes of a response's answer text, joined as one list: the
/// parts of a `k`-part gold answer boxed one by one with words between
/// ("$\\boxed{7}$ goats and $\\boxed{4}$ helicopters"). None with fewer boxes.
pub fn last_boxes(response: &str, k: usize) -> Option<String> {
    let text = answer_text(response);
    let spans = boxes(text);
    if k < 2 || spans.len() < k || k > MAX_JOINED {
        return None;
    }
    let parts: Vec<&str> = spans[spans.len() - k..]
        .iter()
        .map(|b| text[b.inner.0..b.inner.1].trim())
        .collect();
    Some(parts.join(", "))
}

/// Phrases that replace an answer already given.
const RETRACTIONS: &[&str] = &[
    "should be",
    "should have been",
    "is actually",
    "correct answer is",
    "answer is actually",
];

/// After the last box, a retraction with a new value ("\boxed{3159}. Hmm,
/// I double counted, so it should be $3158$."): that value, as written.
pub fn retraction(response: &str) -> Option<String> {
    let text = answer_text(response);
    let end = boxes(text).last()?.end;
    let tail = &text[end..];
    let lower = tail.to_ascii_lowercase();
    let (at, cue) = RETRACTIONS
        .iter()
        .filter_map(|c| lower.rfind(c).map(|i| (i, c.len())))
        .max()?;
    let after = drop_sign_off(&tail[at + cue..]);
    // The new value follows the cue at once ("should be $3158$"), not
    // words ("this should be right since $2+3=5$").
    let lead = after.trim_start_matches([' ', ':', ',']);
    if !lead.starts_with(|c: char| c.is_ascii_digit() || "$\\(-".contains(c)) {
        return None;
    }
    let after = &after[..sentence_end(after)];
    latest_first(last_math_span(after), last_number(after))
        .into_iter()
        .next()
        .map(|(v, _)| v)
}

/// The last math span and the last number, whichever ends later first: that
/// is the text's last word on its answer.
fn latest_first(
    math: Option<(&str, usize)>,
    number: Option<(String, usize)>,
) -> Vec<(String, Source)> {
    let number_first = match (&math, &number) {
        (Some((_, m_end)), Some((_, n_end))) => n_end > m_end,
        _ => true,
    };
    let math = math.map(|(m, _)| (m.to_string(), Source::LastLatex));
    let number = number.map(|(n, _)| (n, Source::LastNumber));
    if number_first {
        number.into_iter().chain(math).collect()
    } else {
        math.into_iter().chain(number).collect()
    }
}

/// The answer candidates in a response, best first.
pub fn candidates(response: &str, fb: &Fallbacks) -> Vec<(String, Source)> {
    let text = answer_text(response);
    let mut out = Vec::new();
    let spans = boxes(text);
    if let Some(b) = joined_run(text, &spans) {
        // "... \boxed{255} So he has $10,455. Final Answer: The final answer
        // is $10,455$.": a final-answer statement after the last box is the
        // later commitment (evaluation only; training reads the box).
        if fb.answer_phrase
            && let Some(end) = spans.last().map(|b| b.end)
            && text[end..].to_ascii_lowercase().contains("final answer")
            && let Some(a) = answer_phrase(drop_sign_off(&text[end..]))
        {
            out.push((a, Source::AnswerPhrase));
        }
        out.push((b, Source::Boxed));
        return out;
    }
    let text = drop_sign_off(text);
    // `<answer>...</answer>` (R1-Zero-style prompts): the tagged text is the answer.
    let text = match answer_tag(text) {
        Some(inner) if fb.answer_phrase => inner,
        _ => text,
    };
    if fb.answer_phrase
        && let Some(a) = answer_phrase(text)
    {
        // "Final Answer: Jane started growing Sphere 3 hours ago": prose with a number.
        let words = a
            .split_whitespace()
            .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_alphabetic()))
            .count();
        if words >= 2
            && let Some((n, _)) = last_number(&a)
        {
            out.push((n, Source::AnswerPhrase));
        }
        out.push((a, Source::AnswerPhrase));
    }
    // A response cut off inside a display formula never reached its answer:
    // its earlier math is working, not the result.
    let cut_off = [("\\[", "\\]"), ("\\(", "\\)")]
        .iter()
        .any(|(open, close)| text.rfind(open).is_some_and(|o| !text[o..].contains(close)));
    // The whole response is the answer when it is short; when it also
    // writes math (`So $m = 25$ ... \[m + n = 33\]`), its math comes first.
    let whole =
        (fb.whole_response && !cut_off && text.trim().len() <= 200 && !text.trim().is_empty())
            .then(|| (text.trim().to_string(), Source::WholeResponse));
    let has_math = text.contains('$') || text.contains("\\(") || text.contains("\\[");
    let (whole_early, whole_late) = if has_math {
        (None, whole)
    } else {
        (whole, None)
    };
    out.extend(whole_early);
    let math = if fb.last_latex && !cut_off {
        last_math_span(text)
    } else {
        None
    };
    let number = if fb.last_number && !cut_off {
        last_number(text)
    } else {
        None
    };
    out.extend(latest_first(math, number));
    out.extend(whole_late);
    // Nothing after `</think>` (the summary cut off by the length limit): in
    // evaluation, the last box the reasoning reached.
    if out.is_empty() && fb.answer_phrase {
        let turn = cut_turn(response);
        if let Some(end) = turn.rfind("</think>")
            && let Some(b) = last_boxed(&turn[..end])
        {
            out.push((b, Source::AnswerPhrase));
        }
    }
    out
}

/// The text inside the last `<answer>...</answer>`, when it is not empty.
fn answer_tag(text: &str) -> Option<&str> {
    let open = text.rfind("<answer>")?;
    let inner = &text[open + "<answer>".len()..];
    let inner = inner
        .find("</answer>")
        .map_or(inner, |e| &inner[..e])
        .trim();
    (!inner.is_empty()).then_some(inner)
}

/// Closing formulas some prompts teach ("Final Answer: The final answer is
/// 5. I hope it is correct."): not part of the answer's clause.
const SIGN_OFFS: &[&str] = &[
    "i hope it is correct",
    "i hope this is correct",
    "i hope it helps",
    "i hope this helps",
];

/// The text without trailing sign-off sentences.
fn drop_sign_off(text: &str) -> &str {
    let mut t = text.trim_end();
    loop {
        let body = t.trim_end_matches(['.', '!']).trim_end();
        let lower_tail = body
            .get(body.len().saturating_sub(24)..)
            .unwrap_or(body)
            .to_ascii_lowercase();
        match SIGN_OFFS.iter().find(|p| lower_tail.ends_with(*p)) {
            Some(p) => t = body[..body.len() - p.len()].trim_end(),
            None => return t,
        }
    }
}

/// Gold answer candidates: the (joined) last box of a full solution; else the
/// whole text, then its answer phrase and its last math span.
pub fn gold_candidates(gold: &str) -> Vec<(String, Source)> {
    if let Some(b) = last_boxed(gold) {
        return vec![(b, Source::Boxed)];
    }
    let mut out = vec![(gold.trim().to_string(), Source::WholeResponse)];
    if let Some(a) = answer_phrase(gold) {
        out.push((a, Source::AnswerPhrase));
    }
    if let Some((m, _)) = last_math_span(gold) {
        out.push((m.to_string(), Source::LastLatex));
    }
    out
}

/// "... answer is X." / "Answer: X": the last such phrase with a non-empty X.
fn answer_phrase(text: &str) -> Option<String> {
    // From the end, so only the last phrase's sentence is scanned (linear time).
    let lower = text.to_ascii_lowercase();
    let mut end = lower.len();
    while let Some(at) = lower[..end].rfind("answer") {
        if let Some(c) = phrase_capture(text, at + "answer".len()) {
            return Some(c);
        }
        end = at;
    }
    None
}

fn phrase_capture(text: &str, mut at: usize) -> Option<String> {
    let b = text.as_bytes();
    let skip = |at: &mut usize| {
        while *at < b.len() && (b[*at] == b' ' || b[*at] == b'*') {
            *at += 1;
        }
    };
    skip(&mut at);
    if text[at..].starts_with(':') || text[at..].starts_with('=') {
        at += 1;
    } else if text[at..].starts_with("is")
        && !b.get(at + 2).is_some_and(|c| c.is_ascii_alphabetic())
    {
        at += 2;
        skip(&mut at);
        if text[at..].starts_with(':') {
            at += 1;
        }
    } else {
        return None;
    }
    skip(&mut at);
    let rest = &text[at..];
    let end = sentence_end(rest);
    let mut cap = rest[..end].trim().trim_end_matches('*').trim();
    // "The answer is not 5; it is 6": the last "is" wins; "$x$ equals $5$"
    // gives what it equals.
    for link in [" is ", " equals "] {
        if let Some(i) = cap.rfind(link) {
            cap = &cap[i + link.len()..];
        }
    }
    // "5, because 2 + 3 = 5": the reason that follows is not the answer.
    for reason in [
        ", because ",
        ", since ",
        " because ",
        " since ",
        ", as ",
        ", so ",
    ] {
        if let Some(i) = cap.find(reason) {
            cap = &cap[..i];
        }
    }
    let mut cap = cap.trim().trim_start_matches(':').trim();
    // "the $5^{th}$ term": an article before the value is not part of it.
    for article in ["the ", "a ", "an "] {
        if let Some(rest) = cap.strip_prefix(article)
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '$' || c == '\\')
        {
            cap = rest;
        }
    }
    if cap.is_empty() {
        None
    } else {
        Some(cap.to_string())
    }
}

/// End of the sentence that starts `s`: a `.`/`!`/`?` followed by a space or
/// the end, or a newline; `$...$` spans are skipped whole.
fn sentence_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' => {
                let dd = b.get(i + 1) == Some(&b'$');
                let skip = if dd { 2 } else { 1 };
                let close = if dd {
                    s[i + 2..].find("$$")
                } else {
                    s[i + 1..].find('$')
                };
                match close {
                    Some(c) => i += skip + c + skip,
                    None => i += skip,
                }
                continue;
            }
            b'\n' => return i,
            b'.' | b'!' | b'?' if i + 1 >= b.len() || b[i + 1].is_ascii_whitespace() => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The content of the math span that ends last (`$..$`, `$$..$$`, `\(..\)`,
/// `\[..\]`), with the byte offset where it ends.
pub fn last_math_span(text: &str) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let mut best: Option<(usize, usize)> = None;
    let mut open: Option<(usize, &'static [u8])> = None;
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if let Some((start, closer)) = open {
            if rest.starts_with(closer) {
                best = Some((start, i));
                open = None;
                i += closer.len();
                continue;
            }
            if b[i] == b'\\' && closer[0] == b'$' {
                i += 2;
                continue;
            }
        } else if rest.starts_with(b"$$") {
            open = Some((i + 2, b"$$"));
            i += 2;
            continue;
        } else if b[i] == b'$' {
            open = Some((i + 1, b"$"));
        } else if rest.starts_with(b"\\(") {
            open = Some((i + 2, b"\\)"));
            i += 2;
            continue;
        } else if rest.starts_with(b"\\[") {
            open = Some((i + 2, b"\\]"));
            i += 2;
            continue;
        } else if b[i] == b'\\' {
            i += 2;
            continue;
        }
        i += 1;
    }
    let (s, e) = best?;
    let m = text.get(s..e)?.trim();
    if m.is_empty() { None } else { Some((m, e)) }
}

/// The last number, if it sits in the final clause (a response that moves on
/// after its last number, like a truncated one, has none), and its end offset.
fn last_number(text: &str) -> Option<(String, usize)> {
    let b = text.as_bytes();
    let end = b.iter().rposition(|c| c.is_ascii_digit())? + 1;
    let mut start = end;
    while start > 0 {
        let c = b[start - 1];
        let digit_follows = b.get(start).is_some_and(|d| d.is_ascii_digit());
        if c.is_ascii_digit()
            || ((c == b'.' || c == b',')
                && digit_follows
                && start >= 2
                && b[start - 2].is_ascii_digit())
        {
            start -= 1;
        } else if c == b'.' && digit_follows {
            start -= 1; // ".4"
            break;
        } else {
            break;
        }
    }
    // "2/3": a plain fraction is one number.
    if start >= 2
        && b[start - 1] == b'/'
        && b[start - 2].is_ascii_digit()
        && !text[start..end].contains(['.', ','])
    {
        let mut s = start - 1;
        while s > 0 && b[s - 1].is_ascii_digit() {
            s -= 1;
        }
        if s == 0 || !(b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'.' || b[s - 1] == b'/') {
            start = s;
        }
    }
    if start > 0 && b[start - 1] == b'-' && (start == 1 || !b[start - 2].is_ascii_alphanumeric()) {
        start -= 1;
    }
    if continues_after(&text[end..]) {
        return None;
    }
    // `AZYUK2A`, `H2O`: digits inside a word are not a number.
    if start > 0
        && b[start - 1].is_ascii_alphabetic()
        && b.get(end).is_some_and(|c| c.is_ascii_alphabetic())
    {
        return None;
    }
    let num = &text[start..end];
    // A single comma followed by one or two digits is a decimal comma ("2,74").
    let parts: Vec<&str> = num.split(',').collect();
    if parts.len() == 2 && !num.contains('.') && (1..=2).contains(&parts[1].len()) {
        return Some((format!("{}.{}", parts[0], parts[1]), end));
    }
    Some((num.replace(',', ""), end))
}

/// Whether a new clause with words starts after the number.
fn continues_after(tail: &str) -> bool {
    for sep in [", ", "; ", ". ", "\n", ": "] {
        if let Some(i) = tail.find(sep) {
            let after = &tail[i + sep.len()..];
            if after
                .split_whitespace()
                .filter(|w| w.chars().any(|c| c.is_alphabetic()))
                .count()
                >= 2
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_box_with_nesting_and_escaped_braces() {
        assert_eq!(
            last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}").unwrap(),
            "\\frac{1}{2}"
        );
        assert_eq!(last_boxed("\\boxed{\\{1,2\\}}").unwrap(), "\\{1,2\\}");
        assert_eq!(last_boxed("so \\boxed 5 done").unwrap(), "5");
        assert_eq!(last_boxed("\\fbox{7}").unwrap(), "7");
        assert!(last_boxed("\\boxed{1").is_none());
        assert!(last_boxed("\\boxedx{1}").is_none());
    }

    #[test]
    fn adjacent_boxes_join_and_separated_boxes_do_not() {
        assert_eq!(last_boxed("$\\boxed{1}, \\boxed{2}$").unwrap(), "1, 2");
        assert_eq!(last_boxed("\\boxed{2} or \\boxed{-2}").unwrap(), "2, -2");
        assert_eq!(
            last_boxed("\\(y_1=\\boxed{a}\\) and \\(y_2 = \\boxed{b}\\)").unwrap(),
            "a, b"
        );
        assert_eq!(
            last_boxed("first \\boxed{3}, but that is wrong, so \\boxed{5}").unwrap(),
            "5"
        );
        assert_eq!(
            last_boxed("\\boxed{1} \\text{ and } \\boxed{2}").unwrap(),
            "1, 2"
        );
        assert_eq!(last_boxed("\\boxed{1} android \\boxed{2}").unwrap(), "2");
    }

    #[test]
    fn think_is_ignored() {
        assert_eq!(
            strip_think("<think>\\boxed{4}</think> \\boxed{5}"),
            " \\boxed{5}"
        );
        assert_eq!(strip_think("<think> still going \\boxed{4}"), "");
    }

    #[test]
    fn phrases_and_numbers() {
        assert_eq!(answer_phrase("So the answer is 42.").unwrap(), "42");
        assert_eq!(answer_phrase("The answer is not 5; it is 6.").unwrap(), "6");
        assert_eq!(
            answer_phrase("Final Answer: The final answer is $1.5$. I hope").unwrap(),
            "$1.5$"
        );
        assert_eq!(last_number("it is 1,000.99m²").unwrap().0, "1000.99");
        assert_eq!(last_number("Soucis : 2,74 $ a..").unwrap().0, "2.74");
        assert!(last_number("first 6 + 1 = 7, then we need to multiply the result by").is_none());
        assert_eq!(last_math_span("so $x$ and \\( 9 \\) end").unwrap().0, "9");
        assert_eq!(last_math_span("x² $1$ é").unwrap().0, "1");
    }
}
