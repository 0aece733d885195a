//! gradus-sandbox (work in progress).
