//! Eddy worker (in progress).
