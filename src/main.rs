//! The `gradus` command line.
fn main() {}
