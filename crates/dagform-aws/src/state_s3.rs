//! The state kept in S3, for teams: `s3://BUCKET/KEY` holds the state document, objects under
//! `KEY.journal/` the entries recorded since it was last written whole, and `KEY.lock` the lock.
//!
//! - The lock is an object created only if none exists (`If-None-Match: *`), holding who took
//!   it, where, since when and for what; it is deleted (only if it is still ours, `If-Match`)
//!   when the run ends. A lock left by a killed run stays until `dagform force-unlock ID`.
//! - Every write of the document is conditional on the version this run read or wrote last
//!   (`If-Match` on its ETag; `If-None-Match: *` for a new one), so two writers never lose each
//!   other's changes, even with the lock broken by hand.
//! - A run records each batch of results (and each batch of intents, before their creates) as
//!   one small journal object rather than rewriting the whole state, and folds the journal
//!   into the document as the local journal is folded.
//!
//! The engine's state store is synchronous; the calls here run on the current Tokio runtime
//! (which must be multi-threaded, as the command line's is) through `block_in_place`.

use aws_sdk_s3::primitives::ByteStream;
use dagform_core::state::{OpenedPart, Stored};
use dagform_core::{Access, Error, Part, StateBackend, StateParts};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// Where in S3 a state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    /// `s3://BUCKET/KEY`; `None` for anything not starting with `s3://`.
    pub fn parse(url: &str) -> Option<Result<Self, String>> {
        let rest = url.strip_prefix("s3://")?;
        Some(match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
                Ok(Self {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })
            }
            _ => Err(format!(
                "`{url}` is not an S3 state location; write s3://BUCKET/KEY, e.g. s3://my-team-state/dagform/prod.json"
            )),
        })
    }

    /// Where `part` of the state at this location lives: the shared part here, a customer's
    /// at `KEY.customers/NAME`.
    pub fn of_part(&self, part: &Part) -> Self {
        match part {
            Part::Shared => self.clone(),
            Part::Customer(name) => Self {
                bucket: self.bucket.clone(),
                key: format!("{}{name}", self.customers_prefix()),
            },
        }
    }

    fn customers_prefix(&self) -> String {
        format!("{}.customers/", self.key)
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn journal_prefix(&self) -> String {
        format!("{}.journal/", self.key)
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An S3 client for the state: the configuration every client uses, in `region` when given.
/// Against a custom endpoint (`AWS_ENDPOINT_URL`, e.g. a local emulator) buckets are addressed
/// by path, since such endpoints have no per-bucket host names.
pub async fn s3_client(region: Option<&str>) -> aws_sdk_s3::Client {
    let sdk = crate::clients::sdk_config(region).await;
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            .interceptor(crate::clients::CountCalls::default())
            .build(),
    )
}

/// What the lock object says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// What `force-unlock` is given.
    pub id: String,
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    pub operation: String,
    /// RFC 3339.
    pub since: String,
}

impl LockInfo {
    fn new(operation: &str) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            who: format!("{user}@{}", gethostname::gethostname().to_string_lossy()),
            pid: std::process::id(),
            operation: operation.to_owned(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// What this run knows of the stored state: the document's ETag as last read or written
/// (`None` when there is no document), and the journal objects after it.
#[derive(Debug, Default)]
struct Seen {
    etag: Option<String>,
    journal: Vec<String>,
    /// A write found the state changed by another writer: every later write is refused too,
    /// since this run's view of the state is no longer true.
    stale: bool,
}

/// A state in S3; see the module documentation.
#[derive(Debug)]
pub struct S3Backend {
    client: aws_sdk_s3::Client,
    location: S3Location,
    seen: Mutex<Seen>,
    /// The lock this backend holds (its contents and the lock object's ETag); `None` for a
    /// reader.
    lock: Option<(LockInfo, String)>,
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn remote(location: &S3Location, what: &str, e: impl std::fmt::Display) -> Error {
    Error::StateRemote {
        location: location.to_string(),
        message: format!("{what}: {e}"),
    }
}

/// Whether an S3 error is a failed precondition (`If-Match` / `If-None-Match` not met).
fn precondition_failed<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        ),
        _ => false,
    }
}

/// Whether an S3 error says the object does not exist.
fn not_found<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => {
            matches!(s.err().code(), Some("NoSuchKey" | "NotFound" | "404"))
        }
        _ => false,
    }
}

/// Details of an SDK error, for messages.
fn detail<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
}

