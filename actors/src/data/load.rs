//! Reading dataset files: every row becomes a [`Problem`] or a [`Reject`] that names the
//! file, line and field, so one bad row never stops a load and never vanishes silently.
//!
//! A run goes through [`Loaded::into_problems`], which refuses duplicate ids and a reject
//! fraction above the configured limit; `gradus data check` reports the same [`Loaded`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::data::import::fields::Row;
use crate::data::import::{Format, FormatChoice};
use crate::data::parquet::{self, Group, GroupError, ParquetFile};
use crate::data::problem::{Domain, Problem};

/// Rows longer than this are cut in the rejects file (a TACO row can hold megabytes of tests).
const MAX_REJECT_ROW_CHARS: usize = 4096;
/// The longest line read (a TACO or LiveCodeBench row with all its tests runs to tens of
/// MiB); a longer one is one reject, skipped to its end without being held in memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;
/// How far past the cap a too-long line is followed to its end before the file is
/// given up as not line-structured.
pub const MAX_SKIP_BYTES: u64 = 256 << 20;

/// How a position in a file counts: JSONL lines, or parquet rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// 1-based line of a JSONL file (blank lines counted).
    #[default]
    Line,
    /// 1-based row of a parquet file, across its row groups.
    Row,
}

/// `file:12` for a line, `file:row 12` for a parquet row.
fn place(file: &str, unit: Unit, n: usize) -> String {
    match unit {
        Unit::Line => format!("{file}:{n}"),
        Unit::Row => format!("{file}:row {n}"),
    }
}

/// Threads that read a parquet file's row groups at once.
const MAX_READ_THREADS: usize = 8;

/// One row group as a reader thread returns it.
struct GroupRead {
    group: Group,
    rows: Vec<(usize, Parsed)>,
    end: Result<(), GroupError>,
}

/// Hands row groups to reader threads in file order, holding a reader back while it is
/// `window` groups ahead of the admitted ones.
#[derive(Default)]
struct Gate {
    /// (next group to hand out, groups admitted so far).
    state: std::sync::Mutex<(usize, usize)>,
    moved: std::sync::Condvar,
}

impl Gate {
    /// The next group to read (`None` when all `total` are handed out).
    fn take(&self, total: usize, window: usize) -> Option<usize> {
        let mut st = self
            .state
            .lock()
            .expect("the gate's lock is never poisoned");
        loop {
            let (next, admitted) = *st;
            if next >= total {
                return None;
            }
            if next < admitted + window {
                st.0 += 1;
                return Some(next);
            }
            st = self
                .moved
                .wait(st)
                .expect("the gate's lock is never poisoned");
        }
    }

    /// `n` groups are admitted.
    fn admitted(&self, n: usize) {
        self.state
            .lock()
            .expect("the gate's lock is never poisoned")
            .1 = n;
        self.moved.notify_all();
    }
}

/// Reads and parses row group `g` of `pq` (an `Err` when the reader's own open failed).
fn read_group(pq: Result<&ParquetFile, &String>, g: Group, r: &Reading) -> GroupRead {
    let mut rows = Vec::with_capacity(g.rows);
    let end = match pq {
        Err(reason) => Err(GroupError {
            at: g.first_row,
            reason: reason.clone(),
        }),
        Ok(pq) => pq.read_group(g, |at, row| {
            let parsed = match row {
                Ok(row) => parse(r.format, &r.source, &row, &row_json),
                Err(e) => Parsed::Reject {
                    field: e.field,
                    reason: e.reason,
                    row: String::new(),
                },
            };
            rows.push((at, parsed));
        }),
    };
    GroupRead {
        group: g,
        rows,
        end,
    }
}

/// A malformed row, set aside with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reject {
    /// The file, as given.
    pub file: String,
    /// 1-based line (JSONL) or row (parquet) number.
    pub line: usize,
    /// What `line` counts.
    pub unit: Unit,
    /// The field at fault (`<json>` when the line is not a JSON object).
    pub field: String,
    /// What is wrong.
    pub reason: String,
    /// The row as read (cut to a few KiB).
    pub row: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            place(&self.file, self.unit, self.line),
            self.field,
            self.reason
        )
    }
}

/// Where an accepted problem was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// The file, as given (shared by all its rows).
    pub file: Arc<str>,
    /// 1-based line (JSONL) or row (parquet) number.
    pub line: usize,
    /// What `line` counts.
    pub unit: Unit,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&place(&self.file, self.unit, self.line))
    }
}

