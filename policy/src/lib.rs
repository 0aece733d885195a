//! gradus-policy (work in progress).