impl S3Backend {
    /// The state at `location`, locked for `operation`. A held lock is waited for up to
    /// `lock_timeout` (polling every two seconds), then refused with its holder named.
    pub async fn locked(
        client: aws_sdk_s3::Client,
        location: S3Location,
        operation: &str,
        lock_timeout: Duration,
    ) -> Result<Self, Error> {
        let info = LockInfo::new(operation);
        let body = serde_json::to_vec_pretty(&info).expect("plain data");
        let deadline = tokio::time::Instant::now() + lock_timeout;
        let etag = loop {
            let put = client
                .put_object()
                .bucket(&location.bucket)
                .key(location.lock_key())
                .if_none_match("*")
                .content_type("application/json")
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            match put {
                Ok(out) => break out.e_tag().unwrap_or_default().to_owned(),
                Err(e) if precondition_failed(&e) => {
                    if tokio::time::Instant::now() >= deadline {
                        let holder = read_lock(&client, &location).await?;
                        return Err(held(&location, holder));
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(remote(&location, "taking the lock", detail(&e))),
            }
        };
        tracing::debug!(lock = %info.id, "took the lock of {location}");
        Ok(Self {
            client,
            location,
            seen: Mutex::default(),
            lock: Some((info, etag)),
        })
    }

    /// The state at `location`, for reading only, without its lock.
    pub fn reader(client: aws_sdk_s3::Client, location: S3Location) -> Self {
        Self {
            client,
            location,
            seen: Mutex::default(),
            lock: None,
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, Error> {
        match self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_owned();
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| remote(&self.location, "reading", e))?
                    .into_bytes();
                Ok(Some((bytes.to_vec(), etag)))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(remote(
                &self.location,
                &format!("reading {key}"),
                detail(&e),
            )),
        }
    }

    /// The journal objects, in the order they were written (their names sort that way).
    async fn journal_keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(self.location.journal_prefix())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| remote(&self.location, "listing the journal", detail(&e)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn read_async(&self) -> Result<Stored, Error> {
        let document = self.get(&self.location.key).await?;
        let keys = self.journal_keys().await?;
        let mut journal = Vec::new();
        for key in &keys {
            if let Some((bytes, _)) = self.get(key).await? {
                journal.extend_from_slice(&bytes);
                if !bytes.ends_with(b"\n") {
                    journal.push(b'\n');
                }
            }
        }
        let mut seen = self.seen();
        seen.etag = document.as_ref().map(|(_, etag)| etag.clone());
        seen.journal = keys;
        drop(seen);
        let text = document
            .map(|(bytes, _)| String::from_utf8(bytes))
            .transpose()
            .map_err(|e| Error::StateCorrupt {
                location: self.location.to_string(),
                message: e.to_string(),
            })?;
        Ok((text, journal))
    }

    /// Refuses once the stored document is no longer the version this run last read or
    /// wrote: entries appended after another writer's document would be replayed onto a
    /// state they were not computed from.
    async fn check_unchanged(&self) -> Result<(), Error> {
        let expected = self.etag_unless_stale()?;
        let current = match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&self.location.key)
            .send()
            .await
        {
            Ok(out) => out.e_tag().map(str::to_owned),
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(remote(&self.location, "reading", detail(&e))),
        };
        if current != expected {
            return Err(self.stale(
                "the state object is not the version this run read; another writer changed it",
            ));
        }
        Ok(())
    }

    /// The ETag of the document as this run last saw it; refused once a write found another
    /// writer's changes.
    fn etag_unless_stale(&self) -> Result<Option<String>, Error> {
        let seen = self.seen();
        if seen.stale {
            return Err(conflict(
                &self.location,
                "another writer changed the state during this run; run again to start from what it holds",
            ));
        }
        Ok(seen.etag.clone())
    }

    /// Marks this run's view as stale and says why.
    fn stale(&self, message: &str) -> Error {
        self.seen().stale = true;
        conflict(&self.location, message)
    }

    async fn append_async(&self, lines: &[u8]) -> Result<(), Error> {
        self.check_unchanged().await?;
        // Named after the last one so that a listing returns them in order.
        let next = {
            let seen = self.seen();
            seen.journal
                .last()
                .and_then(|k| k.rsplit('/').next())
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(1, |n| n + 1)
        };
        let key = format!("{}{next:020}", self.location.journal_prefix());
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(lines.to_vec()))
            .send()
            .await
            .map_err(|e| {
                if precondition_failed(&e) {
                    self.stale("another writer appended to the journal")
                } else {
                    remote(&self.location, "appending to the journal", detail(&e))
                }
            })?;
        self.seen().journal.push(key);
        Ok(())
    }

    async fn replace_async(&self, document: &[u8]) -> Result<(), Error> {
        let etag = self.etag_unless_stale()?;
        let put = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&self.location.key)
            .content_type("application/json")
            .body(ByteStream::from(document.to_vec()));
        let put = match &etag {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        let out = put.send().await.map_err(|e| {
            if precondition_failed(&e) {
                self.stale(
                    "the state object is not the version this run read; another writer changed it",
                )
            } else {
                remote(&self.location, "writing", detail(&e))
            }
        })?;
        let journal = {
            let mut seen = self.seen();
            seen.etag = out.e_tag().map(str::to_owned);
            std::mem::take(&mut seen.journal)
        };
        // The document now holds every entry: the journal objects are spent.
        for key in journal {
            self.client
                .delete_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| remote(&self.location, "emptying the journal", detail(&e)))?;
        }
        Ok(())
    }
}

