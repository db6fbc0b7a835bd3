//! The JSON state file: what dagform created, with ids, applied properties, outputs and
//! recorded dependencies.
//!
//! `state/<stack>.json` is always replaced atomically (temp file, fsync, rename). Between
//! those full writes every operation is appended to `<state>.journal` and fsynced, so a run
//! records each result at once without rewriting the whole file per resource; the journal is
//! folded into the main file when it grows as large as the state and at the end of a run.
//!
//! A stack's state is kept in [`Part`]s: the shared part in that file, and each customer's in
//! `state/<stack>.json.customers/NAME.json`, each with its own journal, lock and serial, so runs
//! limited to different customers write side by side (see [`WriteScope`]).

use crate::address::Address;
use crate::error::Error;
use crate::kind::{Outputs, Properties};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The state format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Incremented on every recorded change.
    pub serial: u64,
    /// Identifies one stack's history; a journal of another lineage is never replayed onto it.
    pub lineage: Uuid,
    pub stack: String,
    /// The AWS account the stack's objects live in, recorded by the first run that wrote to
    /// AWS: a run with another account's credentials is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub resources: BTreeMap<Address, ResourceState>,
    /// The serial of each part this state was put together from (see [`Part`]); empty for a
    /// state kept in one document.
    #[serde(skip)]
    pub part_serials: BTreeMap<Part, u64>,
}

impl State {
    pub fn new(stack: &str) -> Self {
        Self {
            version: FORMAT_VERSION,
            serial: 0,
            lineage: Uuid::new_v4(),
            stack: stack.to_owned(),
            account_id: None,
            resources: BTreeMap::new(),
            part_serials: BTreeMap::new(),
        }
    }

    pub fn get(&self, address: &Address) -> Option<&ResourceState> {
        self.resources.get(address)
    }

    /// The recorded addresses that are `prefix` or lie below it.
    pub fn addresses_within(&self, prefix: &str) -> Vec<&Address> {
        self.resources
            .keys()
            .filter(|a| a.is_within(prefix))
            .collect()
    }

    /// The records to write to move every address within `from` to the same place under
    /// `to`, in order: the moved records at their new addresses, then every record whose
    /// dependencies named a moved address, rewritten, then `None` for each old address. The
    /// caller checks that the new addresses are free.
    pub fn renamed(&self, from: &str, to: &str) -> Vec<(Address, Option<ResourceState>)> {
        let moved: BTreeMap<&Address, Address> = self
            .addresses_within(from)
            .into_iter()
            .map(|a| {
                (
                    a,
                    Address::new(format!("{to}{}", &a.as_str()[from.len()..])),
                )
            })
            .collect();
        let rewrite = |r: &ResourceState| {
            let mut r = r.clone();
            for dep in &mut r.dependencies {
                if let Some(new) = moved.get(dep) {
                    *dep = new.clone();
                }
            }
            r
        };
        let mut writes: Vec<(Address, Option<ResourceState>)> = moved
            .iter()
            .map(|(old, new)| (new.clone(), Some(rewrite(&self.resources[*old]))))
            .collect();
        writes.extend(
            self.resources
                .iter()
                .filter(|(a, r)| {
                    !moved.contains_key(a) && r.dependencies.iter().any(|d| moved.contains_key(d))
                })
                .map(|(a, r)| (a.clone(), Some(rewrite(r)))),
        );
        writes.extend(moved.keys().map(|old| ((*old).clone(), None)));
        writes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// The create call was about to be made; the object may or may not exist.
    Creating,
    /// The object exists with the recorded id and properties.
    Ready,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub kind: String,
    pub status: ResourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Properties as last applied (secret values replaced by a fingerprint).
    pub properties: Properties,
    #[serde(default)]
    pub outputs: Outputs,
    /// What this resource depended on when applied: destroy order comes from here, not from
    /// today's config.
    #[serde(default)]
    pub dependencies: Vec<Address>,
    /// Replaced objects still to delete (create-before-destroy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<DeposedObject>,
    /// While `Creating`: identifies the intended create. Idempotency tokens derive from it, so
    /// a retry or a re-run of the same intent presents the same token to AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeposedObject {
    pub id: String,
    pub properties: Properties,
    #[serde(default)]
    pub outputs: Outputs,
}

/// A secret value as stored and shown: a fingerprint from which the value cannot be read back.
pub fn fingerprint(value: &serde_json::Value) -> serde_json::Value {
    let digest = Sha256::digest(value.to_string().as_bytes());
    serde_json::Value::String(format!("sha256:{}", &hex::encode(digest)[..16]))
}

/// Replaces the values of `sensitive` properties with their fingerprints.
pub fn redact(props: &Properties, sensitive: &[&str]) -> Properties {
    let mut out = props.clone();
    for key in sensitive {
        if let Some(v) = out.get_mut(*key)
            && !v.is_null()
        {
            *v = fingerprint(v);
        }
    }
    out
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalEntry<Resource = ResourceState, Key = Address> {
    lineage: Uuid,
    serial: u64,
    address: Key,
    /// The resource's new record; `None` when it was removed.
    resource: Option<Resource>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockHolder {
    pid: u32,
    host: String,
    since: String,
}

/// A document (`None` when there is none yet) and its journal's bytes, as stored.
pub type Stored = (Option<String>, Vec<u8>);

/// A part's backend, opened, with what it stored.
pub type OpenedPart = (Box<dyn StateBackend>, Stored);

/// Where a state is kept: a document holding the whole state, and a journal of entries
/// appended after it (each a complete line of JSON). A local file and its `.journal`, or an
/// S3 object and the journal objects beside it. A backend opened for writing holds the state's
/// lock until dropped.
pub trait StateBackend: Send + std::fmt::Debug {
    /// Where the state lives, for messages: a path or an `s3://` URL.
    fn location(&self) -> String;
    /// The document (`None` when there is none yet) and the journal's bytes, as stored.
    fn read(&self) -> Result<Stored, Error>;
    /// Appends complete journal lines, durably, before returning.
    fn append(&mut self, lines: &[u8]) -> Result<(), Error>;
    /// Replaces the document, durably, and then empties the journal.
    fn replace(&mut self, document: &[u8]) -> Result<(), Error>;
    /// Whether a run folds the journal into the document before it ends. Worth it where each
    /// batch in the journal costs a request of its own to read (an object each); a journal
    /// read in one go is folded only once it is as long as the document.
    fn folds_when_a_run_ends(&self) -> bool;
}

/// Which part of a stack's state keeps an address. A stack's state is kept in parts, each
/// with its own document, journal, lock and serial: one per customer (everything under
/// `customer.NAME`) and the shared part (everything else). Runs limited to different customers
/// so write side by side, while a run that may change shared resources holds every part.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    // Customers sort first: a commit writes them before the shared part (see `commit`).
    Customer(String),
    Shared,
}

impl Part {
    /// The part `address` is kept in.
    pub fn of(address: &Address) -> Self {
        let mut segments = address.as_str().splitn(3, '.');
        match (segments.next(), segments.next()) {
            (Some("customer"), Some(name)) if !name.is_empty() => Self::Customer(name.to_owned()),
            _ => Self::Shared,
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shared => f.write_str("the shared part"),
            Self::Customer(name) => write!(f, "the part of customer `{name}`"),
        }
    }
}

/// How a run opens a part of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Written under the part's own lock, taken now (a held one fails at once, naming its
    /// holder).
    Lock,
    /// Written under the shared part's lock, which the run holds: a backend whose own locks
    /// cost nothing may still take the part's, one whose locks are remote calls need not.
    Guarded,
}

/// Where the parts of one stack's state are kept, and how their locks are taken.
pub trait StateParts: Send + std::fmt::Debug {
    /// Where the shared part lives, for messages.
    fn location(&self) -> String;
    /// `part`'s backend, opened for `access`.
    fn open(&self, part: &Part, access: Access) -> Result<Box<dyn StateBackend>, Error>;
    /// Opens and reads each of `parts`, as `open` and then `read` do, in order; a backend
    /// whose reads are remote calls does them concurrently.
    fn open_all(&self, parts: &[Part], access: Access) -> Result<Vec<OpenedPart>, Error> {
        parts
            .iter()
            .map(|part| {
                let backend = self.open(part, access)?;
                let stored = backend.read()?;
                Ok((backend, stored))
            })
            .collect()
    }
    /// The customers that have a part.
    fn customers(&self) -> Result<Vec<String>, Error>;
    /// Fails, naming the holder, while another run holds `part`'s lock.
    fn ensure_unlocked(&self, part: &Part) -> Result<(), Error>;
    /// Fails, naming the holder, while a run limited to a customer holds that customer's
    /// lock: taken by a run that may change anything, right after the shared part's lock.
    fn ensure_no_customer_locked(&self) -> Result<(), Error>;
}

/// What a run may change, and so which parts of the state it locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteScope {
    /// Anything: every part is locked, those of `customers` (the configured ones) too even
    /// when they have no part yet, so no customer-limited run can start beside this one.
    Everything { customers: Vec<String> },
    /// Only what lies under `customer.NAME`: that customer's part is locked, the others are
    /// read, and the run is refused while another holds the shared part.
    Customer(String),
}

