//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): only the holder runs the controller.
//!
//! - A standby waits. It takes the lease when the holder's lease expires (holder died), or at once when the
//!   holder releases it: a watch on the Lease wakes it, because kube-lease-manager alone would only look again
//!   when its view of the lease expires.
//! - On shutdown the leader stops the controller first (in-flight reconciles finish) and releases the lease
//!   afterwards, so two controllers never run at the same time and a standby takes over without waiting.
//! - A leader that loses the lease stops its controller and the process ends with [`Error::LeadershipLost`]:
//!   the Deployment restarts it as a fresh standby with fresh caches, as client-go based operators do.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long a shutting-down leader waits for the release of the lease to reach the API server.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before retrying after the lease could not be read or created.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// Why the elected run ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process took the lease while this one was leading.
    #[error("leadership of lease {0} was lost")]
    LeadershipLost(String),
}

/// Which Lease to compete for, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This process's holder identity; unique among the competing processes.
    pub identity: String,
    /// How long the lease is valid after its last renewal.
    pub duration_seconds: u64,
}

/// Seconds before expiry at which the holder renews the lease: a third of its duration, at least one second.
/// It also bounds the clock skew tolerated between the competing processes. Needs `duration_seconds >= 2`.
pub fn renew_margin(duration_seconds: u64) -> u64 {
    (duration_seconds / 3).max(1)
}

/// The Lease's namespace: the explicit setting, else the pod's own namespace, else the watched namespace,
/// else `default`.
pub fn lease_namespace(
    explicit: Option<&str>,
    pod_namespace: Option<&str>,
    watch_namespace: Option<&str>,
) -> String {
    [explicit, pod_namespace, watch_namespace]
        .into_iter()
        .flatten()
        .find(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// The holder identity: the explicit one (the pod name in a cluster), else `<hostname>-<pid>`.
pub fn identity(explicit: Option<&str>, hostname: &str, pid: u32) -> String {
    match explicit {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("{hostname}-{pid}"),
    }
}

/// This machine's host name (empty when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// What a change of the Lease's holder, seen by the watch, means to this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderChange {
    /// The lease was held and now is free: a standby should try to take it now.
    Released,
    /// This process held the lease and now someone else does: leadership is lost.
    TakenOver,
    /// Nothing to act on (a renewal, the first look, or a change between other processes).
    Unremarkable,
}

/// Classifies the step from `previous` to `current` holder as seen by `me`.
pub fn classify_holder_change(
    me: &str,
    previous: Option<&str>,
    current: Option<&str>,
) -> HolderChange {
    match (previous, current) {
        (Some(_), None) => HolderChange::Released,
        (Some(before), Some(now)) if before == me && now != me => HolderChange::TakenOver,
        _ => HolderChange::Unremarkable,
    }
}

/// The lease manager's background task and the channel on which it says whether this process holds the lease.
struct Participation {
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// This process's part in the election.
pub struct Election {
    client: Client,
    settings: LeaseSettings,
    holders: BoxStream<'static, Option<String>>,
    last_holder: Option<String>,
    participation: Option<Participation>,
}

/// Every holder the Lease has, as a watch sees it (`None` when it is free or deleted).
fn holders(api: Api<Lease>, name: &str) -> BoxStream<'static, Option<String>> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .backoff(crate::observe::watch::WatchBackoff::default())
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                    Some(lease.spec.and_then(|s| s.holder_identity))
                }
                Ok(watcher::Event::Delete(_)) => Some(None),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                Err(error) => {
                    debug!(%error, "lease watch error");
                    None
                }
            }
        })
        .boxed()
}