fn conflict(location: &S3Location, message: &str) -> Error {
    Error::StateConflict {
        location: location.to_string(),
        message: message.to_owned(),
    }
}

fn held(location: &S3Location, holder: Option<LockInfo>) -> Error {
    let holder = holder.unwrap_or_else(|| LockInfo {
        id: "?".into(),
        who: "another run".into(),
        pid: 0,
        operation: "?".into(),
        since: "?".into(),
    });
    Error::StateLockHeld {
        location: location.to_string(),
        id: holder.id,
        who: format!("{} (pid {})", holder.who, holder.pid),
        operation: holder.operation,
        since: holder.since,
    }
}

/// The parts of a stack's state in S3: the shared part at `KEY`, each customer's at
/// `KEY.customers/NAME`, each with its own journal and lock object. A run holding the shared
/// lock writes customers' parts under it without taking their locks, which would cost two
/// calls per customer.
#[derive(Debug)]
pub struct S3Parts {
    client: aws_sdk_s3::Client,
    location: S3Location,
    operation: String,
}

/// Parts read or locked at once: enough to hide S3's latency without tripping its limits.
const CONCURRENT_PARTS: usize = 16;

impl S3Parts {
    pub fn new(client: aws_sdk_s3::Client, location: S3Location, operation: &str) -> Self {
        Self {
            client,
            location,
            operation: operation.to_owned(),
        }
    }

    async fn open_async(&self, part: &Part, access: Access) -> Result<S3Backend, Error> {
        let location = self.location.of_part(part);
        match access {
            Access::Lock => {
                S3Backend::locked(
                    self.client.clone(),
                    location,
                    &self.operation,
                    Duration::ZERO,
                )
                .await
            }
            Access::Read | Access::Guarded => Ok(S3Backend::reader(self.client.clone(), location)),
        }
    }

    /// What lies directly under `KEY.customers/` (not in a customer's journal).
    async fn customer_objects(&self) -> Result<Vec<String>, Error> {
        let prefix = self.location.customers_prefix();
        let pages: Vec<_> = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send()
            .collect()
            .await;
        let mut names = Vec::new();
        for page in pages {
            let page =
                page.map_err(|e| remote(&self.location, "listing customers' parts", detail(&e)))?;
            names.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&prefix))
                    .filter(|rest| !rest.contains('/'))
                    .map(str::to_owned),
            );
        }
        names.sort();
        Ok(names)
    }

    /// Every lock held on this state's parts, with where it is.
    pub async fn locks(&self) -> Result<Vec<(S3Location, LockInfo)>, Error> {
        let mut held = Vec::new();
        if let Some(info) = read_lock(&self.client, &self.location).await? {
            held.push((self.location.clone(), info));
        }
        for object in self.customer_objects().await? {
            if let Some(customer) = object.strip_suffix(".lock") {
                let location = self.location.of_part(&Part::Customer(customer.to_owned()));
                if let Some(info) = read_lock(&self.client, &location).await? {
                    held.push((location, info));
                }
            }
        }
        Ok(held)
    }
}

impl StateParts for S3Parts {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn open(&self, part: &Part, access: Access) -> Result<Box<dyn StateBackend>, Error> {
        Ok(Box::new(block_on(self.open_async(part, access))?))
    }

    fn open_all(&self, parts: &[Part], access: Access) -> Result<Vec<OpenedPart>, Error> {
        block_on(
            futures::stream::iter(parts)
                .map(|part| async move {
                    let backend = self.open_async(part, access).await?;
                    let stored = backend.read_async().await?;
                    Ok::<_, Error>((Box::new(backend) as Box<dyn StateBackend>, stored))
                })
                .buffered(CONCURRENT_PARTS)
                .try_collect(),
        )
    }

