//! `route53` kinds.
