//! gradus-actors (work in progress).