    fn customers(&self) -> Result<Vec<String>, Error> {
        let objects = block_on(self.customer_objects())?;
        Ok(objects
            .into_iter()
            .filter(|name| !name.ends_with(".lock"))
            .collect())
    }

    fn ensure_unlocked(&self, part: &Part) -> Result<(), Error> {
        let location = self.location.of_part(part);
        match block_on(read_lock(&self.client, &location))? {
            Some(holder) => Err(held(&location, Some(holder))),
            None => Ok(()),
        }
    }

    fn ensure_no_customer_locked(&self) -> Result<(), Error> {
        let objects = block_on(self.customer_objects())?;
        for object in objects {
            if let Some(customer) = object.strip_suffix(".lock") {
                self.ensure_unlocked(&Part::Customer(customer.to_owned()))?;
            }
        }
        Ok(())
    }
}

/// The lock on the state at `location`, if one is held.
pub async fn read_lock(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
) -> Result<Option<LockInfo>, Error> {
    let reader = S3Backend::reader(client.clone(), location.clone());
    let Some((bytes, _)) = reader.get(&location.lock_key()).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::StateCorrupt {
            location: format!("s3://{}/{}", location.bucket, location.lock_key()),
            message: e.to_string(),
        })
}

/// Removes the lock `id` on the state at `location` (a lock a killed run left behind). Refuses
/// when the lock held is another one, or none is.
pub async fn force_unlock(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
    id: &str,
) -> Result<LockInfo, Error> {
    let reader = S3Backend::reader(client.clone(), location.clone());
    let Some((bytes, etag)) = reader.get(&location.lock_key()).await? else {
        return Err(remote(location, "force-unlock", "the state is not locked"));
    };
    let info: LockInfo = serde_json::from_slice(&bytes).map_err(|e| Error::StateCorrupt {
        location: location.to_string(),
        message: e.to_string(),
    })?;
    if info.id != id {
        return Err(remote(
            location,
            "force-unlock",
            format!("the lock held is {} (by {}), not {id}", info.id, info.who),
        ));
    }
    client
        .delete_object()
        .bucket(&location.bucket)
        .key(location.lock_key())
        .if_match(etag)
        .send()
        .await
        .map_err(|e| remote(location, "removing the lock", detail(&e)))?;
    Ok(info)
}

impl StateBackend for S3Backend {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn read(&self) -> Result<Stored, Error> {
        block_on(self.read_async())
    }

    fn append(&mut self, lines: &[u8]) -> Result<(), Error> {
        block_on(self.append_async(lines))
    }

    fn replace(&mut self, document: &[u8]) -> Result<(), Error> {
        block_on(self.replace_async(document))
    }

    /// Every batch in the journal is an object, each read with a request of its own: a run
    /// leaves one document for the next to read.
    fn folds_when_a_run_ends(&self) -> bool {
        true
    }
}

impl Drop for S3Backend {
    /// Gives the lock up, only if it is still this run's (a force-unlock and another run's
    /// lock since are left alone).
    fn drop(&mut self) {
        let Some((info, etag)) = self.lock.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("lock {} of {} left in place", info.id, self.location);
            return;
        }
        let deleted = block_on(
            self.client
                .delete_object()
                .bucket(&self.location.bucket)
                .key(self.location.lock_key())
                .if_match(etag)
                .send(),
        );
        if let Err(e) = deleted {
            tracing::warn!(
                "could not give up lock {} of {}: {}; remove it with `dagform force-unlock {}`",
                info.id,
                self.location,
                detail(&e),
                info.id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_bad_ones_say_how_to_write_them() {
        let l = S3Location::parse("s3://team-state/dagform/prod.json")
            .unwrap()
            .unwrap();
        assert_eq!(l.bucket, "team-state");
        assert_eq!(l.key, "dagform/prod.json");
        assert_eq!(l.to_string(), "s3://team-state/dagform/prod.json");
        assert_eq!(l.lock_key(), "dagform/prod.json.lock");
        assert!(S3Location::parse("state/prod.json").is_none());
        for bad in [
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "s3://b/dir/",
        ] {
            let e = S3Location::parse(bad).unwrap().unwrap_err();
            assert!(e.contains("s3://BUCKET/KEY"), "{e}");
        }
    }
}
