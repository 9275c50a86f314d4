//! A replica's lifecycle, for zero-downtime restarts behind a load balancer: starting, ready,
//! draining, stopping (issue #15).
//!
//! - **Starting**: the socket is open (`/healthz` answers) but start-up work is not done
//!   (`--demo` seeding); `/readyz` answers 503. Migrations and job resumption run before the
//!   socket opens: until then a probe's connection is refused, which is "not ready" too.
//! - **Ready**: `/readyz` answers 200.
//! - **Draining**: SIGTERM or SIGINT arrived. `/readyz` answers 503 at once, and everything
//!   else is still served for `--shutdown-drain-secs`, the time load balancers need to see
//!   the 503 (or Kubernetes to take the pod out of its endpoints) and stop sending. Responses
//!   carry `Connection: close`, so clients with kept-alive connections (pinned to this replica
//!   by a connection-level balancer such as kube-proxy) reconnect, through the balancer, to
//!   another replica.
//! - **Stopping**: the listener stops accepting; requests in flight finish, within
//!   `--shutdown-grace-secs` ([`crate::listener`]); event streams end with an SSE `retry:`
//!   hint ([`crate::federation::event_stream`]) so that `EventSource` and `b3o client`
//!   reconnect at once, to a replica that is ready.
//!
//! A second signal during the drain skips the rest of it. Phases only move forward.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Where a replica is in its life. Ordered: a phase never goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
    Stopping,
}

impl Phase {
    /// Whether a load balancer should send this replica new work.
    pub fn is_ready(self) -> bool {
        self == Phase::Ready
    }
}

/// The phase, shared by the readiness probe, the shutdown sequence and open event streams.
#[derive(Debug)]
pub struct Lifecycle {
    phase: watch::Sender<Phase>,
}

impl Lifecycle {
    /// A replica with start-up work still to do (`b3o serve`).
    pub fn starting() -> Arc<Self> {
        Arc::new(Self::at(Phase::Starting))
    }

    /// A replica with nothing left to do before serving (tests, `b3o simulate`).
    pub fn ready() -> Arc<Self> {
        Arc::new(Self::at(Phase::Ready))
    }

    fn at(phase: Phase) -> Self {
        Lifecycle {
            phase: watch::Sender::new(phase),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Follows the phase (event streams end when it reaches [`Phase::Stopping`]).
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Start-up work is done. No effect once draining.
    pub fn mark_ready(&self) {
        self.advance(Phase::Ready);
    }

    /// Stop taking new work: `/readyz` answers 503 from now on.
    pub fn begin_drain(&self) {
        self.advance(Phase::Draining);
    }

    /// The drain is over: the listener stops accepting and event streams end.
    pub fn stop(&self) {
        self.advance(Phase::Stopping);
    }

    /// Moves to `to` if that is forward; returns whether it moved.
    fn advance(&self, to: Phase) -> bool {
        self.phase.send_if_modified(|phase| {
            if *phase < to {
                *phase = to;
                true
            } else {
                false
            }
        })
    }
}

/// Completes when `phase` reaches [`Phase::Stopping`] (or its lifecycle is gone).
pub async fn stopping(mut phase: watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p >= Phase::Stopping).await;
}

/// The shutdown settings of `b3o serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownSettings {
    /// After SIGTERM or SIGINT: seconds to go on serving while `/readyz` answers 503, so that
    /// load balancers stop sending before the listener closes (longer than their health check
    /// interval times its fall count; 0 closes at once).
    #[arg(long, env = "B3O_SHUTDOWN_DRAIN_SECS", default_value_t = 5)]
    pub shutdown_drain_secs: u64,
    /// Then, after the listener closed: the longest wait, in seconds, for requests in flight
    /// to finish before their connections are cut.
    #[arg(long, env = "B3O_SHUTDOWN_GRACE_SECS", default_value_t = crate::listener::SHUTDOWN_GRACE.as_secs())]
    pub shutdown_grace_secs: u64,
}

impl ShutdownSettings {
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_secs)
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// The shutdown sequence: waits for a signal, drains for `drain` (cut short by a second
/// signal), then moves to [`Phase::Stopping`] and completes (the listener's cue to stop
/// accepting). Without any signal source it never completes.
pub async fn drain_on(
    lifecycle: Arc<Lifecycle>,
    drain: Duration,
    mut signals: mpsc::UnboundedReceiver<()>,
) {
    if signals.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
    lifecycle.begin_drain();
    tracing::info!(
        drain_secs = drain.as_secs_f64(),
        "shutting down: not ready any more; serving until the drain ends (a second signal ends it now)"
    );
    tokio::select! {
        () = tokio::time::sleep(drain) => {}
        Some(()) = signals.recv() => tracing::info!("second signal: ending the drain early"),
    }
    lifecycle.stop();
    tracing::info!(
        "drain over: closing the listener and event streams, finishing requests in flight"
    );
}

/// SIGTERM and SIGINT (Ctrl-C), one message each, from now on: the handlers are installed
/// before this returns, so a signal that comes right after start-up is not the default
/// action's (an abrupt exit).
pub fn signals() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
            match signal(kind) {
                Ok(mut stream) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            if tx.send(()).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, ?kind, "cannot listen for a signal"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let l = Lifecycle::starting();
        assert_eq!(l.phase(), Phase::Starting);
        l.mark_ready();
        assert!(l.phase().is_ready());
        l.begin_drain();
        assert_eq!(l.phase(), Phase::Draining);
        // Start-up work finishing late does not make a draining replica ready again.
        l.mark_ready();
        assert_eq!(l.phase(), Phase::Draining);
        l.stop();
        l.begin_drain();
        assert_eq!(l.phase(), Phase::Stopping);
    }

    #[tokio::test]
    async fn a_signal_drains_then_stops_and_a_second_one_cuts_the_drain_short() {
        let l = Lifecycle::ready();
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        // A drain far longer than the test: only the second signal can end it.
        let task = tokio::spawn(drain_on(l.clone(), Duration::from_secs(3600), rx));
        let mut phase = l.subscribe();
        assert!(l.phase().is_ready());
        tx.send(()).unwrap();
        phase.wait_for(|p| *p == Phase::Draining).await.unwrap();
        assert!(!task.is_finished());
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the second signal ends the drain")
            .unwrap();
        assert_eq!(l.phase(), Phase::Stopping);
        // Streams that subscribe after the stop see it at once.
        tokio::time::timeout(Duration::from_secs(30), stopping(l.subscribe()))
            .await
            .unwrap();
    }
}
