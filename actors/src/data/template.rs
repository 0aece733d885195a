//! Answer-format instructions per domain.
//!
//! A row that already tells the model how to answer (verl's and DeepScaleR's prompts end
//! in "... output the final answer within \boxed{}"; code rows ask for a fenced block)
//! keeps its own prompt. Any other row is wrapped in its domain's template from the run
//! config, where `{prompt}` stands for the row's text.

use serde::Deserialize;

use super::problem::{Domain, Problem};

/// `[data.templates]`: one template per domain, each holding `{prompt}` once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    /// For math rows, e.g. `"{prompt}\nLet's think step by step and output the final answer within \\boxed{}."`.
    #[serde(default)]
    pub math: Option<String>,
    /// For code rows, e.g. `"{prompt}\nWrite the program in a ```python block."`.
    #[serde(default)]
    pub code: Option<String>,
}

/// What applying the templates did, per domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rows whose prompt already carried an answer-format instruction (left as they are).
    pub own: usize,
    /// Rows wrapped in the domain's template.
    pub templated: usize,
    /// Rows with no instruction and no template for their domain.
    pub bare: usize,
}

impl Templates {
    /// Each template must hold `{prompt}` exactly once; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for d in Domain::ALL {
            if let Some(t) = self.for_domain(d) {
                check(t).map_err(|e| format!("templates.{} {e}", d.as_str()))?;
            }
        }
        Ok(())
    }

    /// The template for a domain's rows, if one is set.
    pub fn for_domain(&self, d: Domain) -> Option<&str> {
        match d {
            Domain::Math => self.math.as_deref(),
            Domain::Code => self.code.as_deref(),
        }
    }

    /// Wraps every prompt without its own instruction; counts per domain (math, code).
    pub fn apply(&self, problems: &mut [Problem]) -> [(Domain, Applied); 2] {
        let mut out = Domain::ALL.map(|d| (d, Applied::default()));
        for p in problems {
            let slot = &mut out[if p.domain == Domain::Math { 0 } else { 1 }].1;
            if has_instruction(p.domain, &p.prompt) {
                slot.own += 1;
            } else if let Some(t) = self.for_domain(p.domain) {
                p.prompt = t.replacen("{prompt}", &p.prompt, 1);
                slot.templated += 1;
            } else {
                slot.bare += 1;
            }
        }
        out
    }
}

/// A template's one rule: it holds `{prompt}` exactly once. The error reads
/// after the template's name ("must contain ...").
pub fn check(template: &str) -> Result<(), String> {
    match template.matches("{prompt}").count() {
        1 => Ok(()),
        n => Err(format!("must contain {{prompt}} exactly once (found {n})")),
    }
}

/// Whether a prompt already says how to give the answer: a math prompt that asks for
/// `\boxed{}` or a "final answer", a code prompt that asks for a fenced block.
pub fn has_instruction(domain: Domain, prompt: &str) -> bool {
    let lower = prompt.to_lowercase();
    match domain {
        Domain::Math => lower.contains("\\boxed") || lower.contains("final answer"),
        Domain::Code => prompt.contains("```") || lower.contains("code block"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(domain: Domain, prompt: &str) -> Problem {
        Problem {
            id: prompt.into(),
            domain,
            prompt: prompt.into(),
            answer: (domain == Domain::Math).then(|| "1".into()),
            tests: None,
            solution: None,
            difficulty: None,
            source: "t".into(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn rows_with_their_own_instruction_keep_it_and_the_rest_are_wrapped() {
        let t = Templates {
            math: Some("{prompt}\nPut the final answer in \\boxed{}.".into()),
            code: None,
        };
        t.validate().unwrap();
        let mut ps = vec![
            problem(
                Domain::Math,
                "What is 1+0? Output the final answer within \\boxed{}.",
            ),
            problem(Domain::Math, "What is 2-1?"),
            problem(Domain::Code, "Print 1."),
            problem(Domain::Code, "Print 2. Answer in a ```python block."),
        ];
        let got = t.apply(&mut ps);
        assert_eq!(
            got[0].1,
            Applied {
                own: 1,
                templated: 1,
                bare: 0
            }
        );
        assert_eq!(
            got[1].1,
            Applied {
                own: 1,
                templated: 0,
                bare: 1
            }
        );
        assert_eq!(
            ps[1].prompt,
            "What is 2-1?\nPut the final answer in \\boxed{}."
        );
        assert_eq!(
            ps[0].prompt,
            "What is 1+0? Output the final answer within \\boxed{}."
        );
        assert_eq!(ps[2].prompt, "Print 1.");
    }

    #[test]
    fn a_template_without_its_placeholder_is_an_error_naming_it() {
        let t = Templates {
            math: None,
            code: Some("Write code.".into()),
        };
        assert!(t.validate().unwrap_err().contains("templates.code"));
        let t = Templates {
            math: Some("{prompt} {prompt}".into()),
            code: None,
        };
        assert!(t.validate().unwrap_err().contains("found 2"));
    }
}