impl Election {
    /// Prepares to compete for the lease; nothing is requested until [`Election::acquire`].
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client.clone(), &settings.namespace);
        let holders = holders(api, &settings.name);
        Self {
            client,
            settings,
            holders,
            last_holder: None,
            participation: None,
        }
    }

    async fn participate(&self) -> Result<Participation, LeaseManagerError> {
        let duration = self.settings.duration_seconds;
        let params = LeaseParams::new(&self.settings.identity, duration, renew_margin(duration));
        let manager = LeaseManager::new(
            self.client.clone(),
            &self.settings.name,
            &self.settings.namespace,
            params,
            LeaseCreateMode::AutoCreate,
        )
        .await?;
        let (leading, task) = manager.watch().await;
        Ok(Participation { leading, task })
    }

    /// Remembers the holder the watch reports and says what the change means.
    fn observe_holder(&mut self, holder: Option<String>) -> HolderChange {
        let change = classify_holder_change(
            &self.settings.identity,
            self.last_holder.as_deref(),
            holder.as_deref(),
        );
        self.last_holder = holder;
        change
    }

    /// Waits until this process holds the lease. `standing_by` is set once the lease manager runs and the
    /// Lease shows another holder (the standby's readiness); a process that takes the lease at once never sets it.
    pub async fn acquire(&mut self, standing_by: &watch::Sender<bool>) {
        loop {
            let mut participation = match self.participate().await {
                Ok(participation) => participation,
                Err(error) => {
                    warn!(%error, lease = %self.settings.name, "cannot take part in the election; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            info!(identity = %self.settings.identity, lease = %self.settings.name, namespace = %self.settings.namespace, "waiting for the lease");
            loop {
                tokio::select! {
                    changed = participation.leading.changed() => {
                        if changed.is_err() {
                            warn!(result = ?(&mut participation.task).await, "lease manager stopped; restarting it");
                            tokio::time::sleep(RETRY_DELAY).await;
                            break;
                        }
                        if *participation.leading.borrow_and_update() {
                            info!(identity = %self.settings.identity, lease = %self.settings.name, "acquired the lease; leading");
                            self.participation = Some(participation);
                            return;
                        }
                    }
                    Some(holder) = self.holders.next() => {
                        if holder.as_ref().is_some_and(|h| *h != self.settings.identity) {
                            standing_by.send_replace(true);
                        }
                        if self.observe_holder(holder) == HolderChange::Released {
                            debug!("lease released by its holder; competing for it now");
                            drop(participation.leading);
                            let _ = participation.task.await;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Resolves when the leadership acquired by [`Election::acquire`] is lost.
    pub async fn lost(&mut self) {
        let Some(participation) = self.participation.as_mut() else {
            return;
        };
        loop {
            tokio::select! {
                changed = participation.leading.changed() => {
                    if changed.is_err() || !*participation.leading.borrow_and_update() {
                        return;
                    }
                }
                Some(holder) = self.holders.next() => {
                    let change = classify_holder_change(&self.settings.identity, self.last_holder.as_deref(), holder.as_deref());
                    self.last_holder = holder;
                    if change == HolderChange::TakenOver {
                        return;
                    }
                }
            }
        }
    }

    /// Releases the lease (if held) and stops competing.
    pub async fn release(mut self) {
        let Some(participation) = self.participation.take() else {
            return;
        };
        // Closing the channel makes the manager's task release the lease and end.
        drop(participation.leading);
        match tokio::time::timeout(RELEASE_TIMEOUT, participation.task).await {
            Ok(Ok(Ok(_))) => info!(lease = %self.settings.name, "released the lease"),
            Ok(Ok(Err(error))) => warn!(%error, "could not release the lease"),
            Ok(Err(error)) => warn!(%error, "lease manager task failed"),
            Err(_) => warn!("timed out releasing the lease"),
        }
    }
}

/// Runs `controller` only while this process holds the lease, until `shutdown` resolves.
///
/// `controller` gets a future that resolves when it must stop (it should finish in-flight work and return), and
/// the [`Leadership`] to check before commands only the leader may send.
/// `ready` is true while a standby takes part in the election and sees the leader; once leading it is false
/// until the controller sets it (caches synced).
pub async fn run_elected<C, F>(
    mut election: Election,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
    controller: C,
) -> Result<(), Error>
where
    C: FnOnce(watch::Sender<bool>, StopSignal, Leadership) -> F,
    F: Future<Output = ()>,
{
    let mut shutdown = pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {
            info!("stopping while on standby");
            return Ok(());
        }
        _ = election.acquire(&ready) => {}
    }
    ready.send_replace(false);
    let (stop, stop_signal) = oneshot::channel();
    let leadership = Leadership(election.participation.as_ref().map(|p| p.leading.clone()));
    let mut controller = pin!(controller(ready, StopSignal(stop_signal), leadership));
    let (lost, controller_done) = tokio::select! {
        _ = &mut controller => (false, true),
        _ = &mut shutdown => (false, false),
        _ = election.lost() => (true, false),
    };
    let _ = stop.send(());
    if !controller_done {
        info!("stopping the controller");
        controller.await;
    }
    if lost {
        let name = election.settings.name.clone();
        warn!(lease = %name, "leadership lost; exiting so that the process restarts as a standby");
        return Err(Error::LeadershipLost(name));
    }
    election.release().await;
    Ok(())
}

/// Whether this process may send commands only the leader may send (topology changes to Redis servers).
///
/// With leader election it follows the lease manager's view: false as soon as the lease could not be renewed
/// before its deadline or another holder took it. Ask it right before every such command.
#[derive(Clone, Debug)]
pub struct Leadership(Option<watch::Receiver<bool>>);

impl Leadership {
    /// Leader election is off: this process is the only operator and always leads.
    pub fn unconditional() -> Self {
        Self(None)
    }

    /// Whether leadership is proven right now.
    pub fn is_held(&self) -> bool {
        self.0.as_ref().is_none_or(|leading| *leading.borrow())
    }
}

/// Resolves when the elected controller must stop.
pub struct StopSignal(oneshot::Receiver<()>);

impl StopSignal {
    /// Waits for the stop (or for the election to be gone).
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_margin_is_a_third_and_below_the_duration() {
        assert_eq!(renew_margin(15), 5);
        assert_eq!(renew_margin(2), 1);
        assert_eq!(renew_margin(4), 1);
        for duration in 2..100 {
            let margin = renew_margin(duration);
            assert!(margin >= 1 && margin < duration, "{duration}: {margin}");
        }
    }

    #[test]
    fn lease_namespace_prefers_explicit_then_pod_then_watched() {
        assert_eq!(lease_namespace(Some("a"), Some("b"), Some("c")), "a");
        assert_eq!(lease_namespace(None, Some("b"), Some("c")), "b");
        assert_eq!(lease_namespace(None, None, Some("c")), "c");
        assert_eq!(lease_namespace(None, Some(""), None), "default");
        assert_eq!(lease_namespace(None, None, None), "default");
    }

    #[test]
    fn identity_is_the_pod_name_or_host_and_pid() {
        assert_eq!(
            identity(Some("redis-operator-7d9-abc"), "host", 42),
            "redis-operator-7d9-abc"
        );
        assert_eq!(identity(None, "host", 42), "host-42");
        assert_eq!(identity(Some(""), "host", 42), "host-42");
    }

    #[test]
    fn leadership_follows_the_lease_manager() {
        assert!(Leadership::unconditional().is_held());
        let (tx, rx) = watch::channel(true);
        let leadership = Leadership(Some(rx));
        assert!(leadership.is_held());
        tx.send_replace(false);
        assert!(
            !leadership.is_held(),
            "a lost renewal must stop commands at once"
        );
    }

    #[test]
    fn holder_changes() {
        use HolderChange::*;
        let me = "me";
        assert_eq!(classify_holder_change(me, Some("other"), None), Released);
        assert_eq!(classify_holder_change(me, Some("me"), None), Released);
        assert_eq!(
            classify_holder_change(me, Some("me"), Some("other")),
            TakenOver
        );
        assert_eq!(
            classify_holder_change(me, Some("me"), Some("me")),
            Unremarkable
        );
        // A stale view of the previous holder before our own lock shows up is not a loss.
        assert_eq!(
            classify_holder_change(me, Some("other"), Some("me")),
            Unremarkable
        );
        assert_eq!(
            classify_holder_change(me, Some("a"), Some("b")),
            Unremarkable
        );
        assert_eq!(
            classify_holder_change(me, None, Some("other")),
            Unremarkable
        );
        assert_eq!(classify_holder_change(me, None, None), Unremarkable);
    }
}