/// The file being read: its name in messages, its dataset name, and the shape its rows take.
struct Reading {
    /// Shared by the origins of all its rows.
    file: Arc<str>,
    source: String,
    unit: Unit,
    format: Option<Format>,
}

impl Reading {
    fn new(path: &Path, unit: Unit, choice: FormatChoice) -> Reading {
        let file = path.display().to_string();
        let source = path
            .file_stem()
            .map_or_else(|| file.clone(), |s| s.to_string_lossy().into_owned());
        let format = match choice {
            FormatChoice::Auto => None,
            FormatChoice::Fixed(f) => Some(f),
        };
        Reading {
            file: Arc::from(file),
            source,
            unit,
            format,
        }
    }
}

/// Errors that stop a load (as opposed to rejects, which are counted and set aside).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written (the OS error is the source, so
    /// `{:#}` prints it once, after the path).
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A parquet file whose footer (schema and row-group metadata) cannot be read: not
    /// parquet, truncated, or written with a codec this build lacks.
    #[error("{}: cannot read as parquet: {reason}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// A line ran on past [`MAX_LINE_BYTES`] and then past [`MAX_SKIP_BYTES`]
    /// more without ending (a device such as /dev/zero, or not a JSONL file).
    #[error(
        "{}:{line}: no end of line in the {} MiB after the line cap; stopped reading the file",
        path.display(),
        MAX_SKIP_BYTES >> 20
    )]
    Endless {
        /// The file.
        path: PathBuf,
        /// The line that never ended.
        line: usize,
    },
    /// Too many rows were rejected for the run to be trusted.
    #[error(
        "{rejected} of {rows} rows rejected ({:.1}%), above the limit of {:.1}% (data.max_reject_fraction); see the rejects file",
        100.0 * *rejected as f64 / (*rows).max(1) as f64,
        100.0 * limit
    )]
    TooManyRejects {
        /// Rejected rows.
        rejected: usize,
        /// All rows read.
        rows: usize,
        /// The configured limit.
        limit: f64,
    },
    /// Ids must be unique: statistics and the sampler key on them.
    #[error("{count} duplicate id(s), first: {first}")]
    DuplicateIds {
        /// How many rows repeated an earlier id.
        count: usize,
        /// The first duplicate, as `file:line: id 'x' first seen at file:line`.
        first: String,
    },
    /// No problems at all.
    #[error("no valid problems in {files}")]
    Empty {
        /// The files read.
        files: String,
    },
}

/// Everything read from a set of files.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Accepted problems, in file order.
    pub problems: Vec<Problem>,
    /// Where each accepted problem came from (same order as `problems`).
    pub origins: Vec<Origin>,
    /// Rejected rows, in file order.
    pub rejects: Vec<Reject>,
    /// Non-blank rows read (parquet: every row the file holds, read or not).
    pub rows: usize,
    /// Rows that could not be read one by one (the rest of a parquet row group the decoder
    /// failed in, or every row of a file whose columns match no shape): each run of them is
    /// one reject, which counts its first row; `unread` counts the others, so the reject
    /// fraction sees them all.
    pub unread: usize,
    /// Rejects that were duplicate ids (also in `rejects`).
    pub duplicates: usize,
    /// The shape used for each file (`None`: no row matched any shape).
    pub formats: Vec<(String, Option<Format>)>,
    seen: HashMap<String, usize>,
}

impl Loaded {
    /// Reads each file in turn ([`Loaded::read_file`]).
    pub fn read_files(paths: &[PathBuf], choice: FormatChoice) -> Result<Loaded, DataError> {
        let mut loaded = Loaded::default();
        for path in paths {
            loaded.read_file(path, choice)?;
        }
        Ok(loaded)
    }

    /// Reads one file: parquet when it starts with parquet's magic bytes, JSONL otherwise.
    pub fn read_file(&mut self, path: &Path, choice: FormatChoice) -> Result<(), DataError> {
        if parquet::is_parquet(path) {
            return self.read_parquet(path, choice);
        }
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.read(BufReader::new(file), path, choice)
    }

    /// Reads JSONL text (tests and embedded data); `name` plays the file's part in messages.
    pub fn read_str(&mut self, text: &str, name: &str, choice: FormatChoice) {
        // Reading from memory cannot fail.
        let _ = self.read(text.as_bytes(), Path::new(name), choice);
    }