/// A state on the local disk: the shared part at `path` (e.g. `state/prod.json`) and each
/// customer's part at `state/prod.customers/NAME.json`, each with its `.journal` and `.lock`.
#[derive(Debug, Clone)]
pub struct FileParts {
    path: PathBuf,
}

impl FileParts {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    fn customers_dir(&self) -> PathBuf {
        sibling(&self.path, ".customers")
    }

    pub fn part_path(&self, part: &Part) -> PathBuf {
        match part {
            Part::Shared => self.path.clone(),
            Part::Customer(name) => self.customers_dir().join(format!("{name}.json")),
        }
    }
}

impl StateParts for FileParts {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// A local lock costs nothing, so a guarded part takes its own lock too.
    fn open(&self, part: &Part, access: Access) -> Result<Box<dyn StateBackend>, Error> {
        let path = self.part_path(part);
        Ok(Box::new(match access {
            Access::Read => FileBackend::reader(&path),
            Access::Lock | Access::Guarded => FileBackend::locked(&path)?,
        }))
    }

    fn customers(&self) -> Result<Vec<String>, Error> {
        let dir = self.customers_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.map_err(io_err(&dir))?.file_name();
            if let Some(customer) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && !customer.starts_with('.')
            {
                names.push(customer.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn ensure_no_customer_locked(&self) -> Result<(), Error> {
        let dir = self.customers_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries {
            let name = entry.map_err(io_err(&dir))?.file_name();
            if let Some(customer) = name.to_str().and_then(|n| n.strip_suffix(".json.lock")) {
                self.ensure_unlocked(&Part::Customer(customer.to_owned()))?;
            }
        }
        Ok(())
    }

    fn ensure_unlocked(&self, part: &Part) -> Result<(), Error> {
        let path = self.part_path(part);
        let lock_path = sibling(&path, ".lock");
        let file = match File::open(&lock_path) {
            Ok(f) => f,
            // Never locked, so not locked now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&lock_path)(e)),
        };
        // A shared lock, released at once: it only fails while a writer holds the lock.
        match file.try_lock_shared() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(FileBackend::held(&path)),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&lock_path)(e)),
        }
    }
}

/// A state opened for writing: holds the locks of the parts it may change until dropped.
#[derive(Debug)]
pub struct StateStore {
    parts: BTreeMap<Part, PartStore>,
    /// Whether customers' resources are kept in parts of their own (`open_parts`) or with
    /// everything else in one document (`open_in`).
    split: bool,
    /// Opens a part this run has not opened yet; kept only by a run that may change anything.
    source: Option<Box<dyn StateParts>>,
    /// Every part put together: what the run reads.
    state: State,
    /// Addresses staged in a part this run holds no lock on, refused at the next commit.
    refused: Vec<Address>,
    commits: u64,
    writing: Duration,
}

/// One part of a state, as read, and what was staged for it.
#[derive(Debug)]
struct PartStore {
    backend: Box<dyn StateBackend>,
    writable: bool,
    /// Whether the part has a document yet: a new part is written whole by its first commit.
    stored: bool,
    state: State,
    journal_entries: usize,
    staged: Staged,
}

/// Journal lines recorded in memory and not yet stored (see `StateStore::commit`).
#[derive(Debug, Default)]
struct Staged {
    lines: Vec<u8>,
    entries: usize,
    /// Whether an entry removes a record, which may be on its way to another part.
    removal: bool,
}

impl Staged {
    /// Appends the entry recording that `address` is now `resource` (`None`: gone), a line of
    /// its own, written from borrowed data: the same line as an owned entry, without a copy.
    fn push(
        &mut self,
        lineage: Uuid,
        serial: u64,
        address: &Address,
        resource: Option<&ResourceState>,
    ) {
        let entry = JournalEntry {
            lineage,
            serial,
            address,
            resource,
        };
        serde_json::to_writer(&mut self.lines, &entry).expect("state is plain data");
        self.lines.push(b'\n');
        self.entries += 1;
        self.removal |= resource.is_none();
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Forgets what was staged, once it is stored (or replaced by a whole new state).
    fn clear(&mut self) {
        self.lines.clear();
        self.entries = 0;
        self.removal = false;
    }
}

impl PartStore {
    fn read(backend: Box<dyn StateBackend>, writable: bool, stack: &str) -> Result<Self, Error> {
        let stored = backend.read()?;
        Self::of(backend, stored, writable, stack)
    }

    fn of(
        backend: Box<dyn StateBackend>,
        stored: Stored,
        writable: bool,
        stack: &str,
    ) -> Result<Self, Error> {
        let (state, replayed, stored) = match parse_state(backend.location(), stored)? {
            Some((s, _)) if s.stack != stack => {
                return Err(Error::StateStackMismatch {
                    location: backend.location(),
                    found: s.stack,
                    expected: stack.to_owned(),
                });
            }
            Some((s, replayed)) => (s, replayed, true),
            None => (State::new(stack), 0, false),
        };
        Ok(Self {
            backend,
            writable,
            stored,
            state,
            journal_entries: replayed,
            staged: Staged::default(),
        })
    }

    fn stage(&mut self, address: Address, resource: Option<ResourceState>) {
        self.state.serial += 1;
        self.staged.push(
            self.state.lineage,
            self.state.serial,
            &address,
            resource.as_ref(),
        );
        match resource {
            Some(r) => self.state.resources.insert(address, r),
            None => self.state.resources.remove(&address),
        };
    }

    /// Stages `edit` of the record at `address` (`edited` is the record as edited, should
    /// this part not hold it).
    fn stage_edit(
        &mut self,
        address: &Address,
        edit: impl Fn(&mut ResourceState),
        edited: &ResourceState,
    ) {
        match self.state.resources.get_mut(address) {
            Some(record) => edit(record),
            None => {
                self.state.resources.insert(address.clone(), edited.clone());
            }
        }
        self.state.serial += 1;
        self.staged.push(
            self.state.lineage,
            self.state.serial,
            address,
            self.state.resources.get(address),
        );
    }

    /// Stores what was staged: one journal append, or the whole document for a part that
    /// has none yet or whose journal has grown as long as the part itself (which keeps the
    /// total work linear in the number of operations).
    fn commit(&mut self) -> Result<(), Error> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if !self.stored {
            return self.persist();
        }
        self.backend.append(&self.staged.lines)?;
        self.journal_entries += self.staged.entries;
        self.staged.clear();
        if self.journal_entries > self.state.resources.len().max(64) {
            self.persist()?;
        }
        Ok(())
    }

    /// Whether the part is to have a document at all: the shared part always (it carries the
    /// state's history), a customer's part once it holds something or has one already.
    fn worth_a_document(&self, part: &Part) -> bool {
        self.writable && (self.stored || *part == Part::Shared || !self.state.resources.is_empty())
    }

    /// Whether a full write would change what is stored: something staged or journaled since
    /// the document was written, or a part that is to have a document and has none yet.
    fn needs_writing(&self, part: &Part) -> bool {
        self.writable
            && (!self.staged.is_empty()
                || self.journal_entries > 0
                || (!self.stored && self.worth_a_document(part)))
    }

    fn persist(&mut self) -> Result<(), Error> {
        let mut document = serde_json::to_vec_pretty(&self.state).expect("state is plain data");
        document.push(b'\n');
        self.backend.replace(&document)?;
        self.stored = true;
        self.journal_entries = 0;
        // The full write holds everything staged too.
        self.staged.clear();
        Ok(())
    }
}

/// Puts the parts of a state together: the shared part's history and account, every part's
/// resources (a customer's own part wins over a copy the shared part still holds from before
/// customers had parts), and a serial that grows with every change to any part. Refuses a
/// customer part of another history.
fn assemble<'p>(
    stack: &str,
    shared: &State,
    customers: impl Iterator<Item = (&'p str, &'p State, String)>,
) -> Result<State, Error> {
    let mut state = shared.clone();
    state.part_serials = BTreeMap::from([(Part::Shared, shared.serial)]);
    for (name, part, location) in customers {
        if part.lineage != shared.lineage && (part.serial > 0 || !part.resources.is_empty()) {
            return Err(Error::StateConflict {
                location,
                message: format!(
                    "the part of customer `{name}` belongs to another state of stack `{stack}` \
                     (lineage {}, not {}); it was not read",
                    part.lineage, shared.lineage
                ),
            });
        }
        state.serial += part.serial;
        state
            .part_serials
            .insert(Part::Customer(name.to_owned()), part.serial);
        state.resources.extend(
            part.resources
                .iter()
                .map(|(address, r)| (address.clone(), r.clone())),
        );
    }
    Ok(state)
}

