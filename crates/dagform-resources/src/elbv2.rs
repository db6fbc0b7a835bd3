//! `elbv2` kinds.
