//! `iam` kinds.
