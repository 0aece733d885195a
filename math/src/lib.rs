//! gradus-math (work in progress).
