//! `ecr` kinds.