/// A state file and its journal on the local disk.
#[derive(Debug)]
pub struct FileBackend {
    path: PathBuf,
    /// Open for appending when the backend writes; `None` for a reader.
    journal: Option<File>,
    _lock: Option<File>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::StateIo {
        path: path.to_owned(),
        source,
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .append(append)
        .mode(0o600)
        .open(path)
}

impl FileBackend {
    /// The state file at `path`, locked for writing: a second writer fails at once with an
    /// error naming the holder. A torn journal tail (a write a crash interrupted) is cut off
    /// before anything is appended after it.
    pub fn locked(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(path))?;
        }
        let lock = Self::lock(path)?;
        let journal_path = sibling(path, ".journal");
        let journal = open_private(&journal_path, true).map_err(io_err(&journal_path))?;
        // Shrinking a file needs no free space, so this works on a full disk too.
        let bytes = std::fs::read(&journal_path).map_err(io_err(&journal_path))?;
        let complete = complete_len(&bytes) as u64;
        if bytes.len() as u64 > complete {
            journal
                .set_len(complete)
                .and_then(|()| journal.sync_data())
                .map_err(io_err(&journal_path))?;
        }
        Ok(Self {
            path: path.to_owned(),
            journal: Some(journal),
            _lock: Some(lock),
        })
    }

    /// The state file at `path`, for reading only, without its lock.
    pub fn reader(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            journal: None,
            _lock: None,
        }
    }

    /// The refusal of a second writer, naming the run that holds the lock of `path`.
    fn held(path: &Path) -> Error {
        let text = std::fs::read_to_string(sibling(path, ".lock")).unwrap_or_default();
        let holder: LockHolder = serde_json::from_str(&text).unwrap_or(LockHolder {
            pid: 0,
            host: "unknown host".into(),
            since: "unknown time".into(),
        });
        Error::StateLocked {
            path: path.to_owned(),
            pid: holder.pid,
            host: holder.host,
            since: holder.since,
        }
    }

    fn lock(path: &Path) -> Result<File, Error> {
        let lock_path = sibling(path, ".lock");
        let mut file = open_private(&lock_path, false).map_err(io_err(&lock_path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Self::held(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let holder = LockHolder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        // Naming the holder is a courtesy to a second writer; the lock itself is already held,
        // so a full disk must not stop the run here.
        let named = file.set_len(0).and_then(|()| {
            file.write_all(
                serde_json::to_string(&holder)
                    .expect("plain data")
                    .as_bytes(),
            )
        });
        if let Err(e) = named {
            tracing::debug!(
                "could not name the lock holder in {}: {e}",
                lock_path.display()
            );
        }
        Ok(file)
    }

    fn writable_journal(&mut self) -> &mut File {
        self.journal
            .as_mut()
            .expect("a state opened for reading is never written")
    }
}

impl StateBackend for FileBackend {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<(Option<String>, Vec<u8>), Error> {
        let document = match std::fs::read_to_string(&self.path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let journal_path = sibling(&self.path, ".journal");
        let journal = match std::fs::read(&journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&journal_path)(e)),
        };
        Ok((document, journal))
    }

    fn append(&mut self, lines: &[u8]) -> Result<(), Error> {
        let journal_path = sibling(&self.path, ".journal");
        let journal = self.writable_journal();
        journal
            .write_all(lines)
            .and_then(|()| journal.sync_data())
            .map_err(io_err(&journal_path))
    }

    /// A local journal is one read: folding it at every run's end would only add a full
    /// write of every part changed to the end of each run.
    fn folds_when_a_run_ends(&self) -> bool {
        false
    }

    fn replace(&mut self, document: &[u8]) -> Result<(), Error> {
        write_atomically(&self.path, |w| w.write_all(document))?;
        let journal_path = sibling(&self.path, ".journal");
        let journal = self.writable_journal();
        journal
            .set_len(0)
            .and_then(|()| journal.sync_data())
            .map_err(io_err(&journal_path))
    }
}

/// How many bytes of `journal` are complete lines: every entry is written as one line ending
/// in `\n`, so bytes after the last `\n` are a write a crash or a full disk interrupted.
fn complete_len(journal: &[u8]) -> usize {
    journal
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// The complete entries of a journal. That write never happened and is ignored (it may end
/// inside a multi-byte character, so the journal is read as bytes). A complete line that does
/// not parse is corruption.
fn journal_entries(location: &str, journal: &[u8]) -> Result<Vec<JournalEntry>, Error> {
    journal[..complete_len(journal)]
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| Error::StateCorrupt {
                location: location.to_owned(),
                message: format!("journal line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// The state a backend holds (document plus journal), and how many journal entries it has;
/// `None` when there is none yet.
fn read_state(backend: &dyn StateBackend) -> Result<Option<(State, usize)>, Error> {
    parse_state(backend.location(), backend.read()?)
}

/// The state in a document and journal as [`StateBackend::read`] returns them.
fn parse_state(
    location: String,
    (document, journal): Stored,
) -> Result<Option<(State, usize)>, Error> {
    let mut state = match document {
        Some(t) => {
            #[derive(Deserialize)]
            struct Version {
                version: u32,
            }
            let v: Version = serde_json::from_str(&t).map_err(|e| Error::StateCorrupt {
                location: location.clone(),
                message: e.to_string(),
            })?;
            if v.version > FORMAT_VERSION {
                return Err(Error::StateTooNew {
                    location,
                    found: v.version,
                    supported: FORMAT_VERSION,
                });
            }
            Some(
                serde_json::from_str::<State>(&t).map_err(|e| Error::StateCorrupt {
                    location: location.clone(),
                    message: e.to_string(),
                })?,
            )
        }
        None => None,
    };
    let entries = journal_entries(&location, &journal)?;
    let replayed = entries.len();
    for entry in entries {
        let s = state.get_or_insert_with(|| State {
            lineage: entry.lineage,
            ..State::new("")
        });
        if entry.lineage != s.lineage || entry.serial <= s.serial {
            continue;
        }
        s.serial = entry.serial;
        match entry.resource {
            Some(r) => s.resources.insert(entry.address, r),
            None => s.resources.remove(&entry.address),
        };
    }
    Ok(state.map(|s| (s, replayed)))
}

impl StateStore {
    /// Opens (or starts) the state of `stack` in the file at `path`, in one document, taking
    /// its lock. A second writer fails at once with an error naming the holder.
    pub fn open(path: &Path, stack: &str) -> Result<Self, Error> {
        Self::open_in(Box::new(FileBackend::locked(path)?), stack)
    }

    /// Opens (or starts) the state of `stack` kept whole by `backend`, which holds its lock.
    pub fn open_in(backend: Box<dyn StateBackend>, stack: &str) -> Result<Self, Error> {
        let part = PartStore::read(backend, true, stack)?;
        let mut store = Self {
            state: part.state.clone(),
            parts: BTreeMap::from([(Part::Shared, part)]),
            split: false,
            source: None,
            refused: Vec::new(),
            commits: 0,
            writing: Duration::ZERO,
        };
        store.settle()?;
        Ok(store)
    }

    /// Opens (or starts) the state of `stack` kept in parts by `source`, taking the locks of
    /// the parts `scope` may change (see [`WriteScope`]). Any lock held by another run fails
    /// the open at once, with every lock taken so far released; the caller may retry.
    ///
    /// A state from before customers had parts keeps them in the shared document. The first
    /// run that opens it moves them into their parts, holding every lock for that run (a run
    /// limited to one customer included); so does the first run of a stack never provisioned.
    pub fn open_parts(
        source: Box<dyn StateParts>,
        stack: &str,
        scope: &WriteScope,
    ) -> Result<Self, Error> {
        let mut parts = BTreeMap::new();
        let everything = match scope {
            WriteScope::Everything {
                customers: configured,
            } => {
                let shared =
                    PartStore::read(source.open(&Part::Shared, Access::Lock)?, true, stack)?;
                source.ensure_no_customer_locked()?;
                let mut names: std::collections::BTreeSet<String> = source
                    .customers()?
                    .into_iter()
                    .chain(configured.iter().cloned())
                    .collect();
                // Customers the shared document still keeps, from before parts.
                names.extend(
                    shared
                        .state
                        .resources
                        .keys()
                        .filter_map(|a| match Part::of(a) {
                            Part::Customer(name) => Some(name),
                            Part::Shared => None,
                        }),
                );
                parts.insert(Part::Shared, shared);
                let customers: Vec<Part> = names.into_iter().map(Part::Customer).collect();
                let opened = source.open_all(&customers, Access::Guarded)?;
                for (part, (backend, stored)) in customers.into_iter().zip(opened) {
                    parts.insert(part, PartStore::of(backend, stored, true, stack)?);
                }
                true
            }
            WriteScope::Customer(mine) => {
                let own = Part::Customer(mine.clone());
                let backend = source.open(&own, Access::Lock)?;
                parts.insert(own.clone(), PartStore::read(backend, true, stack)?);
                // Checked after our own lock is taken: a run holding the shared part either
                // took it first (and is seen here) or sees our lock right after taking it.
                source.ensure_unlocked(&Part::Shared)?;
                let shared =
                    PartStore::read(source.open(&Part::Shared, Access::Read)?, false, stack)?;
                let unsplit = shared
                    .state
                    .resources
                    .keys()
                    .any(|a| Part::of(a) != Part::Shared);
                if !shared.stored || unsplit {
                    drop(parts);
                    let all = WriteScope::Everything {
                        customers: vec![mine.clone()],
                    };
                    return Self::open_parts(source, stack, &all);
                }
                parts.insert(Part::Shared, shared);
                let others: Vec<Part> = source
                    .customers()?
                    .into_iter()
                    .filter(|n| n != mine)
                    .map(Part::Customer)
                    .collect();
                let opened = source.open_all(&others, Access::Read)?;
                for (part, (backend, stored)) in others.into_iter().zip(opened) {
                    parts.insert(part, PartStore::of(backend, stored, false, stack)?);
                }
                false
            }
        };
        // A new part joins the stack's history.
        let lineage = parts[&Part::Shared].state.lineage;
        for part in parts.values_mut().filter(|p| !p.stored) {
            part.state.lineage = lineage;
        }
        let state = assemble_parts(stack, &parts)?;
        let mut store = Self {
            parts,
            split: true,
            source: everything.then_some(source),
            state,
            refused: Vec::new(),
            commits: 0,
            writing: Duration::ZERO,
        };
        store.move_customers_into_their_parts()?;
        store.settle()?;
        Ok(store)
    }

    /// A new state is written at once, which settles its history (lineage); an existing one
    /// is read as it is, so opening it writes nothing: `destroy` still works on a full disk.
    fn settle(&mut self) -> Result<(), Error> {
        match self.parts.get_mut(&Part::Shared) {
            Some(shared) if shared.writable && !shared.stored => shared.persist(),
            _ => Ok(()),
        }
    }

    /// Moves the customers' resources a shared document still holds into their own parts:
    /// their parts are written first, so a crash in between leaves a copy in both, which
    /// reads as the part's and is moved again by the next run.
    fn move_customers_into_their_parts(&mut self) -> Result<(), Error> {
        let Some(shared) = self.parts.get_mut(&Part::Shared) else {
            return Ok(());
        };
        let kept: Vec<(Address, ResourceState)> = shared
            .state
            .resources
            .iter()
            .filter(|(a, _)| Part::of(a) != Part::Shared)
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        for (address, resource) in &kept {
            let part = self
                .parts
                .get_mut(&Part::of(address))
                .expect("every customer in the shared document was opened");
            if !part.state.resources.contains_key(address) {
                part.stage(address.clone(), Some(resource.clone()));
            }
        }
        let shared = self.parts.get_mut(&Part::Shared).expect("checked above");
        for (address, _) in &kept {
            shared.stage(address.clone(), None);
        }
        tracing::info!(
            "moved {} customer resource(s) of {} into their customers' parts",
            kept.len(),
            self.location()
        );
        self.state.serial = self.parts.values().map(|p| p.state.serial).sum();
        self.state.part_serials = self
            .parts
            .iter()
            .map(|(part, p)| (part.clone(), p.state.serial))
            .collect();
        self.commit()
    }

    /// Reads the state at `path` (main file plus journal) without locking; `None` when there
    /// is none yet.
    pub fn load(path: &Path) -> Result<Option<State>, Error> {
        Self::load_from(&FileBackend::reader(path))
    }

    /// Reads the state `backend` keeps, without locking; `None` when there is none yet.
    pub fn load_from(backend: &dyn StateBackend) -> Result<Option<State>, Error> {
        Ok(read_state(backend)?.map(|(s, _)| s))
    }

    /// Reads every part of the state `source` keeps, put together, without locking; `None`
    /// when there is none yet.
    pub fn load_parts(source: &dyn StateParts, stack: &str) -> Result<Option<State>, Error> {
        let all: Vec<Part> = std::iter::once(Part::Shared)
            .chain(source.customers()?.into_iter().map(Part::Customer))
            .collect();
        let opened = source.open_all(&all, Access::Read)?;
        let mut parts = BTreeMap::new();
        for (part, (backend, stored)) in all.into_iter().zip(opened) {
            parts.insert(part, PartStore::of(backend, stored, false, stack)?);
        }
        if parts.values().all(|p| !p.stored) {
            return Ok(None);
        }
        assemble_parts(stack, &parts).map(Some)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Where the state lives: a path or an `s3://` URL (its shared part's, when in parts).
    pub fn location(&self) -> String {
        self.parts[&Part::Shared].backend.location()
    }

    /// The customers whose parts this run holds the lock of, when it holds only some.
    fn scope_description(&self) -> String {
        let held: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, p)| p.writable)
            .map(|(part, _)| part.to_string())
            .collect();
        held.join(", ")
    }

    /// Records a resource's new record durably before returning.
    pub fn put(&mut self, address: Address, resource: ResourceState) -> Result<(), Error> {
        self.stage_put(address, resource);
        self.commit()
    }

    /// Records that a resource no longer exists, durably before returning.
    pub fn remove(&mut self, address: &Address) -> Result<(), Error> {
        self.stage_remove(address);
        self.commit()
    }

    /// Records a resource's new record in memory; it reaches the disk with the next `commit`
    /// (or `persist`), together with everything else staged since the last one.
    pub fn stage_put(&mut self, address: Address, resource: ResourceState) {
        self.stage(address, Some(resource));
    }

    /// Records in memory a change to a resource's record, made in place rather than on a copy;
    /// see `stage_put`. Nothing happens to a resource the state does not hold.
    pub fn stage_edit(&mut self, address: &Address, edit: impl Fn(&mut ResourceState)) {
        if !self.state.resources.contains_key(address) {
            return;
        }
        let part = self.part_of(address);
        let Some(store) = self.parts.get_mut(&part).filter(|p| p.writable) else {
            self.refused.push(address.clone());
            return;
        };
        let record = self
            .state
            .resources
            .get_mut(address)
            .expect("checked above");
        edit(record);
        store.stage_edit(address, edit, record);
        self.count_change(part);
    }

    /// Records in memory that a resource no longer exists; see `stage_put`.
    pub fn stage_remove(&mut self, address: &Address) {
        if self.state.resources.contains_key(address) {
            self.stage(address.clone(), None);
        }
    }

    /// The part the record at `address` is kept in.
    fn part_of(&self, address: &Address) -> Part {
        if self.split {
            Part::of(address)
        } else {
            Part::Shared
        }
    }

    /// Moves the state's version (and its part's) on by one change.
    fn count_change(&mut self, part: Part) {
        self.state.serial += 1;
        if self.split {
            *self.state.part_serials.entry(part).or_default() += 1;
        }
    }

    fn stage(&mut self, address: Address, resource: Option<ResourceState>) {
        let part = self.part_of(&address);
        if !self.parts.contains_key(&part)
            && let Some(source) = &self.source
        {
            // A customer neither configured nor recorded when the run began (`state mv` to a
            // new one): its lock is taken now.
            match source
                .open(&part, Access::Guarded)
                .and_then(|b| PartStore::read(b, true, &self.state.stack))
            {
                Ok(mut opened) => {
                    if !opened.stored {
                        opened.state.lineage = self.state.lineage;
                    }
                    self.parts.insert(part.clone(), opened);
                }
                Err(e) => tracing::debug!("could not open {part} of {}: {e}", self.location()),
            }
        }
        let Some(store) = self.parts.get_mut(&part).filter(|p| p.writable) else {
            self.refused.push(address);
            return;
        };
        store.stage(address.clone(), resource.clone());
        self.count_change(part);
        match resource {
            Some(r) => self.state.resources.insert(address, r),
            None => self.state.resources.remove(&address),
        };
    }

    /// Makes everything staged durable, with one journal append (and one fsync) per part
    /// changed: a run records the results of steps that finished together, or the intents
    /// of creates about to start together, at the cost of one flush per part rather than one
    /// per resource. Every entry is a line of its own, so a crash during an append loses at
    /// most the entries not yet complete, and their calls have not been made (intents) or
    /// are found again (results). A record staged in a part this run holds no lock on is
    /// refused here, and nothing of it was kept.
    pub fn commit(&mut self) -> Result<(), Error> {
        if self.write(|_, p| !p.staged.is_empty(), PartWrite::Commit)? {
            self.commits += 1;
        }
        if let Some(address) = self.refused.first() {
            let message = format!(
                "`{address}` is kept in {}, which this run does not hold the lock of (it \
                 holds {}); it was not recorded. Run without --customer to change it.",
                Part::of(address),
                self.scope_description()
            );
            self.refused.clear();
            return Err(Error::StateConflict {
                location: self.location(),
                message,
            });
        }
        Ok(())
    }

    /// Whether anything staged waits for the next commit.
    pub fn has_staged(&self) -> bool {
        !self.refused.is_empty() || self.parts.values().any(|p| !p.staged.is_empty())
    }

    /// Records the AWS account this state belongs to, with one full write of the shared part
    /// (once in a stack's life). A run that only reads the shared part records nothing.
    pub fn record_account(&mut self, account_id: &str) -> Result<(), Error> {
        if self.state.account_id.as_deref() == Some(account_id) {
            return Ok(());
        }
        let Some(shared) = self.parts.get_mut(&Part::Shared).filter(|p| p.writable) else {
            return Ok(());
        };
        shared.state.account_id = Some(account_id.to_owned());
        self.state.account_id = Some(account_id.to_owned());
        let started = Instant::now();
        shared.persist()?;
        self.writing += started.elapsed();
        Ok(())
    }

    /// Replaces what this store holds with `state`, moved here from another location (`state
    /// migrate`). Refuses, writing nothing, when this location already holds resources of
    /// another lineage or a later version of the same one: that would lose what it records.
    pub fn take_over(&mut self, state: State) -> Result<(), Error> {
        let refuse = |message: String| Error::StateConflict {
            location: self.location(),
            message,
        };
        if state.stack != self.state.stack {
            return Err(refuse(format!(
                "it holds stack `{}`, the state moved here is of stack `{}`",
                self.state.stack, state.stack
            )));
        }
        if self.state.lineage != state.lineage && !self.state.resources.is_empty() {
            return Err(refuse(format!(
                "it already holds {} resource(s) of another state (lineage {}); nothing was overwritten",
                self.state.resources.len(),
                self.state.lineage
            )));
        }
        if self.state.lineage == state.lineage && self.state.serial > state.serial {
            return Err(refuse(format!(
                "it holds a later version of this state (serial {} > {}); nothing was overwritten",
                self.state.serial, state.serial
            )));
        }
        if self.parts.values().any(|p| !p.writable) {
            return Err(refuse(format!(
                "this run holds only {}",
                self.scope_description()
            )));
        }
        if self.split {
            for address in state.resources.keys() {
                let part = Part::of(address);
                if !self.parts.contains_key(&part) {
                    let source = self.source.as_ref().expect("a run holding every part");
                    let backend = source.open(&part, Access::Guarded)?;
                    let opened = PartStore::read(backend, true, &state.stack)?;
                    self.parts.insert(part, opened);
                }
            }
        }
        // The shared part carries the serial; the others start again from nothing, so the
        // whole still reads as `state`'s version.
        for (part, store) in self.parts.iter_mut() {
            let mut mine = State {
                serial: 0,
                account_id: None,
                resources: BTreeMap::new(),
                ..state.clone()
            };
            if *part == Part::Shared {
                mine.serial = state.serial;
                mine.account_id = state.account_id.clone();
            }
            mine.resources = state
                .resources
                .iter()
                .filter(|(a, _)| !self.split || Part::of(a) == *part)
                .map(|(a, r)| (a.clone(), r.clone()))
                .collect();
            store.staged.clear();
            store.state = mine;
        }
        self.state = state;
        // Every part is replaced, changed or not: each that is to have a document is written.
        self.write(|part, p| p.worth_a_document(part), PartWrite::Whole)?;
        Ok(())
    }

    /// How many times staged records were flushed, and the time spent writing the state
    /// (journal appends and full writes) since it was opened.
    pub fn write_stats(&self) -> (u64, Duration) {
        (self.commits, self.writing)
    }

    /// Writes whole, atomically, every part this run holds that changed since its document
    /// was written, and empties their journals: a run that touched a few customers rewrites
    /// those, not all of them (a customer's part that never held anything is not created).
    /// Customers' parts go before the shared part.
    pub fn persist(&mut self) -> Result<(), Error> {
        self.write(|part, p| p.needs_writing(part), PartWrite::Whole)?;
        Ok(())
    }

    /// Ends a run's writing: what is staged is made durable, and a part whose backend folds
    /// when a run ends is written whole (see [`StateBackend::folds_when_a_run_ends`]). The
    /// others keep their journals, which their next commit folds once they are as long as
    /// the part.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.write(
            |part, p| p.backend.folds_when_a_run_ends() && p.needs_writing(part),
            PartWrite::Whole,
        )?;
        self.commit()
    }

    /// [`write_parts`] over this run's parts, its time counted in `write_stats` when it wrote
    /// anything. Returns whether it did.
    fn write(
        &mut self,
        chosen: impl Fn(&Part, &PartStore) -> bool,
        how: PartWrite,
    ) -> Result<bool, Error> {
        let started = Instant::now();
        let wrote = write_parts(&mut self.parts, chosen, how)?;
        if wrote {
            self.writing += started.elapsed();
        }
        Ok(wrote)
    }
}

/// Writes (commits or writes whole) the parts `chosen` picks. The shared part waits for the
/// customers' parts when it is written whole or drops a record: a crash then never leaves a
/// record moved out of the shared part and not yet into its customer's. A commit that only
/// adds and changes records (a walk's) writes every part at once. Returns whether any part
/// was written.
fn write_parts(
    parts: &mut BTreeMap<Part, PartStore>,
    chosen: impl Fn(&Part, &PartStore) -> bool,
    write: PartWrite,
) -> Result<bool, Error> {
    let shared_waits = match write {
        PartWrite::Commit => parts
            .get(&Part::Shared)
            .is_some_and(|shared| shared.staged.removal),
        PartWrite::Whole => true,
    };
    let write = match write {
        PartWrite::Commit => PartStore::commit,
        PartWrite::Whole => PartStore::persist,
    };
    let (shared, customers): (Vec<_>, Vec<_>) = parts
        .iter_mut()
        .filter(|(part, p)| chosen(part, p))
        .partition(|(part, _)| shared_waits && **part == Part::Shared);
    let wrote = !customers.is_empty() || !shared.is_empty();
    together(customers.into_iter().map(|(_, p)| p).collect(), write)?;
    together(shared.into_iter().map(|(_, p)| p).collect(), write)?;
    Ok(wrote)
}

/// How `write_parts` writes a part.
#[derive(Clone, Copy)]
enum PartWrite {
    /// What is staged, appended to the journal (or the whole part, when it is new or its
    /// journal long).
    Commit,
    /// The whole document.
    Whole,
}

/// Parts written at once: their flushes overlap instead of queueing.
const CONCURRENT_WRITES: usize = 32;

/// The threads state parts are written on, started once: a walk commits after nearly every
/// batch of results, and starting threads for each commit cost more than the writes did.
static WRITERS: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .num_threads(CONCURRENT_WRITES)
        .thread_name(|i| format!("dagform-state-writer-{i}"))
        .build()
        .expect("the state writers' threads start")
});

/// Writes `parts` (`write` is a commit or a full write), several at once when there are
/// several: a batch of results may touch every customer, and one flush after another would
/// make recording grow with them. A failed part stops no other: each write is as true of AWS
/// as it was. The writes run inside the caller's Tokio runtime, if any, which a remote backend
/// uses.
fn together(
    mut parts: Vec<&mut PartStore>,
    write: fn(&mut PartStore) -> Result<(), Error>,
) -> Result<(), Error> {
    if parts.len() <= 1 {
        return parts.into_iter().try_for_each(write);
    }
    let runtime = tokio::runtime::Handle::try_current().ok();
    let results: Vec<Result<(), Error>> = WRITERS.install(|| {
        parts
            .par_iter_mut()
            // Each write waits on its own flush: one to a task, so none queues behind another.
            .with_max_len(1)
            .map(|part| {
                let _entered = runtime.as_ref().map(|r| r.enter());
                write(part)
            })
            .collect()
    });
    results.into_iter().collect()
}

/// [`assemble`] over opened parts.
fn assemble_parts(stack: &str, parts: &BTreeMap<Part, PartStore>) -> Result<State, Error> {
    let customers = parts.iter().filter_map(|(part, p)| match part {
        Part::Customer(name) => Some((name.as_str(), &p.state, p.backend.location())),
        Part::Shared => None,
    });
    assemble(stack, &parts[&Part::Shared].state, customers)
}

impl Drop for StateStore {
    /// What was staged and not committed (a run ended by an error between the two) is still
    /// true of AWS: it is written rather than lost.
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!(
                "could not record the last changes in {}: {e}",
                self.location()
            );
        }
    }
}

