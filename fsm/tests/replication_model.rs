//! Model-based test of the replication core: simulated Redis servers (replication ids, offsets,
//! partial and full resynchronisation, restarts without persistence, partitions), a writer that
//! confirms writes with `WAIT 1` and keeps its connection until it fails, role labels, and an
//! operator whose only memory is the persisted `TopologyStatus`: every pass starts from status
//! and a fresh observation, and a pass may crash half-way through its commands or before its
//! status write. Requested switchovers run the operator's handover (pause the primary's writes, promote the
//! caught-up target, demote the old primary, unpause), which a crash may cut after any of its commands; a
//! pause then ends by itself with time.
//!
//! Checked after every step: at most one pod carries the primary label; a promoted pod holds every
//! confirmed write that still exists anywhere; a full resynchronisation never wipes a confirmed
//! write from a replica. After healing everything: exactly one primary, every other server
//! replicating from it, every surviving confirmed write on it, and `decide` says `Steady`; or a
//! stop that `check_stop_justified` accepts.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use redis_fsm::{
    decide, desired_roles, label_patches, Endpoint, FailoverState, NoCandidate, PodReplication,
    ReplicaLink, RoleLabel, ServerRole, ServerState, StopReason, Timestamp, TopologyAction,
    TopologyPolicy, TopologyStatus, Unobserved,
};

const PODS: usize = 3;

/// How a healed cluster ends.
#[derive(Debug, PartialEq)]
enum Settled {
    /// One primary, every other pod linked to it.
    Steady,
    /// The operator refused to promote anything and asks for manual intervention.
    Stopped(StopReason),
}
const DELAY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
enum Action {
    Operate,
    /// A pass that dies after `n` commands, or before its status write.
    OperateCrash(usize),
    Tick(i64),
    Write,
    Confirm,
    Sync(usize),
    Replicate(usize),
    Kill(usize),
    Start(usize),
    Partition(usize),
    /// A person asks for a switchover to this pod.
    Request(usize),
    /// This replica's replication stream is held back, or flows again (its link stays up: a busy replica).
    Stall(usize),
}

/// How long the handover pauses the primary's writes (`CLIENT PAUSE`), ms.
const PAUSE_MS: i64 = 10_000;

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        20 => Just(Action::Operate),
        6 => (0..4usize).prop_map(Action::OperateCrash),
        8 => (1..15_000i64).prop_map(Action::Tick),
        20 => Just(Action::Write),
        10 => Just(Action::Confirm),
        15 => (0..PODS).prop_map(Action::Sync),
        25 => (0..PODS).prop_map(Action::Replicate),
        3 => (0..PODS).prop_map(Action::Kill),
        6 => (0..PODS).prop_map(Action::Start),
        3 => (0..PODS).prop_map(Action::Partition),
        8 => (0..PODS).prop_map(Action::Request),
        4 => (0..PODS).prop_map(Action::Stall),
    ]
}

#[derive(Clone, Debug)]
struct Server {
    alive: bool,
    reachable: bool,
    run_id: u64,
    master: bool,
    /// For a replica: the pod it replicates from (itself when parked).
    follows: usize,
    link_up: bool,
    replid: u64,
    replid2: Option<u64>,
    second_offset: Option<u64>,
    /// The dataset as a log of write numbers; the replication offset is its length.
    data: Vec<u32>,
    /// Writes are held back until this time (`CLIENT PAUSE ... WRITE`), ms.
    paused_until: i64,
    /// Its replication stream is held back (the link stays up).
    stalled: bool,
}

impl Server {
    fn offset(&self) -> u64 {
        self.data.len() as u64
    }
}

struct Cluster {
    servers: Vec<Server>,
    status: TopologyStatus,
    labels: Vec<Option<RoleLabel>>,
    now: i64,
    next_id: u64,
    writer_conn: Option<usize>,
    next_write: u32,
    /// Accepted writes waiting for `WAIT 1`: (pod, write, offset).
    unconfirmed: Vec<(usize, u32, usize)>,
    confirmed: BTreeSet<u32>,
    /// Confirmed writes whose every copy was destroyed by restarts: no operator can save those.
    lost: BTreeSet<u32>,
    /// A switchover a person asked for (the annotation), until the operator records it.
    request: Option<usize>,
}

