//! What the operator observed about one pod's Redis server: the input of [`crate::elect`] and
//! [`crate::decide`].
//!
//! An unreachable server is a value ([`PodReplication::server`] is a `Result`), not an error that
//! aborts the reconcile: the decisions need to know *which* pods could not be observed.

use std::fmt;

/// The address the operator uses to reach a pod's server, and the one replicas are pointed at.
///
/// The edge chooses it (a stable per-pod DNS name in a cluster, the pod IP where there is no DNS);
/// a replica follows a pod when its `master_host`/`master_port` equal this endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why a pod's server could not be observed this pass (connection refused, timeout, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unobserved {
    /// Human detail for status and logs, e.g. `"connect timed out after 2s"`.
    pub reason: String,
    /// `Some` when the server *answered*, refusing to be observed: its process is alive. `None` when it
    /// could not be reached at all (refused or timed-out connection, broken link, unreadable reply).
    pub refusal: Option<Refusal>,
}

impl Unobserved {
    /// A server that could not be reached.
    pub fn unreachable(reason: impl Into<String>) -> Unobserved {
        Unobserved {
            reason: reason.into(),
            refusal: None,
        }
    }
}

/// How a live server refused the operator's observation. A server that answers is not dead: a failover
/// must not treat it like one that cannot be reached (see `docs/replication.md`, *A server that refuses*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `BUSY`: it runs a script or function past `busy-reply-threshold` and serves nobody until that ends,
    /// is killed (`SCRIPT KILL`, `FUNCTION KILL`) or, once the script wrote, the server is shut down.
    Busy,
    /// `ERR max number of clients reached`: every connection slot is taken. The clients it has are still
    /// served; a new primary would be refused the same way.
    MaxClients,
    /// Not the server's answer: the operator could not open a socket at all (no local port or file
    /// descriptor left, `EADDRNOTAVAIL`, `EMFILE`). Nothing is known of the server, and the operator could not
    /// carry out a failover either, so it is treated as alive until the operator can look again.
    OperatorCannotConnect,
}

impl Refusal {
    /// Every refusal.
    pub const ALL: [Refusal; 3] = [
        Refusal::Busy,
        Refusal::MaxClients,
        Refusal::OperatorCannotConnect,
    ];

    /// Whether a primary that refuses this way counts as alive (no failure, no failover): it serves the
    /// clients it has, or the operator cannot tell.
    pub fn presumed_alive(self) -> bool {
        matches!(self, Refusal::MaxClients | Refusal::OperatorCannotConnect)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Busy => "busy running a script (BUSY)",
            Refusal::MaxClients => "refusing new connections (max number of clients reached)",
            Refusal::OperatorCannotConnect => {
                "not observed: the operator could not open a connection (its own host is out of ports or files)"
            }
        })
    }
}

/// A replica's view of its link to the server it replicates from (`INFO replication`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaLink {
    /// `master_host`: where this replica was told to replicate from.
    pub master_host: String,
    /// `master_port`.
    pub master_port: u16,
    /// `master_link_status:up`.
    pub link_up: bool,
    /// `master_sync_in_progress:1`: a full synchronisation is running.
    pub sync_in_progress: bool,
    /// `slave_repl_offset`: how far this replica has processed the replication stream.
    pub replica_offset: u64,
}

impl ReplicaLink {
    /// Whether this replica was told to replicate from `endpoint` (whatever its link state).
    pub fn follows(&self, endpoint: &Endpoint) -> bool {
        self.master_host == endpoint.host && self.master_port == endpoint.port
    }

    /// Whether it receives `endpoint`'s replication stream as it comes: told to follow it, link up, and
    /// no full synchronisation running.
    pub fn streams_from(&self, endpoint: &Endpoint) -> bool {
        self.follows(endpoint) && self.link_up && !self.sync_in_progress
    }
}

