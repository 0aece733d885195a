//! Parquet files as the datasets ship them (verl's preprocessed rows, every Hugging Face
//! dataset's parquet export): each row becomes the same JSON object row the importers read
//! from JSONL, so one importer serves both.
//!
//! Rows are read one row group at a time (no Arrow): plain top-level columns (text, numbers,
//! booleans, dates, timestamps) straight from the column readers in batches, nested ones
//! through the `parquet` crate's record API. Memory holds the current row groups, never the
//! file. Nested columns
//! map onto JSON: a struct is an object (its null fields left out, as a JSONL writer would
//! leave them out), a list an array, a map an object keyed by the map's keys as text,
//! dates and timestamps ISO text, decimals their decimal text. A binary column holding
//! UTF-8 reads as text; other bytes make the row a reject naming the column.

use std::fs::File;
use std::path::Path;

use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::record::{Field, Row as PqRow};
use serde_json::{Map, Number, Value};

use crate::data::import::fields::Row;
use crate::data::problem::FieldError;

/// The magic bytes that open (and close) every parquet file.
pub const MAGIC: &[u8; 4] = b"PAR1";

/// An open parquet file: its schema's top-level columns and its row groups.
pub struct ParquetFile {
    reader: SerializedFileReader<File>,
    /// Top-level columns of one plain value a row (text, numbers, booleans, dates,
    /// timestamps), read column by column in batches.
    leaves: Vec<Leaf>,
    /// The other top-level columns (structs, lists, maps, decimals, ...), read through the
    /// record API as a projection of the schema; `None` when there are none.
    nested: Option<parquet::schema::types::Type>,
}

/// A top-level column read on its own.
struct Leaf {
    name: String,
    /// Its index among the schema's leaf columns.
    index: usize,
    kind: LeafKind,
    /// The definition level of a present value (0: required, never null).
    max_def: i16,
}

/// How a leaf column's values become JSON.
#[derive(Clone, Copy)]
enum LeafKind {
    /// UTF-8 text (a string, enum or JSON column, or plain binary that holds text).
    Text,
    I32,
    U32,
    /// Days from 1970-01-01, as ISO text.
    Date,
    I64,
    U64,
    /// Ticks per second and whether stored as UTC, as ISO text.
    Timestamp(i64, bool),
    Bool,
    F32,
    F64,
}

impl LeafKind {
    /// The kind of a top-level leaf column, `None` for what the record API reads instead.
    fn of(c: &parquet::schema::types::ColumnDescriptor) -> Option<LeafKind> {
        use parquet::basic::{ConvertedType as C, Type as P};
        if let Some(LogicalType::Timestamp(t)) = c.logical_type_ref() {
            if c.physical_type() != P::INT64 {
                return None;
            }
            let per_second = match t.unit {
                TimeUnit::MILLIS => 1_000,
                TimeUnit::MICROS => 1_000_000,
                TimeUnit::NANOS => 1_000_000_000,
            };
            return Some(LeafKind::Timestamp(per_second, t.is_adjusted_to_u_t_c));
        }
        Some(match (c.physical_type(), c.converted_type()) {
            (P::BYTE_ARRAY, C::NONE | C::UTF8 | C::ENUM | C::JSON) => LeafKind::Text,
            (P::INT32, C::NONE | C::INT_8 | C::INT_16 | C::INT_32) => LeafKind::I32,
            (P::INT32, C::UINT_8 | C::UINT_16 | C::UINT_32) => LeafKind::U32,
            (P::INT32, C::DATE) => LeafKind::Date,
            (P::INT64, C::NONE | C::INT_64) => LeafKind::I64,
            (P::INT64, C::UINT_64) => LeafKind::U64,
            (P::BOOLEAN, C::NONE) => LeafKind::Bool,
            (P::FLOAT, C::NONE) => LeafKind::F32,
            (P::DOUBLE, C::NONE) => LeafKind::F64,
            _ => return None,
        })
    }
}

