//! `logs` kinds.
