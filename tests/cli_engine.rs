//! The command line's contract: errors before any AWS call, exit codes, confirmation rules,
//! the state lock, and interruption — the real binary against a private emulator.

mod support;
