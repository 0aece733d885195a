//! The curriculum (in progress).