    /// Reads a parquet file row group by row group. `--format auto` picks the shape from
    /// the schema's top-level columns (the keys every row has), so one detection serves
    /// the whole file.
    fn read_parquet(&mut self, path: &Path, choice: FormatChoice) -> Result<(), DataError> {
        let pq = ParquetFile::open(path).map_err(|reason| DataError::Parquet {
            path: path.to_path_buf(),
            reason,
        })?;
        let mut r = Reading::new(path, Unit::Row, choice);
        let columns = pq.columns();
        if r.format.is_none() {
            let keys: Row = columns
                .iter()
                .map(|c| (c.clone(), Value::Bool(true)))
                .collect();
            r.format = Format::detect(&keys);
        }
        let total = pq.num_rows();
        if r.format.is_none() && total > 0 {
            self.rows += total;
            self.unread += total - 1;
            let reason = format!(
                "the columns match no known format (columns: {}); all {total} rows set aside; pass --format",
                columns.join(", ")
            );
            self.reject_at(&r, 1, "<schema>", reason, String::new());
            self.formats.push((r.file.to_string(), None));
            return Ok(());
        }
        // Row groups are read and parsed on up to `threads` threads, each taking the next
        // unread group as it finishes one, while this thread admits them in file order (ids,
        // duplicates and rejects as if read alone). A reader takes a group only while it is
        // fewer than `window` groups ahead of the next one to admit, so memory holds at most
        // `window` parsed groups whatever the file's size.
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_READ_THREADS);
        let groups = pq.groups();
        let window = threads + 1;
        let gate = Gate::default();
        let (tx, rx) = std::sync::mpsc::channel::<GroupRead>();
        std::thread::scope(|s| {
            for _ in 0..threads.min(groups.len()) {
                let (r, gate, groups, tx) = (&r, &gate, &groups, tx.clone());
                s.spawn(move || {
                    // A reader of its own: the record reader seeks a `File` whose clones
                    // share one offset, so threads must not share one.
                    let pq = ParquetFile::open(path);
                    while let Some(i) = gate.take(groups.len(), window) {
                        let read = read_group(pq.as_ref(), groups[i], r);
                        if tx.send(read).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut waiting: BTreeMap<usize, GroupRead> = BTreeMap::new();
            let mut next = 0;
            for read in rx {
                waiting.insert(read.group.index, read);
                while let Some(GroupRead {
                    group: g,
                    rows,
                    end,
                }) = waiting.remove(&next)
                {
                    self.rows += g.rows;
                    for (at, parsed) in rows {
                        self.admit(&r, at, parsed, |p| {
                            cut(&serde_json::to_string(p).expect("a problem serialises"))
                        });
                    }
                    if let Err(e) = end {
                        self.group_lost(&r, g, e);
                    }
                    next += 1;
                    gate.admitted(next);
                }
            }
        });
        self.formats.push((r.file.to_string(), r.format));
        Ok(())
    }

    /// The rest of row group `g`, from `e.at`, could not be read: one reject for the run.
    fn group_lost(&mut self, r: &Reading, g: Group, e: GroupError) {
        let end = g.first_row + g.rows;
        let lost = end.saturating_sub(e.at);
        if lost == 0 {
            // Every row was read; the group ran past its stated length.
            self.reject_at(r, e.at, "<parquet>", e.reason, String::new());
            self.rows += 1;
            return;
        }
        self.unread += lost - 1;
        let reason = format!(
            "row group {} cannot be read from here ({}); rows {}–{} ({lost}) set aside",
            g.index,
            e.reason,
            e.at,
            end - 1
        );
        self.reject_at(r, e.at, "<parquet>", reason, String::new());
    }

    fn read(
        &mut self,
        reader: impl BufRead,
        path: &Path,
        choice: FormatChoice,
    ) -> Result<(), DataError> {
        self.read_limited(reader, path, choice, MAX_LINE_BYTES, MAX_SKIP_BYTES)
    }

    fn read_limited(
        &mut self,
        reader: impl BufRead,
        path: &Path,
        choice: FormatChoice,
        line_cap: usize,
        skip_cap: u64,
    ) -> Result<(), DataError> {
        let mut r = Reading::new(path, Unit::Line, choice);
        let mut reader = reader;
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let io = |source| DataError::Io {
                path: path.to_path_buf(),
                source,
            };
            let (n, ended) = take_line(&mut reader, Some(&mut buf), line_cap as u64).map_err(io)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if !ended {
                // Over the cap: one reject; the rest of the line is skipped
                // without being kept.
                self.rows += 1;
                let (_, skipped) = take_line(&mut reader, None, skip_cap).map_err(io)?;
                self.reject_at(
                    &r,
                    line_no,
                    "<line>",
                    format!("line longer than {line_cap} bytes (the cap on one row); skipped"),
                    cut(&String::from_utf8_lossy(
                        &buf[..buf.len().min(MAX_REJECT_ROW_CHARS)],
                    )),
                );
                if !skipped {
                    return Err(DataError::Endless {
                        path: path.to_path_buf(),
                        line: line_no,
                    });
                }
                continue;
            }
            let line = match std::str::from_utf8(&buf) {
                Ok(l) => l,
                Err(e) => {
                    self.rows += 1;
                    let row = cut(&String::from_utf8_lossy(&buf));
                    self.reject_at(
                        &r,
                        line_no,
                        "<utf8>",
                        format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                        row,
                    );
                    continue;
                }
            };
            let line = line.strip_suffix('\n').unwrap_or(line);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            self.rows += 1;
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(row)) => {
                    if r.format.is_none() {
                        r.format = Format::detect(&row);
                    }
                    self.accept(&r, line_no, row, |_| cut(line));
                }
                Ok(_) => {
                    self.reject_at(&r, line_no, "<json>", "not a JSON object".into(), cut(line))
                }
                Err(e) => self.reject_at(
                    &r,
                    line_no,
                    "<json>",
                    format!("invalid JSON: {e}"),
                    cut(line),
                ),
            }
        }
        self.formats.push((r.file.to_string(), r.format));
        Ok(())
    }

