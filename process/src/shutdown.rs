//! The stop request: raised once (by SIGTERM or Ctrl-C, or by hand), awaited by every part
//! that must wind down.

use std::future::Future;
use tokio::sync::watch;

/// Waits for a stop request. Clones wait for the same request. A request also counts as
/// made when its [`Trigger`] is dropped without raising it, so nothing waits on a stop that
/// can no longer come.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Raises the request of the [`Shutdown`] it was made with.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// Raises the request; every waiter, present or future, completes.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A request not raised yet, and the trigger that raises it.
    pub fn channel() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger { tx }, Shutdown { rx })
    }

    /// A request raised by the first SIGTERM or Ctrl-C, after `on_signal` has run (it logs,
    /// in the caller's words and under the caller's target). Needs a Tokio runtime.
    pub fn on_signal(on_signal: impl FnOnce() + Send + 'static) -> Shutdown {
        let (trigger, shutdown) = Self::channel();
        tokio::spawn(async move {
            signal().await;
            on_signal();
            trigger.trigger();
        });
        shutdown
    }

    /// Whether the request has been raised.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once the request is raised (at once if it already was) or its trigger is
    /// gone. Owns what it needs, so it can be handed to a spawned task.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Completes on the first SIGTERM (what the kubelet sends) or Ctrl-C. If SIGTERM cannot be
/// watched, Ctrl-C still can.
async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn every_waiter_completes_once_the_request_is_raised() {
        let (trigger, shutdown) = Shutdown::channel();
        let copy = shutdown.clone();
        assert!(!shutdown.is_requested());
        assert!(timeout(Duration::ZERO, shutdown.wait()).await.is_err());
        let early = tokio::spawn(copy.wait());
        trigger.trigger();
        assert!(shutdown.is_requested() && copy.is_requested());
        timeout(DEADLINE, early)
            .await
            .expect("a waiter made before the request completes")
            .expect("the waiting task ends normally");
        timeout(DEADLINE, shutdown.wait())
            .await
            .expect("a waiter made after the request completes at once");
    }

    #[tokio::test]
    async fn a_dropped_trigger_releases_waiters_without_raising_the_request() {
        let (trigger, shutdown) = Shutdown::channel();
        let waiting = tokio::spawn(shutdown.wait());
        drop(trigger);
        timeout(DEADLINE, waiting)
            .await
            .expect("dropping the trigger releases the waiter")
            .expect("the waiting task ends normally");
        assert!(!shutdown.is_requested());
    }
}
