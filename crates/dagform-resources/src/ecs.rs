//! `ecs` kinds.
