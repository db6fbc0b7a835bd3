//! `secretsmanager` kinds.