fn name(i: usize) -> String {
    format!("cache-{i}")
}

fn index(pod: &str) -> usize {
    pod.trim_start_matches("cache-")
        .parse()
        .expect("model pod name")
}

fn endpoint(i: usize) -> Endpoint {
    Endpoint {
        host: format!("10.0.0.{i}"),
        port: 6379,
    }
}

impl Cluster {
    fn new() -> Self {
        let mut cluster = Cluster {
            servers: Vec::new(),
            status: TopologyStatus::default(),
            labels: vec![None; PODS],
            now: 1_000_000,
            next_id: 1,
            writer_conn: None,
            next_write: 1,
            unconfirmed: Vec::new(),
            confirmed: BTreeSet::new(),
            lost: BTreeSet::new(),
            request: None,
        };
        for i in 0..PODS {
            let server = cluster.fresh_server(i);
            cluster.servers.push(server);
        }
        cluster
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A process that just started without persistence, with the in-pod boot guard: it replicates
    /// from the primary recorded in status, or parks itself when that is itself, nobody, or a
    /// primary being failed over.
    fn fresh_server(&mut self, i: usize) -> Server {
        let follows = match self.status.current_primary.as_deref() {
            Some(current) if !self.status.failover_in_flight() => index(current),
            _ => i,
        };
        Server {
            alive: true,
            reachable: true,
            run_id: self.fresh_id(),
            master: false,
            follows,
            link_up: false,
            replid: self.fresh_id(),
            replid2: None,
            second_offset: None,
            data: Vec::new(),
            paused_until: 0,
            stalled: false,
        }
    }

    fn answers(&self, i: usize) -> bool {
        self.servers[i].alive && self.servers[i].reachable
    }

    fn surviving_confirmed(&self) -> BTreeSet<u32> {
        self.confirmed.difference(&self.lost).copied().collect()
    }

    fn observe(&self) -> Vec<PodReplication> {
        (0..PODS)
            .map(|i| {
                let s = &self.servers[i];
                let server = if self.answers(i) {
                    let role = if s.master {
                        ServerRole::Master
                    } else {
                        let master = endpoint(s.follows);
                        ServerRole::Replica(ReplicaLink {
                            master_host: master.host,
                            master_port: master.port,
                            link_up: s.link_up,
                            sync_in_progress: false,
                            replica_offset: s.offset(),
                        })
                    };
                    Ok(ServerState {
                        run_id: format!("run-{}", s.run_id),
                        uptime_seconds: 1,
                        role,
                        replid: format!("id-{}", s.replid),
                        replid2: s.replid2.map(|r| format!("id-{r}")),
                        repl_offset: s.offset(),
                        second_repl_offset: s.second_offset,
                        aof_enabled: false,
                        loading: false,
                        keys: s.offset(),
                        failover_state: FailoverState::None,
                        server: Default::default(),
                    })
                } else {
                    Err(Unobserved::unreachable("connection refused"))
                };
                PodReplication {
                    pod: name(i),
                    ordinal: i as u32,
                    endpoint: endpoint(i),
                    pod_ready: s.alive,
                    pod_deleting: false,
                    node_ready: true,
                    node_cordoned: false,
                    outdated: false,
                    server,
                }
            })
            .collect()
    }

    /// Turns server `i` into a replica of `to`; a master drops its own replicas' links.
    fn make_replica(&mut self, i: usize, to: usize) {
        if self.servers[i].master {
            for s in self.servers.iter_mut() {
                if !s.master && s.follows == i {
                    s.link_up = false;
                }
            }
        }
        let s = &mut self.servers[i];
        s.master = false;
        s.follows = to;
        s.link_up = false;
    }

    fn promote(&mut self, i: usize) {
        let survivors = self.surviving_confirmed();
        let missing: Vec<u32> = survivors
            .iter()
            .filter(|w| !self.servers[i].data.contains(w))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "promoted {} without confirmed writes {missing:?}",
            name(i)
        );
        if self.servers[i].master {
            return;
        }
        let new_id = self.fresh_id();
        let s = &mut self.servers[i];
        s.master = true;
        s.link_up = false;
        s.replid2 = Some(s.replid);
        s.second_offset = Some(s.offset() + 1);
        s.replid = new_id;
    }

