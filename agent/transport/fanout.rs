//! Run one piece of work on many hosts at once, up to `forks` at a time.
//!
//! Hosts are independent: one that fails or is unreachable does not stop the others. Ctrl-C (or
//! the caller's cancel token) stops the run cleanly: unfinished hosts are dropped, which closes
//! their channels, so their agents see end of input and exit.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How a fan-out ended.
#[derive(Debug)]
pub struct FanoutResult<T> {
    /// Per host, in the order given: `None` for hosts that did not finish (interrupted).
    pub results: Vec<(String, Option<T>)>,
    pub interrupted: bool,
}

/// Run `work(host)` for every host, at most `forks` at a time, until done or `stop` resolves.
pub async fn run<T, F, Fut, S>(
    hosts: Vec<String>,
    forks: usize,
    work: F,
    stop: S,
) -> FanoutResult<T>
where
    T: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    S: Future<Output = ()>,
{
    let sem = Arc::new(Semaphore::new(forks.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let sem = sem.clone();
        let fut = work(h.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut results: Vec<(String, Option<T>)> = hosts.into_iter().map(|h| (h, None)).collect();
    let mut interrupted = false;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            next = set.join_next() => match next {
                Some(Ok((i, r))) => {
                    if let Some(slot) = results.get_mut(i) {
                        slot.1 = Some(r);
                    }
                }
                Some(Err(e)) => tracing::warn!("a host task ended abnormally: {e}"),
                None => break,
            },
            _ = &mut stop, if !interrupted => {
                interrupted = true;
                set.abort_all();
            }
        }
    }
    FanoutResult {
        results,
        interrupted,
    }
}

/// Resolves on Ctrl-C (never, when the signal cannot be watched).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
