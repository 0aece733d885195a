//! End-to-end tests: gradus data (scaffolding until its owner fills it).