    /// One row, read as the file's shape and admitted ([`parse`], then [`Loaded::admit`]).
    fn accept(&mut self, r: &Reading, at: usize, row: Row, text: impl Fn(&Row) -> String) {
        let parsed = parse(r.format, &r.source, &row, &text);
        self.admit(r, at, parsed, |_| text(&row));
    }

    /// Adds a parsed row: a problem unless its id was seen before (then a reject, its row
    /// text from `text`), or the reject it already is.
    fn admit(
        &mut self,
        r: &Reading,
        at: usize,
        parsed: Parsed,
        text: impl FnOnce(&Problem) -> String,
    ) {
        match parsed {
            Parsed::Problem(problem) => {
                if let Some(&first) = self.seen.get(&problem.id) {
                    self.duplicates += 1;
                    let reason = format!(
                        "duplicate id '{}' (first at {})",
                        problem.id, self.origins[first]
                    );
                    let row = text(&problem);
                    self.reject_at(r, at, "id", reason, row);
                    return;
                }
                self.seen.insert(problem.id.clone(), self.problems.len());
                self.problems.push(*problem);
                self.origins.push(Origin {
                    file: r.file.clone(),
                    line: at,
                    unit: r.unit,
                });
            }
            Parsed::Reject { field, reason, row } => self.reject_at(r, at, &field, reason, row),
        }
    }

    fn reject_at(&mut self, r: &Reading, at: usize, field: &str, reason: String, row: String) {
        self.rejects.push(Reject {
            file: r.file.to_string(),
            line: at,
            unit: r.unit,
            field: field.to_string(),
            reason,
            row,
        });
    }

    /// Caps every problem's tests at `max` ([`Problem::cap_tests`]); returns how many
    /// problems were cut and how many test cases were dropped in all.
    pub fn cap_tests(&mut self, max: usize) -> (usize, usize) {
        let mut capped = 0;
        let mut dropped = 0;
        for p in &mut self.problems {
            let n = p.cap_tests(max);
            if n > 0 {
                capped += 1;
                dropped += n;
            }
        }
        (capped, dropped)
    }

    /// Rows rejected: one per reject, plus the [`Loaded::unread`] rows runs of them stand for.
    pub fn rejected(&self) -> usize {
        self.rejects.len() + self.unread
    }