/// A leaf value, or why it is not one (the row becomes a reject naming the column).
type Cell = Result<Value, String>;

/// Values a leaf column decodes at once.
const BATCH: usize = 1024;

/// One row group's place in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// 0-based index in the file.
    pub index: usize,
    /// 1-based number of its first row in the file.
    pub first_row: usize,
    /// Rows, as the file's metadata states them.
    pub rows: usize,
}

/// A row group that could not be read through: the rows from `at` (1-based, in the file) to
/// the group's end are unread.
#[derive(Debug)]
pub struct GroupError {
    /// The first unread row (1-based, in the file).
    pub at: usize,
    /// What went wrong.
    pub reason: String,
}

impl ParquetFile {
    /// Opens `path` and reads its footer (schema and row-group metadata).
    pub fn open(path: &Path) -> Result<ParquetFile, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let mut leaves = Vec::new();
        let mut nested = Vec::new();
        for field in schema.root_schema().get_fields() {
            let leaf = field
                .is_primitive()
                .then(|| {
                    schema
                        .columns()
                        .iter()
                        .position(|c| c.path().parts() == [field.name()])
                })
                .flatten()
                .and_then(|index| {
                    let c = schema.column(index);
                    (c.max_rep_level() == 0)
                        .then(|| LeafKind::of(&c))
                        .flatten()
                        .map(|kind| Leaf {
                            name: field.name().to_string(),
                            index,
                            kind,
                            max_def: c.max_def_level(),
                        })
                });
            match leaf {
                Some(l) => leaves.push(l),
                None => nested.push(field.clone()),
            }
        }
        let nested = if nested.is_empty() {
            None
        } else {
            Some(
                parquet::schema::types::Type::group_type_builder(schema.root_schema().name())
                    .with_fields(nested)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(ParquetFile {
            reader,
            leaves,
            nested,
        })
    }

    /// The names of the schema's top-level columns, in order.
    pub fn columns(&self) -> Vec<String> {
        let schema = self.reader.metadata().file_metadata().schema_descr();
        schema
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }

    /// Every row group, in file order.
    pub fn groups(&self) -> Vec<Group> {
        let meta = self.reader.metadata();
        let mut first_row = 1;
        (0..meta.num_row_groups())
            .map(|index| {
                let rows = usize::try_from(meta.row_group(index).num_rows()).unwrap_or(0);
                let g = Group {
                    index,
                    first_row,
                    rows,
                };
                first_row += rows;
                g
            })
            .collect()
    }

    /// All rows, as the file's metadata states them.
    pub fn num_rows(&self) -> usize {
        self.groups().iter().map(|g| g.rows).sum()
    }

    /// Reads row group `g`, calling `each(row_number, row)` for every row in order (row
    /// numbers 1-based in the file; a row that does not convert to JSON comes as `Err` with
    /// the column at fault, and reading goes on). Plain top-level columns are decoded column
    /// by column, the others through the record API, and rows are put together from both.
    /// Stops at the first row a decoder cannot read: the columns are out of step from there,
    /// so the rest of the group is reported unread rather than guessed at. A decoder panic
    /// on a corrupt file is caught and reported the same way.
    pub fn read_group(
        &self,
        g: Group,
        mut each: impl FnMut(usize, Result<Row, FieldError>),
    ) -> Result<(), GroupError> {
        let mut at = g.first_row;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let group = self
                .reader
                .get_row_group(g.index)
                .map_err(|e| e.to_string())?;
            // One row past the stated count is asked for, to tell a group that runs over.
            let limit = g.rows + 1;
            let mut stop: Option<(usize, String)> = None;
            let mut columns: Vec<std::vec::IntoIter<Cell>> = Vec::with_capacity(self.leaves.len());
            for leaf in &self.leaves {
                let (cells, err) = read_leaf(group.as_ref(), leaf, limit);
                if let Some(reason) = err
                    && stop.as_ref().is_none_or(|(n, _)| cells.len() < *n)
                {
                    stop = Some((cells.len(), reason));
                }
                columns.push(cells.into_iter());
            }
            let mut records = match &self.nested {
                None => None,
                Some(projection) => Some(
                    group
                        .get_row_iter(Some(projection.clone()))
                        .map_err(|e| e.to_string())?,
                ),
            };
            let end = g.first_row + g.rows;
            loop {
                if stop.as_ref().is_some_and(|(n, _)| at - g.first_row >= *n) {
                    break;
                }
                let mut row = Map::new();
                let mut bad: Option<FieldError> = None;
                let mut present = records.is_some() || !columns.is_empty();
                for (leaf, cells) in self.leaves.iter().zip(columns.iter_mut()) {
                    match cells.next() {
                        None => present = false,
                        Some(Ok(Value::Null)) => {}
                        Some(Ok(v)) => {
                            row.insert(leaf.name.clone(), v);
                        }
                        Some(Err(reason)) => {
                            bad.get_or_insert_with(|| FieldError::new(&leaf.name, reason));
                        }
                    }
                }
                if let Some(rows) = records.as_mut() {
                    match rows.next() {
                        None => present = false,
                        Some(Err(e)) => return Err(e.to_string()),
                        Some(Ok(r)) => match row_to_json(r) {
                            Ok(more) => row.extend(more),
                            Err(e) => {
                                bad.get_or_insert(e);
                            }
                        },
                    }
                }
                if !present {
                    break;
                }
                if at >= end {
                    return Err(format!("more rows than the {} its metadata states", g.rows));
                }
                each(at, bad.map_or(Ok(row), Err));
                at += 1;
            }
            if let Some((_, reason)) = stop {
                return Err(reason);
            }
            if at < end {
                return Err(format!(
                    "{} rows, fewer than the {} its metadata states",
                    at - g.first_row,
                    g.rows
                ));
            }
            Ok(())
        }));
        let reason = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => reason,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown cause");
                format!("the parquet decoder failed: {msg}")
            }
        };
        Err(GroupError { at, reason })
    }
}

