//! Step 7 of the pipeline, **converge the servers**: what is sent to the Redis servers themselves. Each pass
//! observes every pod, decides with a pure function and acts only on a difference, while holding the leader
//! Lease: the replication topology (failover, switchover, primary-last rollouts), switchover requests, and
//! configuration set at runtime.

pub mod auth;
pub mod command;
pub mod handover;
pub mod live_config;
pub mod switchover;
pub mod tls;
pub mod topology;

use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Why a pass did not bring one pod's server to what it asks. Every pass reports a pod the same way; what
/// it means for the instance is the caller's (see [`PassOutcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending<P = String> {
    /// The operator could not talk to the server: the pod has no address yet, or no connection and login
    /// succeeded within the client's timeouts (refused, timed out, login refused). The pod is starting,
    /// restarting or failing, which its readiness shows.
    Unreachable(String),
    /// The server answered and does not hold it yet: a refusal, a value that differs after sending, nothing
    /// sent while the operator's leadership is not proven, or a pod that only a restart brings there.
    NotYet(P),
}

impl Pending {
    /// Why, as the status names it.
    pub fn why(&self) -> &str {
        match self {
            Pending::Unreachable(why) | Pending::NotYet(why) => why,
        }
    }
}

impl From<crate::redis::RedisError> for Pending {
    /// A failure after the login: a connection that broke or a server that stopped answering is
    /// [`Pending::Unreachable`]; a refusal or an unreadable reply is [`Pending::NotYet`].
    fn from(error: crate::redis::RedisError) -> Self {
        use crate::redis::RedisError as E;
        match error {
            E::ConnectTimeout { .. }
            | E::CommandTimeout { .. }
            | E::Connection { .. }
            | E::Local { .. } => Pending::Unreachable(error.to_string()),
            E::Server { .. } | E::TooLarge { .. } | E::Reply { .. } => {
                Pending::NotYet(error.to_string())
            }
        }
    }
}

/// What one pass found on every pod that is not being deleted, in the order of the pods.
///
/// The one contract for unreachable pods: each pass reports them as [`Pending::Unreachable`], never skips
/// them silently. The password and certificate passes count them as pending (their status names them, and
/// the recorded version moves only once every pod holds it); the live configuration leaves them out of its
/// pending message (a pod that cannot be reached is out of the Services already, and reads the file when it
/// restarts), so an unreachable replica does not hold the phase in `Updating`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassOutcome<T, P = String> {
    /// The pods whose servers hold what the pass brings, with what the pass did there.
    pub done: Vec<(String, T)>,
    /// The pods whose servers do not, with why.
    pub pending: Vec<(String, Pending<P>)>,
}

impl<T, P> Default for PassOutcome<T, P> {
    fn default() -> Self {
        PassOutcome {
            done: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl<T, P> PassOutcome<T, P> {
    /// Whether every pod the pass ran on holds what it brings.
    pub fn everywhere(&self) -> bool {
        self.pending.is_empty()
    }

    /// The names of the pods that do not, in order.
    pub fn pending_pods(&self) -> Vec<&str> {
        self.pending.iter().map(|(pod, _)| pod.as_str()).collect()
    }
}

/// Runs `pass` (observe, decide, act only while leading, verify) on every pod that is not being deleted, all
/// at once, and gathers what each returned into one [`PassOutcome`], in the order of `pods`. Every pass talks
/// to one server with the client's bounded timeouts, so a slow or unreachable server delays only its own
/// answer. The live configuration, password and certificate passes share this.
pub async fn each_live_pod<'a, T, P, Pass, Fut>(
    pods: &'a [Arc<Pod>],
    pass: Pass,
) -> PassOutcome<T, P>
where
    Pass: Fn(&'a Pod) -> Fut,
    Fut: Future<Output = Result<T, Pending<P>>>,
{
    let passes = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let done = pass(pod);
            async move { (pod.name_any(), done.await) }
        });
    let mut outcome = PassOutcome::default();
    for (pod, result) in join_all(passes).await {
        match result {
            Ok(done) => outcome.done.push((pod, done)),
            Err(why) => outcome.pending.push((pod, why)),
        }
    }
    outcome
}

/// The pod's address, or [`Pending::Unreachable`].
pub fn address_of<P>(pod: &Pod) -> Result<redis_fsm::Endpoint, Pending<P>> {
    topology::endpoint(pod).ok_or_else(|| Pending::Unreachable("no address yet".into()))
}

/// A login to the pod's server (a kept connection when there is one), or [`Pending::Unreachable`] with why.
pub async fn login<P>(
    at: &redis_fsm::Endpoint,
    access: &crate::redis::Access,
) -> Result<crate::redis::RedisNode, Pending<P>> {
    crate::redis::RedisNode::open(&at.host, at.port, access)
        .await
        .map_err(|e| Pending::Unreachable(e.to_string()))
}

/// A new connection and login to the pod's server, to see what it presents and accepts now.
pub async fn login_fresh<P>(
    at: &redis_fsm::Endpoint,
    access: &crate::redis::Access,
) -> Result<crate::redis::RedisNode, Pending<P>> {
    crate::redis::RedisNode::open_fresh(&at.host, at.port, access)
        .await
        .map_err(|e| Pending::Unreachable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(name: &str, ip: Option<&str>, deleting: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn every_live_pod_is_done_or_pending_in_order_and_a_pod_being_deleted_is_left_out() {
        let pods = [
            pod("cache-0", Some("10.0.0.1"), false),
            pod("cache-1", None, false),
            pod("cache-2", Some("10.0.0.3"), true),
            pod("cache-3", Some("10.0.0.4"), false),
        ];
        let outcome: PassOutcome<String> = each_live_pod(&pods, |pod| async move {
            let at = address_of(pod)?;
            if at.host == "10.0.0.4" {
                return Err(Pending::NotYet("refused".into()));
            }
            Ok(at.host)
        })
        .await;
        assert_eq!(outcome.done, vec![("cache-0".into(), "10.0.0.1".into())]);
        assert_eq!(
            outcome.pending,
            vec![
                (
                    "cache-1".into(),
                    Pending::Unreachable("no address yet".into())
                ),
                ("cache-3".into(), Pending::NotYet("refused".into())),
            ]
        );
        assert!(!outcome.everywhere());
        assert_eq!(outcome.pending_pods(), ["cache-1", "cache-3"]);
    }

    #[test]
    fn a_broken_connection_is_unreachable_and_a_refusal_is_not_yet() {
        let broken = crate::redis::RedisError::CommandTimeout {
            endpoint: "10.0.0.1:6379".into(),
            command: "CONFIG",
            after: std::time::Duration::from_secs(2),
        };
        assert!(matches!(Pending::from(broken), Pending::Unreachable(_)));
        let refused = crate::redis::RedisError::Server {
            endpoint: "10.0.0.1:6379".into(),
            command: "CONFIG",
            code: "ERR".into(),
            message: "ERR no".into(),
        };
        assert_eq!(
            Pending::from(refused).why(),
            "CONFIG on 10.0.0.1:6379 was refused: ERR no"
        );
    }
}