    /// Accepted problems per domain (every domain present, zero included).
    pub fn by_domain(&self) -> BTreeMap<Domain, usize> {
        let mut counts: BTreeMap<Domain, usize> = Domain::ALL.into_iter().map(|d| (d, 0)).collect();
        for p in &self.problems {
            *counts.entry(p.domain).or_default() += 1;
        }
        counts
    }

    /// Writes the rejects as JSONL (`{"file", "line", "field", "reason", "row"}`), one a line.
    pub fn write_rejects(&self, path: &Path) -> Result<(), DataError> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut w = BufWriter::new(File::create(path).map_err(io)?);
        for r in &self.rejects {
            let line = serde_json::to_string(r).expect("a reject serialises");
            writeln!(w, "{line}").map_err(io)?;
        }
        w.flush().map_err(io)
    }

    /// The problems for a run: refused when any id repeats, when nothing is valid, or when
    /// more than `max_reject_fraction` of the rows were rejected.
    pub fn into_problems(self, max_reject_fraction: f64) -> Result<Vec<Problem>, DataError> {
        if self.duplicates > 0 {
            let first = self
                .rejects
                .iter()
                .find(|r| r.field == "id" && r.reason.starts_with("duplicate"));
            return Err(DataError::DuplicateIds {
                count: self.duplicates,
                first: first.map_or_else(String::new, ToString::to_string),
            });
        }
        if self.problems.is_empty() {
            let files: Vec<&str> = self.formats.iter().map(|(f, _)| f.as_str()).collect();
            return Err(DataError::Empty {
                files: files.join(", "),
            });
        }
        let rejected = self.rejected();
        if rejected as f64 > max_reject_fraction * self.rows as f64 {
            return Err(DataError::TooManyRejects {
                rejected,
                rows: self.rows,
                limit: max_reject_fraction,
            });
        }
        Ok(self.problems)
    }
}

/// A row read in a file's shape, on whichever thread read it.
enum Parsed {
    Problem(Box<Problem>),
    Reject {
        field: String,
        reason: String,
        row: String,
    },
}

/// Reads `row` in `format` (`None`: no shape matched the file); a reject carries the row's
/// text from `text`.
fn parse(format: Option<Format>, source: &str, row: &Row, text: &dyn Fn(&Row) -> String) -> Parsed {
    let Some(fmt) = format else {
        let keys: Vec<&str> = row.keys().map(String::as_str).collect();
        return Parsed::Reject {
            field: "<row>".into(),
            reason: format!(
                "matches no known format (keys: {}); pass --format",
                keys.join(", ")
            ),
            row: text(row),
        };
    };
    match fmt.parse_row(row, source) {
        Ok(p) => Parsed::Problem(Box::new(p)),
        Err(e) => Parsed::Reject {
            field: e.field,
            reason: e.reason,
            row: text(row),
        },
    }
}

/// A parquet row as reject text: its JSON, cut.
fn row_json(row: &Row) -> String {
    cut(&serde_json::to_string(row).expect("a JSON row serialises"))
}

