//! End-to-end tests: gradus sandbox (scaffolding until its owner fills it).
