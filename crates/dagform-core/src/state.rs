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

/// A state file opened for writing: holds the lock until dropped.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    state: State,
    journal: File,
    journal_entries: usize,
    _lock: File,
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

/// The complete entries of a journal, and how many bytes they take.
struct Journal {
    entries: Vec<JournalEntry>,
    complete_len: u64,
}

/// Reads a journal; `None` when there is none. Every entry is written as one line ending in
/// `\n`, so bytes after the last `\n` are a write a crash or a full disk interrupted: that
/// write never happened and is ignored (it may end inside a multi-byte character, so the
/// journal is read as bytes). A complete line that does not parse is corruption.
fn read_journal(path: &Path) -> Result<Option<Journal>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let entries = bytes[..complete_len]
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| Error::StateCorrupt {
                path: path.to_owned(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Journal {
        entries,
        complete_len: complete_len as u64,
    }))
}

impl StateStore {
    /// Opens (or starts) the state of `stack` at `path`, taking its lock. A second writer
    /// fails at once with an error naming the holder.
    pub fn open(path: &Path, stack: &str) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(path))?;
        }
        let lock = Self::lock(path)?;
        let loaded = Self::load(path)?;
        let is_new = loaded.is_none();
        let state = match loaded {
            Some(s) if s.stack != stack => {
                return Err(Error::StateStackMismatch {
                    path: path.to_owned(),
                    found: s.stack,
                    expected: stack.to_owned(),
                });
            }
            Some(s) => s,
            None => State::new(stack),
        };
        let journal_path = sibling(path, ".journal");
        let journal = open_private(&journal_path, true).map_err(io_err(&journal_path))?;
        // Cut a torn tail off before anything is appended after it; shrinking a file needs no
        // free space, so this works on a full disk too.
        let replayed = match read_journal(&journal_path)? {
            Some(j) => {
                if journal.metadata().map_err(io_err(&journal_path))?.len() > j.complete_len {
                    journal
                        .set_len(j.complete_len)
                        .and_then(|()| journal.sync_data())
                        .map_err(io_err(&journal_path))?;
                }
                j.entries.len()
            }
            None => 0,
        };
        let mut store = Self {
            path: path.to_owned(),
            state,
            journal,
            journal_entries: replayed,
            _lock: lock,
        };
        // An existing state is read as it is (main file plus journal), so opening one writes
        // nothing: `destroy` still works when the disk is full. A new one is written at once.
        if is_new {
            store.persist()?;
        }
        Ok(store)
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

    /// Reads the state at `path` (main file plus journal) without locking; `None` when there
    /// is none yet.
    pub fn load(path: &Path) -> Result<Option<State>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut state = match text {
            Some(t) => {
                #[derive(Deserialize)]
                struct Version {
                    version: u32,
                }
                let v: Version = serde_json::from_str(&t).map_err(|e| Error::StateCorrupt {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
                if v.version > FORMAT_VERSION {
                    return Err(Error::StateTooNew {
                        path: path.to_owned(),
                        found: v.version,
                        supported: FORMAT_VERSION,
                    });
                }
                Some(
                    serde_json::from_str::<State>(&t).map_err(|e| Error::StateCorrupt {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let journal_path = sibling(path, ".journal");
        let Some(journal) = read_journal(&journal_path)? else {
            return Ok(state);
        };
        for entry in journal.entries {
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
        Ok(state)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a resource's new record durably before returning.
    pub fn put(&mut self, address: Address, resource: ResourceState) -> Result<(), Error> {
        self.record(address, Some(resource))
    }

    /// Records that a resource no longer exists.
    pub fn remove(&mut self, address: &Address) -> Result<(), Error> {
        if !self.state.resources.contains_key(address) {
            return Ok(());
        }
        self.record(address.clone(), None)
    }

    fn record(&mut self, address: Address, resource: Option<ResourceState>) -> Result<(), Error> {
        self.state.serial += 1;
        let entry = JournalEntry {
            lineage: self.state.lineage,
            serial: self.state.serial,
            address: address.clone(),
            resource: resource.clone(),
        };
        let mut line = serde_json::to_vec(&entry).expect("state is plain data");
        line.push(b'\n');
        let journal_path = sibling(&self.path, ".journal");
        self.journal
            .write_all(&line)
            .and_then(|()| self.journal.sync_data())
            .map_err(io_err(&journal_path))?;
        match resource {
            Some(r) => self.state.resources.insert(address, r),
            None => self.state.resources.remove(&address),
        };
        self.journal_entries += 1;
        // Folding the journal costs one full write; doing it once the journal is as long as
        // the state keeps the total work linear in the number of operations.
        if self.journal_entries > self.state.resources.len().max(64) {
            self.persist()?;
        }
        Ok(())
    }

    /// Writes the whole state atomically and empties the journal.
    pub fn persist(&mut self) -> Result<(), Error> {
        write_atomically(&self.path, |w| {
            serde_json::to_writer_pretty(&mut *w, &self.state).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })?;
        let journal_path = sibling(&self.path, ".journal");
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_data())
            .map_err(io_err(&journal_path))?;
        self.journal_entries = 0;
        Ok(())
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