fn cut(line: &str) -> String {
    match line.char_indices().nth(MAX_REJECT_ROW_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// Reads one line (with its newline), at most `limit` bytes of it, keeping
/// the bytes in `keep` when given. Returns the bytes read and whether the
/// line ended (newline or end of input) within the limit; `(0, true)` at the
/// end of the input.
fn take_line(
    r: &mut impl BufRead,
    mut keep: Option<&mut Vec<u8>>,
    limit: u64,
) -> std::io::Result<(u64, bool)> {
    let mut taken = 0u64;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((taken, true));
        }
        let room = (limit - taken).min(avail.len() as u64) as usize;
        let window = &avail[..room];
        let (n, ended) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (window.len(), false),
        };
        if let Some(k) = keep.as_deref_mut() {
            k.extend_from_slice(&window[..n]);
        }
        r.consume(n);
        taken += n as u64;
        if ended {
            return Ok((taken, true));
        }
        if taken >= limit {
            // Exactly at the limit: ended if the input ends here or a newline follows.
            let next = loop {
                match r.fill_buf() {
                    Ok(a) => break a.first().copied(),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            return Ok(match next {
                None => (taken, true),
                Some(b'\n') => {
                    r.consume(1);
                    (taken + 1, true)
                }
                Some(_) => (taken, false),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::import::Format;

    const ROW: &str = r#"{"question": "1+1?", "answer": "so #### 2"}"#;

    /// Issue 18: `gradus data check /dev/zero` grew to 11 GB; one invalid UTF-8 byte
    /// aborted the whole file.
    #[test]
    fn issue_18_long_lines_and_invalid_utf8_are_one_reject_each() {
        let mut text = Vec::new();
        text.extend_from_slice(ROW.as_bytes());
        text.push(b'\n');
        text.extend_from_slice(&vec![b'x'; 5000]);
        text.push(b'\n');
        text.extend_from_slice(b"{\"question\": \"\xff\", \"answer\": \"#### 1\"}\n");
        text.extend_from_slice(ROW.replace("1+1", "2+2").as_bytes());
        text.extend_from_slice(b"\r\n");
        let mut l = Loaded::default();
        l.read_limited(
            &text[..],
            Path::new("g.jsonl"),
            FormatChoice::Auto,
            1000,
            1 << 20,
        )
        .unwrap();
        assert_eq!(l.problems.len(), 2, "{:?}", l.rejects);
        let got: Vec<String> = l.rejects.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("g.jsonl:2: <line>: line longer than 1000 bytes"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("g.jsonl:3: <utf8>: invalid UTF-8"),
            "{got:?}"
        );
        assert_eq!(l.rows, 4);
        // A "line" with no end (a device): bounded memory, then a clear stop.
        use std::io::Read;
        let endless = std::io::repeat(0).take(10 << 20);
        let mut l = Loaded::default();
        let err = l
            .read_limited(
                std::io::BufReader::new(endless),
                Path::new("/dev/zero"),
                FormatChoice::Auto,
                1000,
                1 << 20,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/zero:1: no end of line"), "{err}");
        assert_eq!(l.rejects.len(), 1);
    }

    #[test]
    fn an_io_error_names_the_file_and_its_cause_once() {
        let e =
            Loaded::read_files(&[PathBuf::from("/no/such.jsonl")], FormatChoice::Auto).unwrap_err();
        let chain = format!("{:#}", anyhow_like(&e));
        assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
    }

    /// `{:#}` as anyhow prints it: the error, then each source after ": ".
    fn anyhow_like(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        out
    }

    #[test]
    fn rejects_name_line_and_field_and_blank_lines_count_for_lines_only() {
        let text = concat!(
            r#"{"question": "1+1?", "answer": "so #### 2"}"#,
            "\n",
            "\n",
            r#"{"question": "2+2?", "answer": "no marker"}"#,
            "\n",
            "not json\n",
            r#"{"question": "1+1?", "answer": "again #### 2"}"#,
            "\n",
        );
        let mut l = Loaded::default();
        l.read_str(text, "gsm.jsonl", FormatChoice::Auto);
        assert_eq!(
            l.formats,
            vec![("gsm.jsonl".to_string(), Some(Format::Gsm8k))]
        );
        assert_eq!(l.rows, 4);
        assert_eq!(l.problems.len(), 1);
        let got: Vec<String> = l.rejects.iter().map(ToString::to_string).collect();
        assert_eq!(got[0], "gsm.jsonl:3: answer: no '#### <answer>' line found");
        assert!(
            got[1].starts_with("gsm.jsonl:4: <json>: invalid JSON"),
            "{}",
            got[1]
        );
        assert!(
            got[2].starts_with("gsm.jsonl:5: id: duplicate id"),
            "{}",
            got[2]
        );
        assert!(got[2].ends_with("(first at gsm.jsonl:1)"), "{}", got[2]);
        assert!(matches!(
            l.into_problems(1.0),
            Err(DataError::DuplicateIds { count: 1, .. })
        ));
    }

    #[test]
    fn a_run_refuses_too_many_rejects() {
        let mut l = Loaded::default();
        l.read_str(
            "{\"question\": \"a\", \"answer\": \"#### 1\"}\n{\"question\": \"b\", \"answer\": \"x\"}\n",
            "g.jsonl",
            FormatChoice::Fixed(Format::Gsm8k),
        );
        let err = l.into_problems(0.25).unwrap_err();
        assert!(
            err.to_string().starts_with("1 of 2 rows rejected (50.0%)"),
            "{err}"
        );
        let mut l = Loaded::default();
        l.read_str(
            "{\"question\": \"a\", \"answer\": \"#### 1\"}\n",
            "g.jsonl",
            FormatChoice::Auto,
        );
        assert_eq!(l.into_problems(0.0).unwrap().len(), 1);
    }
}
