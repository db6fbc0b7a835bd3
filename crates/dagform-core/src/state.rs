//! The JSON state file: what dagform created, with ids, applied properties, outputs and
//! recorded dependencies.
//!
//! `state/<stack>.json` is always replaced atomically (temp file, fsync, rename). Between
//! those full writes every operation is appended to `<state>.journal` and fsynced, so a run
//! records each result at once without rewriting the whole file per resource; the journal is
//! folded into the main file when it grows as large as the state and at the end of a run.

use crate::address::Address;
use crate::error::Error;
use crate::kind::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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
struct JournalEntry {
    lineage: Uuid,
    serial: u64,
    address: Address,
    /// The resource's new record; `None` when it was removed.
    resource: Option<ResourceState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockHolder {
    pid: u32,
    host: String,
    since: String,
}

/// Where a state is kept: a document holding the whole state, and a journal of entries
/// appended after it (each a complete line of JSON). A local file and its `.journal`, or an
/// S3 object and the journal objects beside it. A backend opened for writing holds the state's
/// lock until dropped.
pub trait StateBackend: Send + std::fmt::Debug {
    /// Where the state lives, for messages: a path or an `s3://` URL.
    fn location(&self) -> String;
    /// The document (`None` when there is none yet) and the journal's bytes, as stored.
    fn read(&self) -> Result<(Option<String>, Vec<u8>), Error>;
    /// Appends complete journal lines, durably, before returning.
    fn append(&mut self, lines: &[u8]) -> Result<(), Error>;
    /// Replaces the document, durably, and then empties the journal.
    fn replace(&mut self, document: &[u8]) -> Result<(), Error>;
}

/// A state opened for writing: holds the lock until dropped.
#[derive(Debug)]
pub struct StateStore {
    backend: Box<dyn StateBackend>,
    state: State,
    journal_entries: usize,
    /// Journal lines recorded in memory and not yet stored (see `commit`).
    staged: Vec<u8>,
    staged_entries: usize,
    commits: u64,
    writing: Duration,
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

    fn lock(path: &Path) -> Result<File, Error> {
        let lock_path = sibling(path, ".lock");
        let mut file = open_private(&lock_path, false).map_err(io_err(&lock_path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = std::fs::read_to_string(&lock_path).unwrap_or_default();
                let holder: LockHolder = serde_json::from_str(&text).unwrap_or(LockHolder {
                    pid: 0,
                    host: "unknown host".into(),
                    since: "unknown time".into(),
                });
                return Err(Error::StateLocked {
                    path: path.to_owned(),
                    pid: holder.pid,
                    host: holder.host,
                    since: holder.since,
                });
            }
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
    let location = backend.location();
    let (document, journal) = backend.read()?;
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
    /// Opens (or starts) the state of `stack` in the file at `path`, taking its lock. A
    /// second writer fails at once with an error naming the holder.
    pub fn open(path: &Path, stack: &str) -> Result<Self, Error> {
        Self::open_in(Box::new(FileBackend::locked(path)?), stack)
    }

    /// Opens (or starts) the state of `stack` kept by `backend`, which holds its lock.
    pub fn open_in(backend: Box<dyn StateBackend>, stack: &str) -> Result<Self, Error> {
        let (state, replayed, is_new) = match read_state(backend.as_ref())? {
            Some((s, _)) if s.stack != stack => {
                return Err(Error::StateStackMismatch {
                    location: backend.location(),
                    found: s.stack,
                    expected: stack.to_owned(),
                });
            }
            Some((s, replayed)) => (s, replayed, false),
            None => (State::new(stack), 0, true),
        };
        let mut store = Self {
            backend,
            state,
            journal_entries: replayed,
            staged: Vec::new(),
            staged_entries: 0,
            commits: 0,
            writing: Duration::ZERO,
        };
        // An existing state is read as it is (document plus journal), so opening one writes
        // nothing: `destroy` still works when the disk is full. A new one is written at once.
        if is_new {
            store.persist()?;
        }
        Ok(store)
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

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Where the state lives: a path or an `s3://` URL.
    pub fn location(&self) -> String {
        self.backend.location()
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

    /// Records in memory that a resource no longer exists; see `stage_put`.
    pub fn stage_remove(&mut self, address: &Address) {
        if self.state.resources.contains_key(address) {
            self.stage(address.clone(), None);
        }
    }

    fn stage(&mut self, address: Address, resource: Option<ResourceState>) {
        self.state.serial += 1;
        let entry = JournalEntry {
            lineage: self.state.lineage,
            serial: self.state.serial,
            address: address.clone(),
            resource: resource.clone(),
        };
        serde_json::to_writer(&mut self.staged, &entry).expect("state is plain data");
        self.staged.push(b'\n');
        self.staged_entries += 1;
        match resource {
            Some(r) => self.state.resources.insert(address, r),
            None => self.state.resources.remove(&address),
        };
    }

    /// Makes everything staged durable with one journal append and one fsync: a run records
    /// the results of steps that finished together, or the intents of creates about to start
    /// together, at the cost of one disk flush rather than one each. Every entry is a line of
    /// its own, so a crash during the append loses at most the entries not yet complete, and
    /// their calls have not been made (intents) or are found again (results).
    pub fn commit(&mut self) -> Result<(), Error> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.backend.append(&self.staged)?;
        self.staged.clear();
        self.journal_entries += std::mem::take(&mut self.staged_entries);
        self.commits += 1;
        self.writing += started.elapsed();
        // Folding the journal costs one full write; doing it once the journal is as long as
        // the state keeps the total work linear in the number of operations.
        if self.journal_entries > self.state.resources.len().max(64) {
            self.persist()?;
        }
        Ok(())
    }

    /// Records the AWS account this state belongs to, with one full write (once in a stack's
    /// life).
    pub fn record_account(&mut self, account_id: &str) -> Result<(), Error> {
        if self.state.account_id.as_deref() == Some(account_id) {
            return Ok(());
        }
        self.state.account_id = Some(account_id.to_owned());
        self.persist()
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
        self.staged.clear();
        self.staged_entries = 0;
        self.state = state;
        self.persist()
    }

    /// How many times the journal was flushed to disk, and the time spent writing the state
    /// (journal appends and full writes) since it was opened.
    pub fn write_stats(&self) -> (u64, Duration) {
        (self.commits, self.writing)
    }

    /// Writes the whole state atomically and empties the journal.
    pub fn persist(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let mut document = serde_json::to_vec_pretty(&self.state).expect("state is plain data");
        document.push(b'\n');
        self.backend.replace(&document)?;
        self.journal_entries = 0;
        // The full write holds everything staged too.
        self.staged.clear();
        self.staged_entries = 0;
        self.writing += started.elapsed();
        Ok(())
    }
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
}
