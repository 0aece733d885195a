//! Maps a field path (`stages[1].advance.rules[0].target`) to its line in the TOML source,
//! and a byte offset (from a parse error) back to the deepest field path there.
//!
//! The source is parsed again with toml's span-preserving `DeTable` only when an error needs
//! a location, so the happy path pays nothing.

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a config came from, and under which table the curriculum sits.
#[derive(Clone, Debug)]
pub struct Locator {
    src: String,
    origin: Option<PathBuf>,
    root: Vec<String>,
}

impl Locator {
    /// `root` is the key path of the curriculum table in the document (`["curriculum"]`, or
    /// empty when the document is the curriculum itself).
    pub fn new(src: &str, origin: Option<&Path>, root: &[&str]) -> Self {
        Locator {
            src: src.to_string(),
            origin: origin.map(Path::to_path_buf),
            root: root.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `file:line` (or `line N` without a file) of `path`, or of its deepest ancestor present in
    /// the source (a defaulted field is reported at the table that lacks it).
    pub fn locate(&self, path: &str) -> Option<String> {
        let doc = DeTable::parse(&self.src).ok()?;
        let mut segs: Vec<Seg> = self.root.iter().map(|k| Seg::Key(k.clone())).collect();
        segs.extend(parse_path(path));
        let mut span = doc.span();
        let root = DeValue::Table(doc.into_inner());
        let mut cur = &root;
        for seg in &segs {
            let next: Option<&Spanned<DeValue<'_>>> = match (seg, cur) {
                (Seg::Key(k), DeValue::Table(t)) => {
                    t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
                }
                (Seg::Index(i), DeValue::Array(a)) => a.get(*i),
                _ => None,
            };
            match next {
                Some(v) => {
                    span = v.span();
                    cur = v.get_ref();
                }
                None => break,
            }
        }
        Some(self.at(span.start))
    }

    /// `[[name]]` as written in this document: `[[curriculum.stages]]` when the
    /// curriculum is the `[curriculum]` table of a run config, `[[stages]]` in a
    /// curriculum file of its own.
    pub fn array_table(&self, name: &str) -> String {
        let mut path = self.root.clone();
        path.push(name.to_string());
        format!("[[{}]]", path.join("."))
    }

    /// `file:line` for a byte offset.
    pub fn at(&self, offset: usize) -> String {
        let line = self.src[..offset.min(self.src.len())].matches('\n').count() + 1;
        match &self.origin {
            Some(p) => format!("{}:{line}", p.display()),
            None => format!("line {line}"),
        }
    }

    /// The deepest field path (relative to the curriculum table) whose key or value spans
    /// `offset`, for parse errors that only carry a span.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let doc = DeTable::parse(&self.src).ok()?;
        let mut path = Vec::new();
        walk(doc.get_ref(), offset, &mut path);
        let root: Vec<Seg> = self.root.iter().map(|k| Seg::Key(k.clone())).collect();
        if path.len() < root.len() || path[..root.len()] != root[..] {
            return None;
        }
        let rel = &path[root.len()..];
        (!rel.is_empty()).then(|| format_path(rel))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut it = part.split('[');
        if let Some(key) = it.next()
            && !key.is_empty()
        {
            out.push(Seg::Key(key.to_string()));
        }
        for idx in it {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

fn format_path(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) {
    if let Some(found) = find_in_table(table, offset) {
        path.extend(found);
    }
}

/// The path below `table` to the deepest key or value spanning `offset`. Tables built from
/// `[header]` sections do not span their bodies, so every table is searched, not just the
/// ones whose span contains the offset.
fn find_in_table(table: &DeTable<'_>, offset: usize) -> Option<Vec<Seg>> {
    for (key, value) in table.iter() {
        let here = Seg::Key(key.get_ref().to_string());
        if let Some(mut below) = find_in_value(value.get_ref(), offset) {
            below.insert(0, here);
            return Some(below);
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            return Some(vec![here]);
        }
    }
    None
}

fn find_in_value(value: &DeValue<'_>, offset: usize) -> Option<Vec<Seg>> {
    match value {
        DeValue::Table(t) => find_in_table(t, offset),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, el)| {
            let mut below = find_in_value(el.get_ref(), offset)
                .or_else(|| el.span().contains(&offset).then(Vec::new))?;
            below.insert(0, Seg::Index(i));
            Some(below)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[run]\nx = 1\n\n[curriculum]\nseed = 3\n\n[[curriculum.stages]]\nname = \"a\"\n\n[[curriculum.stages]]\nname = \"b\"\n[curriculum.stages.generation]\ntop_p = 2.0\n";

    #[test]
    fn paths_map_to_lines_and_back() {
        let l = Locator::new(SRC, Some(Path::new("run.toml")), &["curriculum"]);
        assert_eq!(l.locate("seed").as_deref(), Some("run.toml:5"));
        assert_eq!(
            l.locate("stages[1].generation.top_p").as_deref(),
            Some("run.toml:13")
        );
        assert_eq!(l.locate("stages[1].name").as_deref(), Some("run.toml:11"));
        let off = SRC.find("top_p").unwrap() + 2;
        assert_eq!(
            l.path_at(off).as_deref(),
            Some("stages[1].generation.top_p")
        );
    }
}
