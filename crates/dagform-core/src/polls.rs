//! Polls of many waiting objects of one kind, folded into one describe call a round: ten NAT
//! gateways becoming available cost one DescribeNatGateways per poll rather than ten, and
//! draining services are described ten at a time. The AWS kinds poll through it, and so does
//! the in-memory provider, so the benchmark's waits cost what real ones do.
//!
//! A poll joins the round that is gathering, or opens one; a round gathers for a fifth of the
//! poll interval (at most a second), then a task of its own describes every object in it, in
//! chunks as large as the API takes, and answers each poll. The round runs on its own task so
//! that a poll given up (a run interrupted) never leaves the others waiting.

use crate::{OpContext, ResourceError};
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What one describe call answers: the objects that exist, by key.
pub type Described<K, T> =
    Pin<Box<dyn Future<Output = Result<HashMap<K, T>, ResourceError>> + Send>>;

/// Describes the objects of `keys` (at most one chunk's worth), returning those that exist.
pub type Describe<K, T> = Arc<dyn Fn(Vec<K>) -> Described<K, T> + Send + Sync>;

type Answer<T> = oneshot::Sender<Result<Option<T>, ResourceError>>;

/// The polls of the round that is gathering, each with where to send its answer.
type Gathering<K, T> = Arc<Mutex<Vec<(K, Answer<T>)>>>;

/// The polls of one kind's waiting objects.
pub struct Polls<K, T> {
    chunk: usize,
    describe: Describe<K, T>,
    gathering: Gathering<K, T>,
}

impl<K, T> Polls<K, T>
where
    K: Clone + Eq + Hash + Send + 'static,
    T: Clone + Send + 'static,
{
    /// `describe` takes up to `chunk` keys a call.
    pub fn new(chunk: usize, describe: Describe<K, T>) -> Self {
        Self {
            chunk: chunk.max(1),
            describe,
            gathering: Arc::default(),
        }
    }

    /// The object of `key` as this round's describe call sees it; `None` when it does not
    /// exist.
    pub async fn poll(&self, ctx: &OpContext, key: K) -> Result<Option<T>, ResourceError> {
        let (tx, rx) = oneshot::channel();
        let opens_round = {
            let mut gathering = self.gathering.lock().unwrap_or_else(|e| e.into_inner());
            gathering.push((key, tx));
            gathering.len() == 1
        };
        if opens_round {
            let window = (ctx.poll.interval / 5).min(Duration::from_secs(1));
            tokio::spawn(round(
                self.gathering.clone(),
                self.describe.clone(),
                self.chunk,
                window,
            ));
        }
        // The round's calls are made once for every poll in it: this step holds no call slot
        // while it waits for them.
        ctx.slot.without(rx).await.unwrap_or_else(|_| {
            Err(ResourceError::Transient(
                "a batched describe call was abandoned".into(),
            ))
        })
    }
}

/// Gathers polls for `window`, then describes them all and answers each.
async fn round<K, T>(
    gathering: Gathering<K, T>,
    describe: Describe<K, T>,
    chunk: usize,
    window: Duration,
) where
    K: Clone + Eq + Hash + Send + 'static,
    T: Clone + Send + 'static,
{
    tokio::time::sleep(window).await;
    let polls = std::mem::take(&mut *gathering.lock().unwrap_or_else(|e| e.into_inner()));
    let mut keys: Vec<K> = Vec::new();
    for (key, _) in &polls {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    let calls = keys.chunks(chunk).map(|c| describe(c.to_vec()));
    let mut seen: HashMap<K, T> = HashMap::new();
    let mut failure = None;
    for result in futures::future::join_all(calls).await {
        match result {
            Ok(found) => seen.extend(found),
            Err(e) => failure = Some(e),
        }
    }
    for (key, answer) in polls {
        let result = match (&failure, seen.get(&key)) {
            (_, Some(object)) => Ok(Some(object.clone())),
            (Some(e), None) => Err(e.clone()),
            (None, None) => Ok(None),
        };
        let _ = answer.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::PollSettings;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(calls: Arc<AtomicUsize>, sizes: Arc<Mutex<Vec<usize>>>) -> Describe<u32, u32> {
        Arc::new(move |keys: Vec<u32>| {
            calls.fetch_add(1, Ordering::SeqCst);
            sizes.lock().unwrap().push(keys.len());
            Box::pin(async move {
                // Odd keys exist, even ones do not.
                Ok(keys
                    .into_iter()
                    .filter(|k| k % 2 == 1)
                    .map(|k| (k, k * 10))
                    .collect())
            })
        })
    }

    fn ctx() -> OpContext {
        OpContext::new(
            "dev-app",
            "shared.nat",
            PollSettings {
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(5),
            },
        )
    }

    /// Twenty-five polls at once cost three calls of at most ten, and each gets its own answer.
    #[tokio::test]
    async fn polls_at_once_share_calls() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let polls = Arc::new(Polls::new(10, counting(calls.clone(), sizes.clone())));
        let ctx = ctx();
        let answers = futures::future::join_all((0..25).map(|k| {
            let polls = polls.clone();
            let ctx = ctx.clone();
            async move { polls.poll(&ctx, k).await.unwrap() }
        }))
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let mut sizes = sizes.lock().unwrap().clone();
        sizes.sort_unstable();
        assert_eq!(sizes, [5, 10, 10]);
        for (k, answer) in (0..25).zip(answers) {
            assert_eq!(answer, (k % 2 == 1).then_some(k * 10), "key {k}");
        }
        // A later poll opens a round of its own.
        assert_eq!(polls.poll(&ctx, 7).await.unwrap(), Some(70));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    /// A step whose poll waits for its round gives its call slot up meanwhile: another step
    /// takes the only slot while the round gathers, and the poll still gets its answer.
    #[tokio::test]
    async fn a_poll_holds_no_call_slot_while_its_round_gathers() {
        let calls = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = calls.clone().acquire_owned().await.unwrap();
        let mut ctx = ctx();
        ctx.slot = crate::kind::CallSlot::held(calls.clone(), permit);
        let describe: Describe<u32, u32> = Arc::new(|keys: Vec<u32>| {
            Box::pin(async move { Ok(keys.into_iter().map(|k| (k, k)).collect()) })
        });
        let polls = Polls::new(10, describe);
        let other = calls.clone();
        let (answer, taken) = tokio::join!(polls.poll(&ctx, 1), async move {
            // The round gathers for a fifth of the 100 ms poll interval.
            tokio::time::timeout(Duration::from_millis(15), other.acquire_owned())
                .await
                .is_ok()
        });
        assert!(taken, "the slot was free while the round gathered");
        assert_eq!(answer.unwrap(), Some(1));
    }

    /// A failed call fails the polls it answers, and the next round starts afresh.
    #[tokio::test]
    async fn a_failed_call_fails_its_round_only() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = fail.clone();
        let describe: Describe<u32, u32> = Arc::new(move |keys: Vec<u32>| {
            let fail = flag.load(Ordering::SeqCst);
            Box::pin(async move {
                if fail {
                    Err(ResourceError::Transient("Throttling".into()))
                } else {
                    Ok(keys.into_iter().map(|k| (k, k)).collect())
                }
            })
        });
        let polls = Polls::new(10, describe);
        let ctx = ctx();
        assert!(matches!(
            polls.poll(&ctx, 1).await,
            Err(ResourceError::Transient(_))
        ));
        fail.store(false, Ordering::SeqCst);
        assert_eq!(polls.poll(&ctx, 1).await.unwrap(), Some(1));
    }
}