/// Up to `limit` values of `leaf` from `group`, with the decoder's error if it stopped
/// before the column's end.
fn read_leaf(
    group: &dyn parquet::file::reader::RowGroupReader,
    leaf: &Leaf,
    limit: usize,
) -> (Vec<Cell>, Option<String>) {
    use parquet::column::reader::ColumnReader as R;
    let reader = match group.get_column_reader(leaf.index) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let d = leaf.max_def;
    match (reader, leaf.kind) {
        (R::ByteArrayColumnReader(mut r), LeafKind::Text) => {
            drain(&mut r, limit, d, |b| match std::str::from_utf8(b.data()) {
                Ok(s) => Ok(Value::String(s.to_string())),
                Err(e) => Err(format!(
                    "binary value is not UTF-8 text (invalid at byte {})",
                    e.valid_up_to()
                )),
            })
        }
        (R::Int32ColumnReader(mut r), LeafKind::I32) => {
            drain(&mut r, limit, d, |v| Ok(Value::from(*v)))
        }
        (R::Int32ColumnReader(mut r), LeafKind::U32) => {
            drain(&mut r, limit, d, |v| Ok(Value::from(v.cast_unsigned())))
        }
        (R::Int32ColumnReader(mut r), LeafKind::Date) => drain(&mut r, limit, d, |v| {
            let (y, m, d) = civil_from_days(i64::from(*v));
            Ok(Value::String(format!("{y:04}-{m:02}-{d:02}")))
        }),
        (R::Int64ColumnReader(mut r), LeafKind::I64) => {
            drain(&mut r, limit, d, |v| Ok(Value::from(*v)))
        }
        (R::Int64ColumnReader(mut r), LeafKind::U64) => {
            drain(&mut r, limit, d, |v| Ok(Value::from(v.cast_unsigned())))
        }
        (R::Int64ColumnReader(mut r), LeafKind::Timestamp(per_second, utc)) => {
            drain(&mut r, limit, d, |v| {
                Ok(Value::String(iso_timestamp(*v, per_second, utc)))
            })
        }
        (R::BoolColumnReader(mut r), LeafKind::Bool) => {
            drain(&mut r, limit, d, |v| Ok(Value::Bool(*v)))
        }
        (R::FloatColumnReader(mut r), LeafKind::F32) => {
            drain(&mut r, limit, d, |v| Ok(float(f64::from(*v))))
        }
        (R::DoubleColumnReader(mut r), LeafKind::F64) => drain(&mut r, limit, d, |v| Ok(float(*v))),
        _ => (
            Vec::new(),
            Some(format!("column `{}`: unexpected physical type", leaf.name)),
        ),
    }
}