    fn set_labels(&mut self, pods: &[PodReplication]) {
        let live: Vec<(String, Option<RoleLabel>)> =
            (0..PODS).map(|i| (name(i), self.labels[i])).collect();
        let desired = desired_roles(&self.status, pods, 0);
        for (pod, role) in label_patches(&live, &desired) {
            self.labels[index(&pod)] = role;
            let primaries = self
                .labels
                .iter()
                .filter(|l| **l == Some(RoleLabel::Primary))
                .count();
            assert!(
                primaries <= 1,
                "two pods labelled primary: {:?}",
                self.labels
            );
        }
    }

    /// One operator pass; `crash_after` cuts it short.
    fn operate(&mut self, crash_after: Option<usize>) -> TopologyAction {
        let pods = self.observe();
        let policy = TopologyPolicy {
            replicas: PODS as u32,
            failover_delay: DELAY,
            switchover_request: self.request.map(name),
            ..TopologyPolicy::default()
        };
        let action = decide(&self.status, &pods, &policy, Timestamp(self.now));
        if let Some(next) = self.status.after(&action) {
            if crash_after.is_some() {
                return action;
            }
            self.status = next;
        }
        // The request is consumed once recorded as intent (or once moot), as the reconciler removes the
        // annotation.
        if self.status.switchover.is_some()
            || self.request.map(name).as_deref() == self.status.current_primary.as_deref()
        {
            self.request = None;
        }
        if let TopologyAction::Switchover { from, to } = &action {
            self.hand_over(index(from), index(to), crash_after.unwrap_or(usize::MAX));
            if crash_after.is_none() {
                self.set_labels(&pods);
            }
            return action;
        }
        let targets: Vec<(usize, Option<usize>)> = match &action {
            TopologyAction::Fence { pods } => pods.iter().map(|p| (index(p), None)).collect(),
            TopologyAction::Promote { pod } => vec![(index(pod), Some(index(pod)))],
            TopologyAction::Repoint { pods, to } => {
                pods.iter().map(|p| (index(p), Some(index(to)))).collect()
            }
            _ => Vec::new(),
        };
        let limit = crash_after.unwrap_or(usize::MAX);
        for (i, to) in targets.into_iter().take(limit) {
            if !self.answers(i) {
                continue;
            }
            match (&action, to) {
                (TopologyAction::Promote { .. }, _) => self.promote(i),
                (_, Some(to)) => self.make_replica(i, to),
                (_, None) => self.make_replica(i, i),
            }
        }
        if crash_after.is_none() {
            self.set_labels(&pods);
        }
        action
    }

    fn paused(&self, i: usize) -> bool {
        self.now < self.servers[i].paused_until
    }

    /// The operator's handover from `f` to `t`, cut short after `limit` commands: pause `f`'s writes, poll
    /// until `t` has processed `f`'s offset (replication goes on meanwhile) or give up and unpause, promote
    /// `t`, demote `f` to a replica of `t`, unpause `f`.
    fn hand_over(&mut self, f: usize, t: usize, limit: usize) {
        if limit == 0 || !self.answers(f) {
            return;
        }
        self.servers[f].paused_until = self.now + PAUSE_MS;
        // The polls: the target's link goes on delivering what `f` took.
        for _ in 0..=self.servers[f].data.len() {
            self.replicate(t);
        }
        let (from, to) = (&self.servers[f], &self.servers[t]);
        let caught_up = from.master
            && self.answers(t)
            && !to.master
            && to.follows == f
            && to.link_up
            && to.offset() == from.offset();
        if !caught_up {
            if limit > 1 {
                self.servers[f].paused_until = 0;
            }
            return;
        }
        if limit == 1 {
            return;
        }
        self.promote(t);
        if limit == 2 || !self.answers(f) {
            return;
        }
        self.make_replica(f, t);
        if limit == 3 {
            return;
        }
        self.servers[f].paused_until = 0;
    }

