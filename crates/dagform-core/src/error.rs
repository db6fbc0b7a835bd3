//! The engine's error type, and the error a resource kind reports.

use crate::address::Address;
use std::path::PathBuf;

/// What a resource kind's operation reports when it fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResourceError {
    /// Eventual consistency or a dependency still draining: the reconciler retries with
    /// backoff and jitter, bounded in time.
    #[error("{0}")]
    Transient(String),
    /// The desired properties cannot be applied as given.
    #[error("invalid properties: {0}")]
    InvalidProperties(String),
    /// A wait (an object becoming available, a certificate being issued) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The object exists but belongs to another stack, another resource or nobody: dagform
    /// leaves it alone. Not retried.
    #[error("{0}")]
    NotOwned(String),
    /// The run was interrupted (Ctrl-C) while this step waited: the object is where the state
    /// says (a create keeps its recorded intent), and the next run carries on from there.
    #[error("interrupted while waiting for {0}")]
    Interrupted(String),
    /// Anything else; not retried.
    #[error("{0}")]
    Failed(String),
}

impl ResourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ResourceError::Transient(_))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ResourceError::InvalidProperties(message.into())
    }

    pub fn failed(message: impl Into<String>) -> Self {
        ResourceError::Failed(message.into())
    }
}

impl From<serde_json::Error> for ResourceError {
    fn from(e: serde_json::Error) -> Self {
        ResourceError::InvalidProperties(e.to_string())
    }
}

/// Errors of the engine: graph construction, planning, state storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("duplicate node address `{0}`")]
    DuplicateAddress(Address),
    #[error("`{from}` refers to `{to}`, which is not in the graph")]
    UnknownReference { from: Address, to: Address },
    #[error("dependency cycle: {}", cycle.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" -> "))]
    Cycle { cycle: Vec<Address> },
    #[error("`{address}` has kind `{kind}`, which this build of dagform does not know")]
    UnknownKind { address: Address, kind: String },
    #[error("state {location}: {message}")]
    StateCorrupt { location: String, message: String },
    #[error(
        "state {location} has format version {found}, newer than this dagform understands ({supported}); upgrade dagform"
    )]
    StateTooNew {
        location: String,
        found: u32,
        supported: u32,
    },
    #[error("state {location} belongs to stack `{found}`, not `{expected}`; pass another --state")]
    StateStackMismatch {
        location: String,
        found: String,
        expected: String,
    },
    #[error(
        "state {path} is locked by another dagform run (pid {pid} on {host}, since {since}); wait for it to finish"
    )]
    StateLocked {
        path: PathBuf,
        pid: u32,
        host: String,
        since: String,
    },
    #[error("state file {path}: {source}")]
    StateIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state's remote store (S3) failed or refused a call.
    #[error("state {location}: {message}")]
    StateRemote { location: String, message: String },
    /// A conditional write of the state found another writer's version in place: nothing of
    /// either was lost, and this run stops rather than overwrite it.
    #[error(
        "state {location} was changed by another writer since this run read it ({message}); nothing was overwritten: run again to work from the new state"
    )]
    StateConflict { location: String, message: String },
    /// The remote state's lock object is held.
    #[error(
        "state {location} is locked by {who} (operation `{operation}`, since {since}; lock id {id}); wait for it to finish, pass --lock-timeout to wait, or if that run is dead: dagform force-unlock {id}"
    )]
    StateLockHeld {
        location: String,
        id: String,
        who: String,
        operation: String,
        since: String,
    },
    #[error("`{address}`: {message}")]
    Plan { address: Address, message: String },
    #[error("refreshing `{address}`: {source}")]
    Refresh {
        address: Address,
        #[source]
        source: ResourceError,
    },
}
