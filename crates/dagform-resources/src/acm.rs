//! `acm` kinds.