/// Writes `path` through a temp file in the same folder, fsynced and renamed over it, so a
/// crash at any point leaves either the old file or the new one, never a mix. Mode 0600.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".dagform-state-")
        .tempfile_in(dir)
        .map_err(io_err(path))?;
    write(tmp.as_file_mut()).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn resource(id: &str) -> ResourceState {
        ResourceState {
            kind: "test".into(),
            status: ResourceStatus::Ready,
            id: Some(id.into()),
            properties: json!({"name": id}).as_object().unwrap().clone(),
            outputs: Properties::new(),
            dependencies: vec![],
            deposed: vec![],
            intent: None,
        }
    }

    #[test]
    fn records_survive_reopen_and_serial_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/s.json");
        let lineage;
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("a".into(), resource("a")).unwrap();
            store.put("b".into(), resource("b")).unwrap();
            store.remove(&"a".into()).unwrap();
            assert_eq!(store.state().serial, 3);
            lineage = store.state().lineage;
            // Dropped without persist: the journal carries the records.
        }
        let state = StateStore::load(&path).unwrap().unwrap();
        assert_eq!(state.serial, 3);
        assert_eq!(state.lineage, lineage);
        assert_eq!(
            state.resources.keys().collect::<Vec<_>>(),
            [&Address::from("b")]
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let journal = std::fs::metadata(sibling(&path, ".journal")).unwrap();
        assert_eq!(journal.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn staged_records_reach_the_disk_together_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let journal = sibling(&path, ".journal");
        let mut store = StateStore::open(&path, "s").unwrap();
        let (commits_before, _) = store.write_stats();
        for name in ["a", "b", "c"] {
            store.stage_put(name.into(), resource(name));
        }
        store.stage_remove(&"b".into());
        // Staged: visible in memory, not yet on disk.
        assert_eq!(store.state().resources.len(), 2);
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
        assert!(
            StateStore::load(&path)
                .unwrap()
                .unwrap()
                .resources
                .is_empty()
        );

        store.commit().unwrap();
        let (commits, _) = store.write_stats();
        assert_eq!(
            commits - commits_before,
            1,
            "one flush for the four records"
        );
        let text = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(text.lines().count(), 4);
        let state = StateStore::load(&path).unwrap().unwrap();
        assert_eq!(state.serial, 4);
        assert_eq!(
            state.resources.keys().collect::<Vec<_>>(),
            [&Address::from("a"), &Address::from("c")]
        );
        // Nothing staged: a commit writes nothing.
        store.commit().unwrap();
        assert_eq!(store.write_stats().0, commits);
    }

    /// A file backend that folds its journal when a run ends, as a remote one does.
    #[derive(Debug)]
    struct FoldingFile(FileBackend);

    impl StateBackend for FoldingFile {
        fn location(&self) -> String {
            self.0.location()
        }
        fn read(&self) -> Result<Stored, Error> {
            self.0.read()
        }
        fn append(&mut self, lines: &[u8]) -> Result<(), Error> {
            self.0.append(lines)
        }
        fn replace(&mut self, document: &[u8]) -> Result<(), Error> {
            self.0.replace(document)
        }
        fn folds_when_a_run_ends(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_run_ends_with_a_fold_only_where_the_backend_asks_for_one() {
        let dir = tempfile::tempdir().unwrap();
        for folds in [false, true] {
            let path = dir.path().join(format!("folds-{folds}.json"));
            let journal = sibling(&path, ".journal");
            let backend = FileBackend::locked(&path).unwrap();
            let backend: Box<dyn StateBackend> = if folds {
                Box::new(FoldingFile(backend))
            } else {
                Box::new(backend)
            };
            let mut store = StateStore::open_in(backend, "s").unwrap();
            // Opening writes the new, empty document; every commit after it appends.
            store.put("a".into(), resource("a")).unwrap();
            store.put("b".into(), resource("b")).unwrap();
            store.stage_put("c".into(), resource("c"));
            store.finish().unwrap();
            let document: State =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let journal_lines = std::fs::read_to_string(&journal).unwrap().lines().count();
            if folds {
                assert_eq!(journal_lines, 0, "folded into the document");
                assert_eq!(document.resources.len(), 3);
            } else {
                assert_eq!(journal_lines, 3, "the records stay in the journal");
                assert!(document.resources.is_empty());
            }
            // Either way the state read back holds all three, at the run's serial.
            drop(store);
            let state = StateStore::load(&path).unwrap().unwrap();
            assert_eq!(state.resources.len(), 3);
            assert_eq!(state.serial, 3);
        }
    }

    #[test]
    fn a_store_dropped_with_staged_records_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.stage_put("a".into(), resource("a"));
        }
        let state = StateStore::load(&path).unwrap().unwrap();
        assert!(state.resources.contains_key(&Address::from("a")));
    }

    #[test]
    fn a_state_moves_only_onto_an_empty_or_older_copy_of_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = StateStore::open(&dir.path().join("a.json"), "s").unwrap();
        source.put("a".into(), resource("a")).unwrap();
        let moved = source.state().clone();

        let target_path = dir.path().join("b.json");
        let mut target = StateStore::open(&target_path, "s").unwrap();
        target.take_over(moved.clone()).unwrap();
        drop(target);
        let read = StateStore::load(&target_path).unwrap().unwrap();
        assert_eq!((read.lineage, read.serial), (moved.lineage, moved.serial));
        assert!(read.resources.contains_key(&Address::from("a")));

        // Moving an older version over it, or another lineage's state, writes nothing.
        let mut target = StateStore::open(&target_path, "s").unwrap();
        target.put("b".into(), resource("b")).unwrap();
        let err = target.take_over(moved.clone()).unwrap_err();
        assert!(err.to_string().contains("later version"), "{err}");
        let mut other = StateStore::open(&dir.path().join("c.json"), "s").unwrap();
        other.put("c".into(), resource("c")).unwrap();
        let err = target.take_over(other.state().clone()).unwrap_err();
        assert!(err.to_string().contains("another state"), "{err}");
        drop(target);
        let read = StateStore::load(&target_path).unwrap().unwrap();
        assert_eq!(read.resources.len(), 2, "a and b, untouched");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "old contents").unwrap();
        let err = write_atomically(&path, |f| {
            f.write_all(b"{\"half\": ")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old contents");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp file must be cleaned up");
    }

    #[test]
    fn a_torn_journal_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("a".into(), resource("a")).unwrap();
        }
        let mut j = OpenOptions::new()
            .append(true)
            .open(sibling(&path, ".journal"))
            .unwrap();
        j.write_all(b"{\"lineage\": \"trunc").unwrap();
        let state = StateStore::load(&path).unwrap().unwrap();
        assert!(state.resources.contains_key(&Address::from("a")));
    }

    #[test]
    fn a_torn_multi_byte_character_is_ignored_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("a".into(), resource("a")).unwrap();
        }
        // An entry cut inside "é" (0xC3 0xA9): invalid UTF-8 at the very end.
        let mut j = OpenOptions::new()
            .append(true)
            .open(sibling(&path, ".journal"))
            .unwrap();
        j.write_all(b"{\"lineage\": \"caf\xC3").unwrap();
        let state = StateStore::load(&path).unwrap().unwrap();
        assert!(state.resources.contains_key(&Address::from("a")));
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_entry_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("a".into(), resource("a")).unwrap();
        }
        let journal = sibling(&path, ".journal");
        let mut j = OpenOptions::new().append(true).open(&journal).unwrap();
        j.write_all(b"{\"lineage\": \"trunc").unwrap();
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("b".into(), resource("b")).unwrap();
        }
        // Were "b" appended after the torn bytes, its line would not parse and the state
        // would be corrupt from here on.
        let state = StateStore::load(&path).unwrap().unwrap();
        assert!(state.resources.contains_key(&Address::from("a")));
        assert!(state.resources.contains_key(&Address::from("b")));
        let text = std::fs::read_to_string(&journal).unwrap();
        assert!(!text.contains("trunc"), "{text}");
    }

    #[test]
    fn a_corrupt_complete_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("a".into(), resource("a")).unwrap();
        }
        let mut j = OpenOptions::new()
            .append(true)
            .open(sibling(&path, ".journal"))
            .unwrap();
        j.write_all(b"not json\n").unwrap();
        let err = StateStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn opening_an_existing_state_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "s").unwrap();
            store.put("a".into(), resource("a")).unwrap();
        }
        let main_before = std::fs::read(&path).unwrap();
        let journal_before = std::fs::read(sibling(&path, ".journal")).unwrap();
        // A read-only folder stands in for a full disk: no new file can be written there.
        let mut ro = std::fs::metadata(dir.path()).unwrap().permissions();
        ro.set_mode(0o500);
        std::fs::set_permissions(dir.path(), ro.clone()).unwrap();
        let opened = StateStore::open(&path, "s");
        ro.set_mode(0o700);
        std::fs::set_permissions(dir.path(), ro).unwrap();
        let store = opened.unwrap();
        assert!(store.state().resources.contains_key(&Address::from("a")));
        drop(store);
        assert_eq!(std::fs::read(&path).unwrap(), main_before);
        assert_eq!(
            std::fs::read(sibling(&path, ".journal")).unwrap(),
            journal_before
        );
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let _held = StateStore::open(&path, "s").unwrap();
        let err = StateStore::open(&path, "s").unwrap_err();
        let Error::StateLocked { pid, host, .. } = &err else {
            panic!("expected a lock error, got {err}")
        };
        assert_eq!(*pid, std::process::id());
        assert!(!host.is_empty());
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        drop(StateStore::open(&path, "s").unwrap());
        StateStore::open(&path, "s").unwrap();
    }

    #[test]
    fn newer_format_is_refused_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let newer = json!({"version": FORMAT_VERSION + 1, "serial": 9, "lineage": Uuid::new_v4(), "stack": "s", "resources": {}, "future": true});
        std::fs::write(&path, newer.to_string()).unwrap();
        let err = StateStore::open(&path, "s").unwrap_err();
        assert!(matches!(err, Error::StateTooNew { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), newer.to_string());
    }

    #[test]
    fn another_stacks_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        StateStore::open(&path, "one").unwrap();
        let err = StateStore::open(&path, "two").unwrap_err();
        assert!(matches!(err, Error::StateStackMismatch { .. }), "{err}");
    }

    #[test]
    fn persisting_stays_linear_in_the_number_of_resources() {
        // Thousands of records must not each rewrite the whole file: the bytes written to the main
        // file stay within a small multiple of its final size.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut store = StateStore::open(&path, "s").unwrap();
        let mut full_writes = 0usize;
        let mut last_len = 0u64;
        for i in 0..2000 {
            store
                .put(format!("n{i}").into(), resource(&format!("n{i}")))
                .unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            if len != last_len {
                full_writes += 1;
                last_len = len;
            }
        }
        store.persist().unwrap();
        assert!(
            full_writes < 20,
            "{full_writes} full rewrites for 2,000 records"
        );
        assert_eq!(
            StateStore::load(&path).unwrap().unwrap().resources.len(),
            2000
        );
    }

    #[test]
    fn renaming_a_prefix_moves_its_records_and_rewrites_dependencies_on_them() {
        let mut state = State::new("s");
        let mut tg = resource("tg-1");
        tg.dependencies = vec!["shared.vpc".into()];
        let mut rule = resource("rule-1");
        rule.dependencies = vec!["c.a.tg.web".into(), "shared.alb".into()];
        let mut service = resource("svc-1");
        service.dependencies = vec!["c.a.tg.web".into()];
        state.resources.insert("c.a.tg.web".into(), tg);
        state.resources.insert("c.a.rule.web".into(), rule);
        state.resources.insert("c.ab.service.web".into(), service);
        state
            .resources
            .insert("shared.vpc".into(), resource("vpc-1"));

        let writes = state.renamed("c.a.tg", "c.a.target_group");
        let mut after = state.clone();
        for (address, record) in writes {
            match record {
                Some(r) => after.resources.insert(address, r),
                None => after.resources.remove(&address),
            };
        }
        let moved = &after.resources[&Address::from("c.a.target_group.web")];
        assert_eq!(moved.id.as_deref(), Some("tg-1"));
        assert_eq!(moved.dependencies, [Address::from("shared.vpc")]);
        assert!(!after.resources.contains_key(&Address::from("c.a.tg.web")));
        assert_eq!(
            after.resources[&Address::from("c.a.rule.web")].dependencies,
            [
                Address::from("c.a.target_group.web"),
                Address::from("shared.alb")
            ]
        );
        assert_eq!(
            after.resources[&Address::from("c.ab.service.web")].dependencies,
            [Address::from("c.a.target_group.web")]
        );
        assert_eq!(after.resources.len(), state.resources.len());
        // `c.ab` is not within `c.a`: only `c.a`'s two records leave.
        let removed: Vec<Address> = state
            .renamed("c.a", "c.x")
            .into_iter()
            .filter(|(_, r)| r.is_none())
            .map(|(a, _)| a)
            .collect();
        assert_eq!(
            removed,
            [Address::from("c.a.rule.web"), Address::from("c.a.tg.web")]
        );
    }

    #[test]
    fn redaction_hides_secret_values() {
        let props = json!({"name": "db", "value": "hunter2"})
            .as_object()
            .unwrap()
            .clone();
        let r = redact(&props, &["value"]);
        assert_eq!(r["name"], "db");
        assert!(!r["value"].to_string().contains("hunter2"));
        assert_eq!(r["value"], fingerprint(&json!("hunter2")));
    }

    fn everything(customers: &[&str]) -> WriteScope {
        WriteScope::Everything {
            customers: customers.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn parts(path: &Path, scope: &WriteScope) -> Result<StateStore, Error> {
        StateStore::open_parts(Box::new(FileParts::new(path)), "s", scope)
    }

    #[test]
    fn addresses_fall_in_their_customers_part_or_the_shared_one() {
        assert_eq!(
            Part::of(&"customer.acme.service.web".into()),
            Part::Customer("acme".into())
        );
        assert_eq!(
            Part::of(&"customer.acme".into()),
            Part::Customer("acme".into())
        );
        assert_eq!(Part::of(&"shared.vpc".into()), Part::Shared);
        assert_eq!(Part::of(&"customers.x".into()), Part::Shared);
    }

    #[test]
    fn runs_limited_to_different_customers_write_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut all = parts(&path, &everything(&["a", "b"])).unwrap();
            all.put("shared.vpc".into(), resource("vpc")).unwrap();
            all.put("customer.a.svc".into(), resource("a1")).unwrap();
        }
        // Both customers' runs hold their own locks at once, and read the shared part.
        let mut a = parts(&path, &WriteScope::Customer("a".into())).unwrap();
        let mut b = parts(&path, &WriteScope::Customer("b".into())).unwrap();
        assert!(a.state().get(&"shared.vpc".into()).is_some());
        a.put("customer.a.tg".into(), resource("a2")).unwrap();
        b.put("customer.b.svc".into(), resource("b1")).unwrap();
        b.remove(&"customer.b.svc".into()).unwrap();
        b.put("customer.b.tg".into(), resource("b2")).unwrap();
        // Neither may change what is not its own, and nothing of it is kept.
        b.stage_put("shared.vpc".into(), resource("other"));
        let refused = b.commit().unwrap_err().to_string();
        assert!(
            refused.contains("`shared.vpc` is kept in the shared part"),
            "{refused}"
        );
        b.stage_put("customer.a.svc".into(), resource("other"));
        assert!(b.commit().is_err());
        assert_eq!(
            b.state()
                .get(&"customer.a.svc".into())
                .unwrap()
                .id
                .as_deref(),
            Some("a1")
        );
        drop((a, b));

        let state = StateStore::load_parts(&FileParts::new(&path), "s")
            .unwrap()
            .unwrap();
        let ids: Vec<_> = state
            .resources
            .values()
            .map(|r| r.id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["a1", "a2", "b2", "vpc"]);
        // Each part is a document of its own, in the stack's one history.
        let b_part = StateStore::load(&dir.path().join("s.json.customers/b.json"))
            .unwrap()
            .unwrap();
        assert_eq!(b_part.lineage, state.lineage);
        assert_eq!(b_part.resources.len(), 1);
        let shared = StateStore::load(&path).unwrap().unwrap();
        assert_eq!(
            shared.resources.len(),
            1,
            "the shared part keeps only shared.vpc"
        );
        // Every change to any part moves the version on.
        assert_eq!(state.serial, 6);
    }

    #[test]
    fn a_part_that_fails_to_be_written_stops_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        // More customers than are written at once, so some writes wait for a writer.
        let customers: Vec<String> = (0..CONCURRENT_WRITES + 8)
            .map(|i| format!("c{i:02}"))
            .collect();
        let names: Vec<&str> = customers.iter().map(String::as_str).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut store = parts(&path, &everything(&names)).unwrap();
            // The first write of c07's part (a new document) cannot replace a directory.
            let blocked = dir.path().join("s.json.customers/c07.json");
            std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
            for c in &customers {
                store.stage_put(format!("customer.{c}.svc").into(), resource(c));
            }
            let err = store.commit().unwrap_err().to_string();
            assert!(err.contains("c07.json"), "{err}");
            for c in customers.iter().filter(|c| *c != "c07") {
                let part = dir.path().join(format!("s.json.customers/{c}.json"));
                let written = StateStore::load(&part).unwrap().unwrap();
                assert!(
                    written
                        .resources
                        .contains_key(&Address::from(format!("customer.{c}.svc")))
                );
            }
            // The failed part keeps what it staged: once the way is clear, it is written too.
            std::fs::remove_dir_all(&blocked).unwrap();
            store.commit().unwrap();
            let c07 = StateStore::load(&blocked).unwrap().unwrap();
            assert!(
                c07.resources
                    .contains_key(&Address::from("customer.c07.svc"))
            );
        });
    }

    #[test]
    fn the_shared_part_waits_for_the_customers_only_when_it_drops_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        // The shared part alone, as stored: its document and journal.
        let shared = || StateStore::load(&path).unwrap().unwrap();
        let mut store = parts(&path, &everything(&["a"])).unwrap();
        store.put("shared.vpc".into(), resource("vpc")).unwrap();
        // Customer a's first write (a new document) cannot replace a directory.
        let blocked = dir.path().join("s.json.customers/a.json");
        std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
        // Only adding to the shared part: it is written beside the failing customer's.
        store.stage_put("shared.subnet".into(), resource("subnet"));
        store.stage_put("customer.a.svc".into(), resource("a1"));
        assert!(store.commit().is_err());
        assert!(shared().get(&"shared.subnet".into()).is_some());
        // Dropping a record from the shared part (it may be moving to a customer's): the
        // shared part is not written while a customer's part fails.
        store.stage_remove(&"shared.vpc".into());
        store.stage_put("customer.a.vpc".into(), resource("vpc"));
        assert!(store.commit().is_err());
        assert!(shared().get(&"shared.vpc".into()).is_some());
        std::fs::remove_dir_all(&blocked).unwrap();
        store.commit().unwrap();
        let state = StateStore::load_parts(&FileParts::new(&path), "s")
            .unwrap()
            .unwrap();
        assert!(state.get(&"shared.vpc".into()).is_none());
        assert!(state.get(&"customer.a.vpc".into()).is_some());
    }

    #[test]
    fn an_edit_in_place_is_recorded_like_a_new_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let address = Address::from("customer.a.svc");
        {
            let mut store = parts(&path, &everything(&["a"])).unwrap();
            store.put(address.clone(), resource("a1")).unwrap();
            store.stage_edit(&address, |r| r.id = Some("a2".into()));
            // A resource the state does not hold is not conjured up by an edit.
            store.stage_edit(&"customer.a.gone".into(), |r| r.id = Some("x".into()));
            assert_eq!(
                store.state().get(&address).unwrap().id.as_deref(),
                Some("a2")
            );
            store.commit().unwrap();
        }
        // Read back from the customer's part and its journal.
        let state = StateStore::load_parts(&FileParts::new(&path), "s")
            .unwrap()
            .unwrap();
        assert_eq!(state.resources.len(), 1);
        assert_eq!(state.get(&address).unwrap().id.as_deref(), Some("a2"));
        assert_eq!(state.serial, 2);
    }

    #[test]
    fn persisting_rewrites_only_the_parts_that_changed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let part = |c: &str| dir.path().join(format!("s.json.customers/{c}.json"));
        // A full write replaces the document by a new file: its inode tells a rewrite.
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        {
            let mut all = parts(&path, &everything(&["a", "b"])).unwrap();
            all.put("shared.vpc".into(), resource("vpc")).unwrap();
            all.put("customer.a.svc".into(), resource("a1")).unwrap();
            all.put("customer.b.svc".into(), resource("b1")).unwrap();
            all.persist().unwrap();
        }
        let before = (inode(&path), inode(&part("a")), inode(&part("b")));
        let mut all = parts(&path, &everything(&["a", "b"])).unwrap();
        all.persist().unwrap();
        assert_eq!(
            (inode(&path), inode(&part("a")), inode(&part("b"))),
            before,
            "a run that changed nothing rewrites nothing"
        );
        all.put("customer.a.tg".into(), resource("a2")).unwrap();
        all.persist().unwrap();
        assert_ne!(inode(&part("a")), before.1, "the changed part is rewritten");
        assert_eq!((inode(&path), inode(&part("b"))), (before.0, before.2));
        // Rewritten means compacted: the part's document alone holds the change.
        let a = StateStore::load(&part("a")).unwrap().unwrap();
        assert!(a.resources.contains_key(&Address::from("customer.a.tg")));
        let journal = std::fs::read(sibling(&part("a"), ".journal")).unwrap_or_default();
        assert!(journal.is_empty(), "{}", String::from_utf8_lossy(&journal));
    }

    #[test]
    fn a_run_that_may_change_anything_excludes_customer_runs_and_the_other_way_round() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        drop(parts(&path, &everything(&["a"])).unwrap());
        {
            let _all = parts(&path, &everything(&["a"])).unwrap();
            let err = parts(&path, &WriteScope::Customer("a".into())).unwrap_err();
            assert!(matches!(err, Error::StateLocked { .. }), "{err}");
            // A customer with no part yet, not configured: the shared lock still keeps it out.
            let err = parts(&path, &WriteScope::Customer("z".into())).unwrap_err();
            assert!(matches!(err, Error::StateLocked { .. }), "{err}");
        }
        let _a = parts(&path, &WriteScope::Customer("a".into())).unwrap();
        let err = parts(&path, &everything(&[])).unwrap_err();
        assert!(
            matches!(err, Error::StateLocked { ref path, .. } if path.ends_with("a.json")),
            "{err}"
        );
        // A refused open releases what it took: another customer's run still starts.
        parts(&path, &WriteScope::Customer("b".into())).unwrap();
    }

    #[test]
    fn a_state_in_one_document_is_split_by_the_first_run_that_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let lineage = {
            let mut whole = StateStore::open(&path, "s").unwrap();
            whole.put("shared.vpc".into(), resource("vpc")).unwrap();
            whole.put("customer.a.svc".into(), resource("a1")).unwrap();
            whole.put("customer.b.svc".into(), resource("b1")).unwrap();
            whole.state().lineage
        };
        // Even a run limited to one customer: it holds every lock while it moves them.
        let store = parts(&path, &WriteScope::Customer("a".into())).unwrap();
        assert!(matches!(
            parts(&path, &WriteScope::Customer("b".into())).unwrap_err(),
            Error::StateLocked { .. }
        ));
        assert_eq!(store.state().resources.len(), 3);
        drop(store);
        let shared = StateStore::load(&path).unwrap().unwrap();
        assert_eq!(
            shared.resources.keys().collect::<Vec<_>>(),
            [&Address::from("shared.vpc")]
        );
        let b = StateStore::load(&dir.path().join("s.json.customers/b.json"))
            .unwrap()
            .unwrap();
        assert_eq!(b.lineage, lineage);
        assert_eq!(
            b.resources.keys().collect::<Vec<_>>(),
            [&Address::from("customer.b.svc")]
        );
        // Split now: customer runs go side by side again.
        let _a = parts(&path, &WriteScope::Customer("a".into())).unwrap();
        let _b = parts(&path, &WriteScope::Customer("b".into())).unwrap();
    }

    #[test]
    fn a_customer_part_of_another_history_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        drop(parts(&path, &everything(&[])).unwrap());
        let stray = dir.path().join("s.json.customers/a.json");
        StateStore::open(&stray, "s")
            .unwrap()
            .put("customer.a.svc".into(), resource("a1"))
            .unwrap();
        let err = StateStore::load_parts(&FileParts::new(&path), "s").unwrap_err();
        assert!(
            err.to_string().contains("belongs to another state"),
            "{err}"
        );
    }

    #[test]
    fn a_state_moved_in_is_spread_over_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut whole = State::new("s");
        whole.serial = 7;
        for a in ["shared.vpc", "customer.a.svc", "customer.b.svc"] {
            whole.resources.insert(a.into(), resource(a));
        }
        let path = dir.path().join("s.json");
        parts(&path, &everything(&[]))
            .unwrap()
            .take_over(whole.clone())
            .unwrap();
        let back = StateStore::load_parts(&FileParts::new(&path), "s")
            .unwrap()
            .unwrap();
        assert_eq!(back.resources, whole.resources);
        assert_eq!((back.lineage, back.serial), (whole.lineage, 7));
        assert_eq!(StateStore::load(&path).unwrap().unwrap().resources.len(), 1);
    }
}
