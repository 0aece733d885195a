//! End-to-end tests: gradus grade (scaffolding until its owner fills it).
