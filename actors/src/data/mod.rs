//! Training data: the [`Problem`] type, gradus's JSONL format, the importers for public
//! dataset shapes, and the rejects that malformed rows become.
//!
//! gradus's own format is one [`Problem`] per line as JSON (see the README's "Data formats").
//! The public shapes are read by [`import`], from JSONL or from [`parquet`] (each parquet row
//! becomes the same JSON row); [`load::Loaded`] reads whole files, collects rejects with
//! file:line (file:row N for parquet) and field, and refuses duplicate ids.

pub mod dedup;
pub mod import;
pub mod load;
pub mod parquet;
pub mod problem;
pub mod template;

pub use import::{Format, FormatChoice};
pub use load::{DataError, Loaded, Origin, Reject, Unit};
pub use problem::{Compare, Difficulty, Domain, FieldError, Problem, StdioCase, Tests};
pub use template::{Applied, Templates};
