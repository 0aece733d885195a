//! Reading the JSONL files a run appends to, the way a live reader must.
//!
//! gradus flushes every line as it is written, so a run that is still going
//! (or was killed with `kill -9`) leaves complete lines plus at most one torn
//! last line without its newline. A torn last line is skipped quietly and
//! counted; a malformed line anywhere else is a real defect, so it is set aside
//! with a `file:line` warning and the rest is still read.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The rows of one JSONL file and what had to be set aside.
#[derive(Debug)]
pub struct Rows<T> {
    /// Well-formed rows, with their 1-based line numbers, in file order.
    pub rows: Vec<(usize, T)>,
    /// `file:line: what was wrong`, one per line set aside.
    pub warnings: Vec<String>,
    /// Whether the last line was torn (no newline and not parseable): the
    /// writer was mid-line, which is normal for a run that is still going.
    pub torn_tail: bool,
}

/// Reads `path` as JSONL rows of `T`. A missing file is `Ok(None)`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<Rows<T>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    Ok(Some(parse(path, &bytes)))
}

/// Reads log `name` of run directory `dir` whole: its rotated files
/// (`name.1`, `name.2`, ..., oldest first, which gradus writes with
/// `[run].rotate_logs_mb`) and then the live file. Line numbers are those of
/// each file; a torn tail counts only in the live file. `Ok(None)` when
/// neither exists.
pub fn read_log<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<Rows<T>>> {
    let rotated = rotated_files(dir, name);
    let mut out: Option<Rows<T>> = None;
    for path in rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(dir.join(name)))
    {
        let Some(rows) = read::<T>(&path)? else {
            continue;
        };
        let acc = out.get_or_insert_with(|| Rows {
            rows: Vec::new(),
            warnings: Vec::new(),
            torn_tail: false,
        });
        acc.rows.extend(rows.rows);
        acc.warnings.extend(rows.warnings);
        acc.torn_tail = rows.torn_tail;
    }
    Ok(out)
}

/// The rotated files of log `name` in `dir` (`name.1`, `name.2`, ...), oldest first.
pub fn rotated_files(dir: &Path, name: &str) -> Vec<(u64, std::path::PathBuf)> {
    let mut out: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let n = file.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Parses JSONL `bytes` read from `path` (named in warnings only).
pub fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Rows<T> {
    let text = String::from_utf8_lossy(bytes);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Rows {
        rows: Vec::new(),
        warnings: Vec::new(),
        torn_tail: false,
    };
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let last = i + 1 == lines.len();
        match serde_json::from_str::<T>(line) {
            Ok(row) => out.rows.push((i + 1, row)),
            // The writer was mid-line: not a defect, the next read completes it.
            Err(e) if last && !complete && e.is_eof() => out.torn_tail = true,
            Err(e) if last && !complete && e.is_syntax() => out.torn_tail = true,
            Err(e) => out
                .warnings
                .push(format!("{}:{}: set aside: {e}", path.display(), i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Row {
        step: u64,
    }

    #[test]
    fn a_rotated_log_is_read_oldest_first_then_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.jsonl.2"), "{\"step\":3}\n").unwrap();
        std::fs::write(dir.path().join("m.jsonl.10"), "{\"step\":4}\n").unwrap();
        std::fs::write(dir.path().join("m.jsonl.1"), "{\"step\":1}\n{\"step\":2}\n").unwrap();
        std::fs::write(dir.path().join("m.jsonl"), "{\"step\":5}\n{\"st").unwrap();
        let rows: Rows<Row> = read_log(dir.path(), "m.jsonl").unwrap().unwrap();
        let steps: Vec<u64> = rows.rows.iter().map(|(_, r)| r.step).collect();
        assert_eq!(steps, [1, 2, 3, 4, 5]);
        assert!(rows.torn_tail && rows.warnings.is_empty());
        assert!(read_log::<Row>(dir.path(), "none.jsonl").unwrap().is_none());
    }

    #[test]
    fn a_torn_last_line_is_skipped_without_a_warning() {
        let rows: Rows<Row> = parse(Path::new("m.jsonl"), b"{\"step\":1}\n{\"step\":2}\n{\"st");
        assert_eq!(rows.rows.len(), 2);
        assert!(rows.torn_tail);
        assert!(rows.warnings.is_empty());
    }

    #[test]
    fn a_malformed_middle_line_is_set_aside_with_file_and_line() {
        let rows: Rows<Row> = parse(
            Path::new("m.jsonl"),
            b"{\"step\":1}\nnot json\n{\"nostep\":true}\n{\"step\":4}\n",
        );
        assert_eq!(
            rows.rows.iter().map(|r| r.1.step).collect::<Vec<_>>(),
            [1, 4]
        );
        assert_eq!(rows.rows[1].0, 4, "line numbers are 1-based file lines");
        assert_eq!(rows.warnings.len(), 2, "{:?}", rows.warnings);
        assert!(rows.warnings[0].starts_with("m.jsonl:2: set aside"));
        assert!(rows.warnings[1].starts_with("m.jsonl:3: set aside"));
        assert!(!rows.torn_tail);
    }

    #[test]
    fn a_complete_last_line_without_newline_is_kept() {
        let rows: Rows<Row> = parse(Path::new("m.jsonl"), b"{\"step\":1}\n{\"step\":2}");
        assert_eq!(rows.rows.len(), 2);
        assert!(!rows.torn_tail);
    }
}