    fn sync(&mut self, i: usize) {
        let m = self.servers[i].follows;
        if !self.answers(i) || self.servers[i].master || self.servers[i].link_up || m == i {
            return;
        }
        if !self.answers(m) || !self.servers[m].master {
            return;
        }
        let (replica, master) = (self.servers[i].clone(), self.servers[m].clone());
        let partial = replica.replid == master.replid
            || (Some(replica.replid) == master.replid2
                && master
                    .second_offset
                    .is_some_and(|end| replica.offset() < end));
        if partial {
            assert!(
                master.data.starts_with(&replica.data),
                "partial resync of a diverged replica"
            );
        } else {
            let wiped: Vec<u32> = replica
                .data
                .iter()
                .filter(|w| self.confirmed.contains(w) && !master.data.contains(w))
                .copied()
                .collect();
            assert!(
                wiped.is_empty(),
                "full resync of {} from {} wipes confirmed writes {wiped:?}",
                name(i),
                name(m)
            );
            self.servers[i].data = master.data.clone();
        }
        let s = &mut self.servers[i];
        s.replid = master.replid;
        s.replid2 = if partial { master.replid2 } else { None };
        s.second_offset = if partial { master.second_offset } else { None };
        s.link_up = true;
    }

    fn replicate(&mut self, i: usize) {
        let m = self.servers[i].follows;
        if !self.servers[i].link_up {
            return;
        }
        if !self.answers(i) || !self.answers(m) || !self.servers[m].master {
            self.servers[i].link_up = false;
            return;
        }
        if self.servers[i].stalled {
            return;
        }
        let len = self.servers[i].data.len();
        if let Some(&next) = self.servers[m].data.get(len) {
            self.servers[i].data.push(next);
        }
    }

    fn write(&mut self) {
        // A paused server holds the write back on the kept connection: it is taken once the pause ends if
        // the server is still a master (READONLY otherwise), so nothing is written now and the connection stays.
        if self
            .writer_conn
            .is_some_and(|c| self.answers(c) && self.servers[c].master && self.paused(c))
        {
            return;
        }
        let usable = |c: &Cluster, i: usize| c.answers(i) && c.servers[i].master;
        if !self.writer_conn.is_some_and(|c| usable(self, c)) {
            // The connection failed: resolve the `NAME` Service again.
            self.writer_conn = self
                .labels
                .iter()
                .position(|l| *l == Some(RoleLabel::Primary));
        }
        let Some(conn) = self.writer_conn.filter(|&c| usable(self, c)) else {
            return;
        };
        let w = self.next_write;
        self.next_write += 1;
        self.servers[conn].data.push(w);
        let offset = self.servers[conn].data.len();
        self.unconfirmed.push((conn, w, offset));
    }

    /// `WAIT 1`: a write is confirmed once a replica linked to the server that took it has it.
    fn confirm(&mut self) {
        let mut still = Vec::new();
        for (p, w, offset) in std::mem::take(&mut self.unconfirmed) {
            if !self.answers(p) || !self.servers[p].master {
                continue; // the client saw an error: never confirmed
            }
            let acked = (0..PODS).any(|r| {
                let s = &self.servers[r];
                r != p
                    && self.answers(r)
                    && !s.master
                    && s.follows == p
                    && s.link_up
                    && s.data.get(offset - 1) == Some(&w)
            });
            if acked {
                self.confirmed.insert(w);
            } else {
                still.push((p, w, offset));
            }
        }
        self.unconfirmed = still;
    }