/// Reads up to `limit` records of a column in batches, nulls (definition level below
/// `max_def`) as JSON null.
fn drain<T: parquet::data_type::DataType>(
    r: &mut parquet::column::reader::ColumnReaderImpl<T>,
    limit: usize,
    max_def: i16,
    conv: impl Fn(&T::T) -> Cell,
) -> (Vec<Cell>, Option<String>) {
    let mut out = Vec::with_capacity(limit.saturating_sub(1));
    let mut defs = Vec::new();
    let mut values = Vec::new();
    while out.len() < limit {
        defs.clear();
        values.clear();
        let want = (limit - out.len()).min(BATCH);
        match r.read_records(want, Some(&mut defs), None, &mut values) {
            Ok((0, _, _)) => break,
            Ok((records, _, levels)) => {
                if max_def == 0 {
                    out.extend(values.iter().take(records).map(&conv));
                } else {
                    let mut v = values.iter();
                    for &d in &defs[..levels] {
                        match (d == max_def).then(|| v.next()).flatten() {
                            Some(x) => out.push(conv(x)),
                            None => out.push(Ok(Value::Null)),
                        }
                    }
                }
            }
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    (out, None)
}

/// A record-API row as a JSON object row (null columns left out). Its top-level columns
/// are never timestamps (those are leaves, read with their unit and UTC-ness from the
/// schema); a timestamp inside a struct or list is read as UTC, as the record API reports it.
fn row_to_json(row: PqRow) -> Result<Row, FieldError> {
    let mut out = Map::new();
    for (name, field) in row.into_columns() {
        let v = owned_value(field, &name)?;
        if !v.is_null() {
            out.insert(name, v);
        }
    }
    Ok(out)
}

fn owned_value(field: Field, path: &str) -> Result<Value, FieldError> {
    match field {
        Field::Str(s) => Ok(Value::String(s)),
        Field::Group(row) => {
            let mut out = Map::new();
            for (name, f) in row.into_columns() {
                let v = owned_value(f, &format!("{path}.{name}"))?;
                if !v.is_null() {
                    out.insert(name, v);
                }
            }
            Ok(Value::Object(out))
        }
        other => value(&other, path),
    }
}

fn value(field: &Field, path: &str) -> Result<Value, FieldError> {
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => Value::from(*n),
        Field::Short(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Long(n) => Value::from(*n),
        Field::UByte(n) => Value::from(*n),
        Field::UShort(n) => Value::from(*n),
        Field::UInt(n) => Value::from(*n),
        Field::ULong(n) => Value::from(*n),
        Field::Float16(x) => float(f64::from(*x)),
        Field::Float(x) => float(f64::from(*x)),
        Field::Double(x) => float(*x),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Value::String(s.to_string()),
            Err(e) => {
                return Err(FieldError::new(
                    path,
                    format!(
                        "binary value is not UTF-8 text (invalid at byte {})",
                        e.valid_up_to()
                    ),
                ));
            }
        },
        Field::Date(days) => {
            let (y, m, d) = civil_from_days(i64::from(*days));
            Value::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        Field::TimestampMillis(t) => Value::String(iso_timestamp(*t, 1_000, true)),
        Field::TimestampMicros(t) => Value::String(iso_timestamp(*t, 1_000_000, true)),
        Field::Decimal(_) | Field::TimeMillis(_) | Field::TimeMicros(_) => {
            Value::String(field.to_string())
        }
        Field::Group(row) => {
            let mut out = Map::new();
            for (name, f) in row.get_column_iter() {
                let v = value(f, &format!("{path}.{name}"))?;
                if !v.is_null() {
                    out.insert(name.clone(), v);
                }
            }
            Value::Object(out)
        }
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .enumerate()
                .map(|(i, f)| value(f, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Field::MapInternal(map) => {
            let mut out = Map::new();
            for (k, v) in map.entries() {
                let key = match value(k, path)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let v = value(v, &format!("{path}.{key}"))?;
                out.insert(key, v);
            }
            Value::Object(out)
        }
    })
}

/// `t` ticks (`per_second` a second) from the Unix epoch as ISO 8601 text: the fraction only
/// when there is one, `Z` when the column is stored as UTC.
fn iso_timestamp(t: i64, per_second: i64, utc: bool) -> String {
    let (secs, frac) = (t.div_euclid(per_second), t.rem_euclid(per_second));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac != 0 {
        let digits = per_second.ilog10() as usize;
        s.push_str(&format!(".{frac:0digits$}"));
    }
    if utc {
        s.push('Z');
    }
    s
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A float as JSON: NaN and infinities, which JSON cannot hold, read as null (missing).
fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Whether the file at `path` starts with the parquet magic (false when it cannot be read).
pub fn is_parquet(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == MAGIC)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use crate::data::import::{Format, FormatChoice};
    use crate::data::load::{DataError, Loaded, Unit};
    use crate::data::problem::Tests;

    /// A fixture written by `tests/fixtures/data/make_parquet_fixtures.py`.
    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/data/parquet")
            .join(name)
    }

    fn load(name: &str) -> Loaded {
        Loaded::read_files(&[fixture(name)], FormatChoice::Auto)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// `(row, field)` of each reject, checking they are counted in parquet rows.
    fn rejects(l: &Loaded) -> Vec<(usize, &str)> {
        assert!(l.rejects.iter().all(|r| r.unit == Unit::Row));
        l.rejects
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect()
    }

    #[test]
    fn verl_rows_read_nested_prompts_structs_and_every_row_group() {
        let l = load("verl_math.parquet");
        assert_eq!(l.formats[0].1, Some(Format::DeepScaler));
        assert_eq!(l.rows, 8);
        let rows: Vec<usize> = l.origins.iter().map(|o| o.line).collect();
        assert_eq!(rows, [1, 2, 3, 8], "rows from all three row groups");
        assert_eq!(
            rejects(&l),
            [
                (4, "prompt"),
                (5, "reward_model.ground_truth"),
                (6, "ability"),
                (7, "prompt[0].content"),
            ]
        );
        let p = &l.problems;
        assert!(p[0].prompt.starts_with("What is 2+3?"));
        assert_eq!(p[0].answer.as_deref(), Some("5"));
        // The last user message is the problem, past system and earlier turns.
        assert_eq!(p[1].prompt, "How many primes are below 20?");
        assert_eq!(p[2].prompt, "Solve $x^2=16$ for $x>0$.");
        assert_eq!(p[3].answer.as_deref(), Some("\\frac{5}{6}"));
        assert_eq!(p[2].source, "deepscaler");
        assert_eq!(
            p[2].metadata["extra_info"],
            json!({"index": 2, "split": "train"})
        );
        // A reject shows the row as JSON, so the user sees what was read.
        assert!(l.rejects[0].row.contains("Only a system message"));
        assert_eq!(
            l.rejects[1].to_string(),
            format!(
                "{}:row 5: reward_model.ground_truth: missing",
                fixture("verl_math.parquet").display()
            )
        );
    }

    #[test]
    fn extra_info_as_json_text_is_kept_as_an_object() {
        let l = load("verl_gsm8k.parquet");
        assert_eq!(l.problems.len(), 3);
        assert_eq!(l.problems[1].answer.as_deref(), Some("60"));
        assert_eq!(l.problems[1].metadata["extra_info"]["split"], "train");
        assert_eq!(rejects(&l), [(4, "reward_model.ground_truth")]);
        assert_eq!(l.rejects[0].reason, "empty");
    }

    #[test]
    fn every_codec_real_files_use_is_read() {
        // snappy, zstd, gzip, lz4, none (and dictionary and plain encodings).
        for (name, valid) in [
            ("verl_math.parquet", 4),
            ("livecodebench.parquet", 2),
            ("deepscaler.parquet", 3),
            ("math.parquet", 2),
            ("gsm8k.parquet", 2),
        ] {
            assert_eq!(load(name).problems.len(), valid, "{name}");
        }
    }

    #[test]
    fn a_binary_column_reads_as_text_and_non_utf8_bytes_reject_the_row() {
        let l = load("gsm8k.parquet");
        assert_eq!(l.formats[0].1, Some(Format::Gsm8k));
        assert_eq!(
            l.problems[0].prompt,
            "Tom has 3 apples and buys 4 more. How many?"
        );
        assert_eq!(rejects(&l), [(3, "question"), (4, "answer")]);
        assert!(l.rejects[0].reason.contains("not UTF-8"), "{:?}", l.rejects);
    }

    #[test]
    fn livecodebench_private_blobs_decode_and_a_hostile_pickle_runs_nothing() {
        let _ = std::fs::remove_file("/tmp/gradus-pwned");
        let l = load("livecodebench.parquet");
        assert_eq!(l.formats[0].1, Some(Format::Lcb));
        let count = |t: &Tests| match t {
            Tests::Stdio { cases, .. } => cases.len(),
            Tests::Call { inputs, .. } => inputs.len(),
            Tests::Function { .. } => 1,
        };
        let p = &l.problems;
        assert_eq!(
            count(p[0].tests.as_ref().unwrap()),
            5,
            "2 public + 3 private"
        );
        let Some(Tests::Call { fn_name, .. }) = &p[1].tests else {
            panic!("{:?}", p[1].tests)
        };
        assert_eq!(fn_name, "add");
        assert_eq!(count(p[1].tests.as_ref().unwrap()), 3);
        // The timestamp column reads as text.
        let date = p[0].metadata["contest_date"].as_str().unwrap();
        assert_eq!(
            date, "2024-08-03T12:00:00",
            "a naive timestamp, as pyarrow writes it"
        );
        assert_eq!(
            rejects(&l),
            [(3, "private_test_cases"), (4, "private_test_cases")]
        );
        assert!(l.rejects[0].reason.contains("GLOBAL"), "{}", l.rejects[0]);
        assert!(!std::path::Path::new("/tmp/gradus-pwned").exists());
    }

    #[test]
    fn code_and_gradus_shapes_read_their_json_text_columns() {
        let l = load("taco.parquet");
        assert_eq!(l.problems.len(), 2);
        assert!(
            matches!(&l.problems[1].tests, Some(Tests::Call { fn_name, .. }) if fn_name == "triple")
        );
        assert_eq!(rejects(&l), [(3, "input_output.outputs")]);
        let l = load("deepcoder.parquet");
        assert_eq!(l.problems.len(), 3);
        assert_eq!(
            l.problems[0].solution.as_deref(),
            Some("print(int(input()) + 1)"),
            "`solutions` as a list column"
        );
        assert_eq!(rejects(&l), [(4, "tests")]);
        let l = load("humaneval.parquet");
        assert_eq!(l.problems.len(), 2);
        assert_eq!(rejects(&l), [(3, "entry_point")]);
        let l = load("gradus.parquet");
        assert_eq!(l.formats[0].1, Some(Format::Gradus));
        assert_eq!(l.problems.len(), 2);
        assert_eq!(l.problems[0].metadata["topic"], "arithmetic");
        assert!(matches!(
            l.problems[1].tests,
            Some(Tests::Stdio { ref cases, .. }) if cases.len() == 1
        ));
        assert_eq!(rejects(&l), [(3, "tests"), (4, "domain")]);
    }

    #[test]
    fn a_corrupt_row_group_is_set_aside_and_the_others_are_read() {
        let l = load("corrupt_group.parquet");
        let rows: Vec<usize> = l.origins.iter().map(|o| o.line).collect();
        assert_eq!(rows, [1, 2, 5, 6]);
        assert_eq!(rejects(&l), [(3, "<parquet>")]);
        assert!(
            l.rejects[0].reason.contains("rows 3–4 (2) set aside"),
            "{}",
            l.rejects[0]
        );
        assert_eq!((l.rows, l.rejected(), l.unread), (6, 2, 1));
        // The lost rows count against the reject limit.
        assert!(matches!(
            l.into_problems(0.3),
            Err(DataError::TooManyRejects {
                rejected: 2,
                rows: 6,
                ..
            })
        ));
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it_and_unknown_columns_one_reject() {
        let path = fixture("truncated.parquet");
        let e = Loaded::read_files(std::slice::from_ref(&path), FormatChoice::Auto).unwrap_err();
        assert!(matches!(e, DataError::Parquet { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read as parquet", path.display())),
            "{e}"
        );
        let l = load("unknown_columns.parquet");
        assert_eq!((l.rows, l.rejected(), l.problems.len()), (2, 2, 0));
        assert_eq!(rejects(&l), [(1, "<schema>")]);
        assert!(l.rejects[0].reason.contains("columns: text, label"));
        // --format names the shape: every row is then read (and here rejected) one by one.
        let l = Loaded::read_files(
            &[fixture("unknown_columns.parquet")],
            FormatChoice::Fixed(Format::Gsm8k),
        )
        .unwrap();
        assert_eq!(rejects(&l), [(1, "question"), (2, "question")]);
    }

    /// Leaf columns of every plain type, nulls among them, and a nested column beside them
    /// (read through the record API), written here with the parquet crate's own writer.
    #[test]
    fn plain_and_nested_columns_read_together_and_bad_text_rejects_one_row() {
        use parquet::data_type::{
            BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type,
        };
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.parquet");
        let schema = Arc::new(
            parse_message_type(
                "message m {
                    required binary problem (UTF8);
                    optional binary answer (UTF8);
                    optional int32 level;
                    optional int32 count (UINT_32);
                    optional int32 day (DATE);
                    optional int64 big;
                    optional boolean flag;
                    optional double score;
                    optional group extra { optional binary note (UTF8); }
                }",
            )
            .unwrap(),
        );
        let props = Arc::new(WriterProperties::builder().build());
        let mut w = SerializedFileWriter::new(std::fs::File::create(&path).unwrap(), schema, props)
            .unwrap();
        let mut rg = w.next_row_group().unwrap();
        let text = |v: &[&[u8]]| {
            v.iter()
                .map(|b| ByteArray::from(b.to_vec()))
                .collect::<Vec<_>>()
        };
        let mut k = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match k {
                0 => col.typed::<ByteArrayType>().write_batch(
                    &text(&[b"1+1?", b"2+2?", b"3+3?"]),
                    None,
                    None,
                ),
                // Row 2's answer is not UTF-8; row 3 has none.
                1 => col.typed::<ByteArrayType>().write_batch(
                    &text(&[b"2", b"\xff4"]),
                    Some(&[1, 1, 0]),
                    None,
                ),
                2 => col
                    .typed::<Int32Type>()
                    .write_batch(&[1, 3], Some(&[1, 0, 1]), None),
                3 => col
                    .typed::<Int32Type>()
                    .write_batch(&[-1, 7, 8], Some(&[1, 1, 1]), None),
                4 => col
                    .typed::<Int32Type>()
                    .write_batch(&[19_782], Some(&[1, 0, 0]), None),
                5 => col
                    .typed::<Int64Type>()
                    .write_batch(&[i64::MIN], Some(&[0, 0, 1]), None),
                6 => col
                    .typed::<BoolType>()
                    .write_batch(&[true, false], Some(&[1, 1, 0]), None),
                7 => {
                    col.typed::<DoubleType>()
                        .write_batch(&[0.5, f64::NAN], Some(&[1, 0, 1]), None)
                }
                // extra.note: present in row 1, extra null in row 2, note null in row 3.
                _ => col.typed::<ByteArrayType>().write_batch(
                    &text(&[b"kept"]),
                    Some(&[2, 0, 1]),
                    None,
                ),
            }
            .unwrap();
            col.close().unwrap();
            k += 1;
        }
        rg.close().unwrap();
        w.close().unwrap();

        let pq = super::ParquetFile::open(&path).unwrap();
        assert_eq!(
            pq.leaves.len(),
            8,
            "every top-level plain column is read on its own"
        );
        assert!(pq.nested.is_some());
        let mut rows = Vec::new();
        pq.read_group(pq.groups()[0], |at, row| rows.push((at, row)))
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0].1.as_ref().unwrap(),
            json!({"problem": "1+1?", "answer": "2", "level": 1, "count": 4_294_967_295_u64,
                   "day": "2024-02-29", "flag": true, "score": 0.5, "extra": {"note": "kept"}})
            .as_object()
            .unwrap()
        );
        let bad = rows[1].1.as_ref().unwrap_err();
        assert_eq!(bad.field, "answer");
        assert!(bad.reason.contains("not UTF-8"), "{}", bad.reason);
        assert_eq!(
            rows[2].1.as_ref().unwrap(),
            json!({"problem": "3+3?", "level": 3, "count": 8, "big": i64::MIN, "extra": {}})
                .as_object()
                .unwrap(),
            "nulls and NaN are left out"
        );
    }

    #[test]
    fn timestamps_and_dates_read_as_iso_text() {
        use super::{civil_from_days, iso_timestamp};
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            iso_timestamp(1_722_686_400_000, 1_000, false),
            "2024-08-03T12:00:00"
        );
        assert_eq!(
            iso_timestamp(1_722_686_400_123_456, 1_000_000, true),
            "2024-08-03T12:00:00.123456Z"
        );
        assert_eq!(
            iso_timestamp(-1, 1_000_000_000, true),
            "1969-12-31T23:59:59.999999999Z"
        );
        // Far out of chrono's range: text, not a panic.
        assert!(iso_timestamp(i64::MAX, 1, true).starts_with('2'));
    }

    #[test]
    fn parquet_and_jsonl_of_the_same_rows_give_the_same_problems() {
        // DeepScaleR's rows as JSONL and as parquet: same problems, ids included (the
        // content id does not depend on the container).
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("deepscaler.jsonl");
        let pq = load("deepscaler.parquet");
        let text: Vec<String> = [
            json!({"problem": "Let $a+b=5$ and $ab=6$. Find $a^2+b^2$.", "answer": "13", "solution": "$(a+b)^2-2ab=13$."}),
            json!({"problem": "What is the sum of the first 10 positive integers?", "answer": "55"}),
            json!({"problem": "Find $\\sqrt{144}$.", "answer": "12", "solution": "$12^2=144$."}),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        std::fs::write(&jsonl, text.join("\n")).unwrap();
        let js = Loaded::read_files(&[jsonl], FormatChoice::Auto).unwrap();
        assert_eq!(js.problems, pq.problems);
    }
}
