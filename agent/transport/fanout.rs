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

/// Resolves with the signal that asks the run to stop: SIGINT (Ctrl-C), SIGTERM (`systemctl
/// stop`, `kill`, a schedule's wrapper passing one on) or SIGHUP (the terminal went away).
///
/// While one of these futures is waited on, the three signals are caught rather than left to
/// their default (dying on the spot), so what the run started is stopped with it: dropping the
/// run closes its channels and the agents' exec guards kill their commands' process groups (an
/// in-process local agent's too, which would otherwise outlive kiln). Outside such a wait the
/// handler restores the default and raises the signal again, so kiln dies of it as before (a
/// handler left installed, as tokio's is, would make kiln ignore SIGTERM between runs).
pub async fn stop_signal() -> nix::sys::signal::Signal {
    let _watch = stop::Watch::new();
    loop {
        if let Some(sig) = stop::received() {
            return sig;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

mod stop {
    use nix::sys::signal::{self, SigHandler, Signal};
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

    const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
    static RECEIVED: AtomicI32 = AtomicI32::new(0);
    static WATCHERS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_signal(n: nix::libc::c_int) {
        if WATCHERS.load(Ordering::SeqCst) == 0 {
            // nobody is waiting: die of it, as without the handler
            if let Ok(s) = Signal::try_from(n) {
                // SAFETY: signal(2) and raise(3) are async-signal-safe
                unsafe {
                    let _ = signal::signal(s, SigHandler::SigDfl);
                }
                let _ = signal::raise(s);
            }
            return;
        }
        RECEIVED.store(n, Ordering::SeqCst);
    }

    pub fn received() -> Option<Signal> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            n => Signal::try_from(n).ok(),
        }
    }

    /// Counts a waiter; the first installs the handler (again: a raise restored the default).
    pub struct Watch;

    impl Watch {
        pub fn new() -> Watch {
            if WATCHERS.fetch_add(1, Ordering::SeqCst) == 0 {
                RECEIVED.store(0, Ordering::SeqCst);
                for s in SIGNALS {
                    // SAFETY: the handler only touches atomics and calls signal(2)/raise(3)
                    unsafe {
                        // a signal this process was started ignoring (`nohup` ignores SIGHUP)
                        // stays ignored
                        if let Ok(SigHandler::SigIgn) =
                            signal::signal(s, SigHandler::Handler(on_signal))
                        {
                            let _ = signal::signal(s, SigHandler::SigIgn);
                        }
                    }
                }
            }
            Watch
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            WATCHERS.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