    fn kill(&mut self, i: usize) {
        if !self.servers[i].alive {
            return;
        }
        self.make_replica(i, i);
        let s = &mut self.servers[i];
        s.alive = false;
        s.data.clear();
        let survivors: Vec<u32> = self.surviving_confirmed().into_iter().collect();
        for w in survivors {
            if !self.servers.iter().any(|s| s.data.contains(&w)) {
                self.lost.insert(w);
            }
        }
    }

    fn start(&mut self, i: usize) {
        if !self.servers[i].alive {
            let reachable = self.servers[i].reachable;
            self.servers[i] = self.fresh_server(i);
            self.servers[i].reachable = reachable;
        }
    }

    fn partition(&mut self, i: usize) {
        let reachable = !self.servers[i].reachable;
        self.servers[i].reachable = reachable;
        if !reachable {
            self.servers[i].link_up = false;
            for s in self.servers.iter_mut() {
                if !s.master && s.follows == i {
                    s.link_up = false;
                }
            }
        }
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::Operate => {
                self.operate(None);
            }
            Action::OperateCrash(n) => {
                self.operate(Some(n));
            }
            Action::Tick(ms) => self.now += ms,
            Action::Write => self.write(),
            Action::Confirm => self.confirm(),
            Action::Sync(i) => self.sync(i),
            Action::Replicate(i) => self.replicate(i),
            Action::Kill(i) => self.kill(i),
            Action::Start(i) => self.start(i),
            Action::Partition(i) => self.partition(i),
            Action::Request(i) => self.request = Some(i),
            Action::Stall(i) => self.servers[i].stalled = !self.servers[i].stalled,
        }
    }

    /// Heals every failure, then lets servers and operator run until the operator is steady, or stops because
    /// no pod can be promoted without guessing (the "stop and say so instead of guessing").
    fn settle(&mut self) -> Settled {
        for i in 0..PODS {
            self.start(i);
            self.servers[i].reachable = true;
            self.servers[i].stalled = false;
        }
        self.request = None;
        for _ in 0..200 {
            let action = self.operate(None);
            if action == TopologyAction::Steady
                && (0..PODS).all(|i| {
                    let s = &self.servers[i];
                    s.master || s.link_up
                })
            {
                return Settled::Steady;
            }
            if let TopologyAction::Stop { reason } = action {
                return Settled::Stopped(reason);
            }
            if matches!(action, TopologyAction::WaitFailoverDelay { .. }) {
                self.now += DELAY.as_millis() as i64;
            }
            // A switchover's deadline and back-off, and a pause left by a cut handover, pass with time.
            if matches!(action, TopologyAction::Wait { .. }) {
                self.now += 1_000;
            }
            for i in 0..PODS {
                self.sync(i);
            }
        }
        let last = self.operate(None);
        panic!(
            "no steady state (last action {last:?}): status {:?}, servers {:?}",
            self.status, self.servers
        );
    }

    /// Lets the operator carry out the pending request, then settles.
    fn settle_with_request(&mut self) -> Settled {
        for _ in 0..20 {
            if self.request.is_none() && self.status.switchover.is_none() {
                break;
            }
            if matches!(self.operate(None), TopologyAction::Wait { .. }) {
                self.now += 1_000;
            }
            for i in 0..PODS {
                self.sync(i);
                self.replicate(i);
            }
        }
        self.settle()
    }

    /// A stop must be justified: every pod it names as divergent really holds data, so promoting any pod
    /// would have thrown writes away; every pod it names as not resynced really holds none of the
    /// recorded history while another pod does, and the old primary could not be kept, so promoting
    /// might have thrown away a confirmed write that only the named pods had received.
    fn check_stop_justified(&self, reason: &StopReason) {
        match reason {
            StopReason::NoSafeCandidate(NoCandidate::NoSharedHistory { divergent }) => {
                assert!(!divergent.is_empty(), "stopped without a divergent pod");
                for pod in divergent {
                    assert!(
                        !self.servers[index(pod)].data.is_empty(),
                        "stopped over {pod}, which holds no data: {:?}",
                        self.servers
                    );
                }
            }
            StopReason::NoSafeCandidate(NoCandidate::NotResynced { pods }) => {
                let anchor = self
                    .status
                    .primary_history
                    .as_ref()
                    .expect("a failover stops only with a recorded history");
                let id = |replid: &str| -> u64 {
                    replid
                        .trim_start_matches("id-")
                        .parse()
                        .expect("model replication id")
                };
                let (replid, replid2) = (id(&anchor.replid), anchor.replid2.as_deref().map(id));
                let holds_history = |s: &Server| {
                    s.replid == replid
                        || (Some(s.replid) == replid2
                            && anchor.second_offset.is_some_and(|end| s.offset() < end))
                };
                let primary = self
                    .status
                    .current_primary
                    .as_deref()
                    .map(index)
                    .expect("a failover stops only with a recorded primary");
                assert!(
                    !pods.is_empty(),
                    "stopped without a pod lacking the history"
                );
                for pod in pods {
                    let i = index(pod);
                    assert!(
                        i != primary && self.answers(i) && !holds_history(&self.servers[i]),
                        "stopped over {pod}, which holds the history {anchor:?}: {:?}",
                        self.servers
                    );
                }
                // Another pod still holds the history (else nothing could be lost by promoting).
                assert!(
                    (0..PODS).any(|i| i != primary && holds_history(&self.servers[i])),
                    "stopped over {pods:?} while no pod holds the history: {:?}",
                    self.servers
                );
                // The old primary could not simply be kept: it restarted or left the history.
                let old = &self.servers[primary];
                let intact = self.status.primary_run_id.as_deref()
                    == Some(format!("run-{}", old.run_id).as_str())
                    && holds_history(old);
                assert!(
                    !intact,
                    "stopped over {pods:?} instead of keeping the intact primary: {:?}",
                    self.servers
                );
            }
            StopReason::SeveralPodsHoldData(pods) => {
                let holding = pods
                    .iter()
                    .filter(|pod| !self.servers[index(pod)].data.is_empty())
                    .count();
                assert!(holding >= 2, "stopped over {pods:?}: {:?}", self.servers);
            }
            other => panic!(
                "stopped after healing: {other:?}, servers {:?}",
                self.servers
            ),
        }
    }

    fn check_converged(&mut self) {
        let masters: Vec<usize> = (0..PODS).filter(|&i| self.servers[i].master).collect();
        assert_eq!(masters.len(), 1, "servers {:?}", self.servers);
        let primary = masters[0];
        assert_eq!(
            self.status.current_primary.as_deref(),
            Some(name(primary).as_str())
        );
        assert!(!self.status.failover_in_flight());
        for i in (0..PODS).filter(|&i| i != primary) {
            assert_eq!(self.servers[i].follows, primary);
            assert!(self.servers[i].link_up);
        }
        let missing: Vec<u32> = self
            .surviving_confirmed()
            .into_iter()
            .filter(|w| !self.servers[primary].data.contains(w))
            .collect();
        assert!(missing.is_empty(), "confirmed writes lost: {missing:?}");
        // Catch up, then the labels name the primary and every replica.
        for _ in 0..=self.servers[primary].data.len() {
            for i in 0..PODS {
                self.replicate(i);
            }
        }
        assert_eq!(self.operate(None), TopologyAction::Steady);
        assert_eq!(self.labels[primary], Some(RoleLabel::Primary));
        let replicas = self
            .labels
            .iter()
            .filter(|l| **l == Some(RoleLabel::Replica))
            .count();
        assert_eq!(replicas, PODS - 1);
        // A converged instance writes nothing.
        let status = self.status.clone();
        assert_eq!(self.operate(None), TopologyAction::Steady);
        assert_eq!(self.status, status);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn restarted_operator_converges_without_losing_confirmed_writes(
        actions in proptest::collection::vec(action(), 0..120),
    ) {
        let mut cluster = Cluster::new();
        for action in &actions {
            cluster.act(action);
        }
        match cluster.settle() {
            Settled::Steady => cluster.check_converged(),
            Settled::Stopped(reason) => cluster.check_stop_justified(&reason),
        }
    }
}