/// The role a server reports (`role:` in `INFO replication`, first element of `ROLE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerRole {
    /// `role:master`: the server accepts writes.
    Master,
    /// `role:slave`: a read-only replica.
    Replica(ReplicaLink),
}

/// `master_failover_state` of a server running `FAILOVER` (Redis 6.2+).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailoverState {
    /// `no-failover`.
    #[default]
    None,
    /// `waiting-for-sync`: writes are paused until the target has caught up.
    WaitingForSync,
    /// `failover-in-progress`: the roles are being swapped.
    InProgress,
}

/// What a reachable server reported (`INFO server`, `INFO replication`, `INFO persistence`,
/// `INFO keyspace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// `run_id`: changes on every process start, so a restart is visible even when the pod is not
    /// re-created.
    pub run_id: String,
    /// `uptime_in_seconds`.
    pub uptime_seconds: u64,
    /// Master or replica, with the replica's link.
    pub role: ServerRole,
    /// `master_replid`: the replication history this server's data belongs to.
    pub replid: String,
    /// `master_replid2`: the history it came from before its last promotion, `None` when all zeros.
    pub replid2: Option<String>,
    /// `master_repl_offset`: the position in the history; comparable only between servers that
    /// share the history.
    pub repl_offset: u64,
    /// `second_repl_offset`: up to where `replid2` is valid, `None` when `-1`.
    pub second_repl_offset: Option<u64>,
    /// `aof_enabled:1`: the server appends writes to a file and reloads them on restart.
    pub aof_enabled: bool,
    /// `loading:1`: the server is still loading its dataset, so `keys` is not final yet.
    pub loading: bool,
    /// Keys over all databases (`INFO keyspace`); `0` means the dataset is empty.
    pub keys: u64,
    /// `master_failover_state`.
    pub failover_state: FailoverState,
    /// The server's family and release (`INFO server`).
    pub server: crate::ServerSoftware,
}

/// A primary's replication history: its current replication id, and the one it was promoted from
/// with the offset where that one ends.
///
/// A promoted server starts a new id and keeps the one it came from as `replid2`, valid up to
/// `second_offset`; replicas that followed the old primary keep the old id until they are
/// re-pointed. Data tagged with the current id, or with the old id below `second_offset`, is a
/// prefix of the primary's, so offsets are comparable. This is Redis's own `PSYNC` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationHistory {
    /// The primary's `master_replid`.
    pub replid: String,
    /// The primary's `master_replid2`, `None` when all zeros.
    pub replid2: Option<String>,
    /// The primary's `second_repl_offset`: the old id is valid for offsets below it.
    pub second_offset: Option<u64>,
}

/// One pod of the instance, as observed this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodReplication {
    /// Pod name, e.g. `"cache-1"`.
    pub pod: String,
    /// StatefulSet ordinal, e.g. `1`.
    pub ordinal: u32,
    /// Where the server listens.
    pub endpoint: Endpoint,
    /// The pod's `Ready` condition.
    pub pod_ready: bool,
    /// Whether the pod has a `deletionTimestamp`.
    pub pod_deleting: bool,
    /// Whether the pod's node is `Ready` (`false` when the node is unknown or unreachable).
    pub node_ready: bool,
    /// Whether the pod's node is cordoned (`spec.unschedulable`): a drain may evict it soon.
    pub node_cordoned: bool,
    /// Whether the pod runs an outdated revision of the StatefulSet's pod template.
    pub outdated: bool,
    /// What the server reported, or why it could not be asked.
    pub server: Result<ServerState, Unobserved>,
}

impl PodReplication {
    /// The server's report, when it was reachable.
    pub fn state(&self) -> Option<&ServerState> {
        self.server.as_ref().ok()
    }

    /// Whether the server answered and has finished loading its dataset, so its replication
    /// history and key count can be trusted.
    pub fn is_observed(&self) -> bool {
        self.state().is_some_and(|s| !s.loading)
    }

