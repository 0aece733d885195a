//! End-to-end tests of the gradus binary.