/// The walk the issue names: writes confirmed, the primary is killed without persistence and comes
/// back empty; a replica is promoted, no write is lost and the old primary rejoins as a replica.
#[test]
fn primary_killed_without_persistence_fails_over_and_rejoins() {
    let mut cluster = Cluster::new();
    assert_eq!(cluster.settle(), Settled::Steady);
    cluster.check_converged();
    let first = cluster
        .servers
        .iter()
        .position(|s| s.master)
        .expect("a primary");
    for _ in 0..5 {
        cluster.write();
        for i in 0..PODS {
            cluster.replicate(i);
        }
        cluster.confirm();
    }
    assert_eq!(cluster.confirmed.len(), 5);
    cluster.kill(first);
    cluster.start(first);
    // The restarted primary is parked by the boot guard: nobody resyncs from it.
    assert!(!cluster.servers[first].master);
    assert!(matches!(
        cluster.operate(None),
        TopologyAction::StartFailover { .. }
    ));
    assert_eq!(cluster.settle(), Settled::Steady);
    cluster.check_converged();
    let now_primary = cluster
        .servers
        .iter()
        .position(|s| s.master)
        .expect("a primary");
    assert_ne!(now_primary, first);
    assert_eq!(cluster.servers[first].data.len(), 5);
}

/// A requested switchover hands over without losing a confirmed write; one cut right after the target's
/// promotion leaves two masters, of which only the old primary carries the label and takes writes once its
/// pause ends; the switchover is abandoned at its deadline and the target follows the old primary again.
#[test]
fn a_handover_completes_or_is_abandoned_after_a_cut_without_losing_a_confirmed_write() {
    let mut cluster = Cluster::new();
    assert_eq!(cluster.settle(), Settled::Steady);
    let confirm_some = |cluster: &mut Cluster, n: usize| {
        for _ in 0..n {
            cluster.write();
            for i in 0..PODS {
                cluster.replicate(i);
            }
            cluster.confirm();
        }
    };
    confirm_some(&mut cluster, 3);
    let first = cluster.servers.iter().position(|s| s.master).unwrap();
    let target = (first + 1) % PODS;

    // Cut after the promotion: the old primary is still a paused master.
    cluster.request = Some(target);
    assert!(matches!(
        cluster.operate(None),
        TopologyAction::StartSwitchover { .. }
    ));
    assert!(matches!(
        cluster.operate(Some(2)),
        TopologyAction::Switchover { .. }
    ));
    assert!(cluster.servers[target].master && cluster.servers[first].master);
    assert!(cluster.paused(first));
    cluster.write();
    assert!(
        cluster.unconfirmed.is_empty(),
        "a paused primary took a write"
    );
    // The pause ends: writes go on at the labelled old primary, confirmed by the third pod.
    cluster.now += PAUSE_MS;
    confirm_some(&mut cluster, 3);
    assert_eq!(cluster.confirmed.len(), 6);
    cluster.now += 15_000;
    assert!(matches!(
        cluster.operate(None),
        TopologyAction::AbortSwitchover { .. }
    ));
    assert_eq!(cluster.settle(), Settled::Steady);
    cluster.check_converged();
    assert!(cluster.servers[first].master);

    // Uncut, after the back-off: the target takes over with every confirmed write, the old primary follows.
    cluster.now += 60_000;
    cluster.request = Some(target);
    assert_eq!(cluster.settle_with_request(), Settled::Steady);
    cluster.check_converged();
    assert!(cluster.servers[target].master);
    assert_eq!(cluster.servers[first].follows, target);
}
