//! `rds` kinds.