    /// Whether the server's data is a prefix of `history`: it carries the primary's current id,
    /// or the id the primary was promoted from without going past the promotion point.
    ///
    /// An old primary that kept accepting writes after the promotion carries the old id with a
    /// larger offset: its data diverged, and it does not share the history.
    pub fn shares_history(&self, history: &ReplicationHistory) -> bool {
        self.state().is_some_and(|s| {
            !s.loading
                && (s.replid == history.replid
                    || (history.replid2.as_deref() == Some(s.replid.as_str())
                        && history.second_offset.is_some_and(|end| s.repl_offset < end)))
        })
    }

    /// The history this server's data belongs to, as a primary would record it.
    pub fn history(&self) -> Option<ReplicationHistory> {
        self.state().map(|s| ReplicationHistory {
            replid: s.replid.clone(),
            replid2: s.replid2.clone(),
            second_offset: s.second_repl_offset,
        })
    }

    /// Whether the server is a reachable master.
    pub fn is_master(&self) -> bool {
        self.state()
            .is_some_and(|s| matches!(s.role, ServerRole::Master))
    }

    /// The replica link, when the server is a reachable replica.
    pub fn replica_link(&self) -> Option<&ReplicaLink> {
        match &self.state()?.role {
            ServerRole::Replica(link) => Some(link),
            ServerRole::Master => None,
        }
    }

    /// Whether the server is a replica told to replicate from `endpoint` (whatever its link state).
    pub fn follows(&self, endpoint: &Endpoint) -> bool {
        self.replica_link().is_some_and(|l| l.follows(endpoint))
    }

    /// Whether the server is a replica receiving `endpoint`'s stream as it comes (see
    /// [`ReplicaLink::streams_from`]).
    pub fn streams_from(&self, endpoint: &Endpoint) -> bool {
        self.replica_link()
            .is_some_and(|l| l.streams_from(endpoint))
    }

    /// Whether the server is a replica with a live link to `endpoint`, i.e. it still receives
    /// that server's writes.
    pub fn linked_to(&self, endpoint: &Endpoint) -> bool {
        self.follows(endpoint) && self.replica_link().is_some_and(|l| l.link_up)
    }

    /// Whether the pod may be promoted at all: observed, not being deleted, on a Ready node.
    ///
    /// Pod readiness is deliberately not required: a replica whose primary is gone fails its
    /// readiness check, and it is exactly such a replica that a failover promotes.
    pub fn is_electable(&self) -> bool {
        self.is_observed() && !self.pod_deleting && self.node_ready
    }

    /// How the server refused this pass's observation, when it answered but would not be observed.
    pub fn refusal(&self) -> Option<Refusal> {
        self.server.as_ref().err().and_then(|u| u.refusal)
    }

    /// Whether the server holds any key.
    pub fn holds_data(&self) -> bool {
        self.state().is_some_and(|s| s.keys > 0)
    }
}

/// A reachable, ready pod `name` (ordinal `ordinal`, address `10.0.0.<ordinal>:6379`) whose server
/// reports `role`, history `replid` at `offset`, and `keys` keys: the fixture of the unit tests.
#[cfg(test)]
pub(crate) fn test_pod(
    name: String,
    ordinal: u32,
    role: ServerRole,
    replid: &str,
    offset: u64,
    keys: u64,
) -> PodReplication {
    PodReplication {
        pod: name,
        ordinal,
        endpoint: Endpoint {
            host: format!("10.0.0.{ordinal}"),
            port: 6379,
        },
        pod_ready: true,
        pod_deleting: false,
        node_ready: true,
        node_cordoned: false,
        outdated: false,
        server: Ok(ServerState {
            run_id: format!("run-{ordinal}"),
            uptime_seconds: 10,
            role,
            replid: replid.into(),
            replid2: None,
            repl_offset: offset,
            second_repl_offset: None,
            aof_enabled: false,
            loading: false,
            keys,
            failover_state: FailoverState::None,
            server: Default::default(),
        }),
    }
}
