//! Model-based test: a simulated StatefulSet controller under random interleavings of spec edits,
//! controller progress, pod readiness and failures, and deletion, feeding `step` after every action.

use proptest::prelude::*;
use redis_fsm::{
    condition_types, conditions, step, Change, Condition, FailingPod, History, Observation, Phase,
    Reason, RolloutStatus, HISTORY_LIMIT,
};

#[derive(Clone, Debug)]
enum Action {
    EditReplicas(i32),
    EditImage,
    EditConfig,
    EditLiveConfig,
    EditStorage,
    ControllerObserves,
    ControllerStep,
    PodReady(usize),
    PodUnready(usize),
    PodFails(usize),
    PodRecovers(usize),
    Resync,
    Delete,
}

fn action() -> impl Strategy<Value = Action> {
    // Deletion is rare so that most walks reach the settle-in-Running check.
    prop_oneof![
        20 => (1..5i32).prop_map(Action::EditReplicas),
        10 => Just(Action::EditImage),
        10 => Just(Action::EditConfig),
        10 => Just(Action::EditLiveConfig),
        10 => Just(Action::EditStorage),
        30 => Just(Action::ControllerObserves),
        60 => Just(Action::ControllerStep),
        50 => (0..5usize).prop_map(Action::PodReady),
        10 => (0..5usize).prop_map(Action::PodUnready),
        10 => (0..5usize).prop_map(Action::PodFails),
        20 => (0..5usize).prop_map(Action::PodRecovers),
        10 => Just(Action::Resync),
        3 => Just(Action::Delete),
    ]
}

#[derive(Clone, Debug)]
struct Pod {
    revision: u32,
    ready: bool,
    failing: bool,
}

/// The RedisInstance, its StatefulSet and the StatefulSet controller, simplified.
#[derive(Debug)]
struct Cluster {
    // RedisInstance
    generation: i64,
    spec_replicas: i32,
    deleted: bool,
    /// What the next reconcile applies to the StatefulSet.
    unapplied: Change,
    // StatefulSet spec and status
    sts_exists: bool,
    sts_generation: i64,
    sts_replicas: i32,
    template_revision: u32,
    observed_generation: Option<i64>,
    update_revision: u32,
    current_revision: u32,
    pods: Vec<Pod>,
    // Operator-side status
    phase: Phase,
    history: History,
    conditions: Vec<Condition>,
    clock: u64,
}

impl Cluster {
    fn new(spec_replicas: i32) -> Self {
        Cluster {
            generation: 1,
            spec_replicas,
            deleted: false,
            unapplied: Change::Created,
            sts_exists: false,
            sts_generation: 0,
            sts_replicas: 0,
            template_revision: 0,
            observed_generation: None,
            update_revision: 0,
            current_revision: 0,
            pods: Vec::new(),
            phase: Phase::Unknown,
            history: History::new(),
            conditions: Vec::new(),
            clock: 0,
        }
    }

    fn edit(&mut self, change: Change) {
        self.generation += 1;
        // A later edit before the reconcile still needs what the earlier one needed; restarts dominate
        // rolling updates, which dominate live configuration changes.
        let rank = |change: Change| match change {
            Change::None => 0,
            Change::LiveConfig => 1,
            Change::RollingUpdate => 2,
            _ => 3,
        };
        if rank(change) >= rank(self.unapplied) {
            self.unapplied = change;
        }
    }

    fn pod(&mut self, index: usize) -> Option<&mut Pod> {
        let len = self.pods.len();
        if len == 0 {
            None
        } else {
            self.pods.get_mut(index % len)
        }
    }

    /// The StatefulSet controller records its progress in status.
    fn refresh_current_revision(&mut self) {
        let n = self.pods.len();
        if n as i32 == self.sts_replicas
            && self
                .pods
                .iter()
                .all(|p| p.revision == self.update_revision && p.ready)
        {
            self.current_revision = self.update_revision;
        }
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::EditReplicas(n) if n != self.spec_replicas && !self.deleted => {
                self.spec_replicas = n;
                self.edit(Change::RollingUpdate);
            }
            Action::EditImage if !self.deleted => self.edit(Change::RollingUpdate),
            Action::EditConfig if !self.deleted => self.edit(Change::Restart),
            Action::EditLiveConfig if !self.deleted => self.edit(Change::LiveConfig),
            Action::EditStorage if !self.deleted => self.edit(Change::StorageChange),
            Action::ControllerObserves if self.sts_exists => {
                self.observed_generation = Some(self.sts_generation);
                self.update_revision = self.template_revision;
                // A new StatefulSet starts with its only revision as the current one.
                if self.current_revision == 0 {
                    self.current_revision = self.update_revision;
                }
            }
            Action::ControllerStep if self.observed_generation == Some(self.sts_generation) => {
                let desired = self.sts_replicas as usize;
                if self.pods.len() < desired {
                    self.pods.push(Pod {
                        revision: self.update_revision,
                        ready: false,
                        failing: false,
                    });
                } else if self.pods.len() > desired {
                    self.pods.pop();
                } else if let Some(pod) = self
                    .pods
                    .iter_mut()
                    .rev()
                    .find(|p| p.revision != self.update_revision)
                {
                    *pod = Pod {
                        revision: self.update_revision,
                        ready: false,
                        failing: false,
                    };
                }
                self.refresh_current_revision();
            }
            Action::PodReady(i) => {
                if let Some(pod) = self.pod(i).filter(|p| !p.failing) {
                    pod.ready = true;
                }
            }
            Action::PodUnready(i) => {
                if let Some(pod) = self.pod(i) {
                    pod.ready = false;
                }
            }
            Action::PodFails(i) => {
                if let Some(pod) = self.pod(i) {
                    pod.failing = true;
                    pod.ready = false;
                }
            }
            Action::PodRecovers(i) => {
                if let Some(pod) = self.pod(i) {
                    pod.failing = false;
                }
            }
            Action::Delete => self.deleted = true,
            _ => {}
        }
    }

    /// The reconciler: apply the spec to the StatefulSet, observe, and call `step`.
    fn reconcile(&mut self) -> redis_fsm::Decision {
        let mut change = Change::None;
        if !self.deleted {
            change = std::mem::take(&mut self.unapplied);
            match change {
                // The StatefulSet is not touched; the values are set on the servers at once.
                Change::None | Change::LiveConfig => {}
                Change::Created => {
                    self.sts_exists = true;
                    self.template_revision = 1;
                }
                // Replica edits alone would keep the template; bumping it anyway only makes the
                // model stricter.
                Change::RollingUpdate | Change::Restart | Change::StorageChange => {
                    self.template_revision += 1;
                }
            }
            if !matches!(change, Change::None | Change::LiveConfig) {
                self.sts_generation += 1;
                self.sts_replicas = self.spec_replicas;
            }
        }
        let statefulset = self.sts_exists.then(|| RolloutStatus {
            generation: self.sts_generation,
            observed_generation: self.observed_generation,
            replicas: self.pods.len() as i32,
            ready_replicas: self.pods.iter().filter(|p| p.ready).count() as i32,
            updated_replicas: self
                .pods
                .iter()
                .filter(|p| p.revision == self.update_revision)
                .count() as i32,
            current_revision: Some(format!("rev-{}", self.current_revision)),
            update_revision: Some(format!("rev-{}", self.update_revision)),
        });
        let observation = Observation {
            generation: self.generation,
            deletion_requested: self.deleted,
            spec_replicas: self.spec_replicas,
            spec_problem: None,
            missing_child: None,
            change,
            change_note: None,
            statefulset,
            failing_pods: self
                .pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.failing)
                .map(|(i, _)| FailingPod {
                    pod: format!("demo-{i}"),
                    reason: "CrashLoopBackOff".into(),
                    message: "exit 1".into(),
                })
                .collect(),
            failover: None,
            switchover: false,
            rollout: None,
            manual_intervention: None,
            replication_pending: None,
            config_pending: None,
            scheduling_pending: None,
        };
        self.clock += 1;
        let now = format!("2024-01-01T00:00:00Z+{}", self.clock);
        let decision = step(self.phase, &observation, &now);
        if let Some(transition) = decision.transition.clone() {
            self.history.record(transition);
        }
        self.conditions = conditions(&self.conditions, &decision, self.generation, &now);
        self.check(&observation, &decision);
        self.phase = decision.phase;
        decision
    }

    /// Whether the simulated cluster truly runs the spec with every pod ready.
    fn truly_running(&self) -> bool {
        self.sts_exists
            && self.observed_generation == Some(self.sts_generation)
            && self.pods.len() as i32 == self.spec_replicas
            && self
                .pods
                .iter()
                .all(|p| p.revision == self.template_revision && p.ready && !p.failing)
    }

    fn check(&self, observation: &Observation, decision: &redis_fsm::Decision) {
        assert_ne!(decision.phase, Phase::Unknown);
        assert!(self.history.len() <= HISTORY_LIMIT);
        assert_eq!(self.conditions.len(), condition_types::ALL.len());
        if self.deleted {
            assert_eq!(decision.phase, Phase::Terminated, "{self:#?}");
            return;
        }
        if decision.phase == Phase::Running {
            assert!(self.truly_running(), "Running, but: {self:#?}");
        }
        match observation.change {
            Change::None => {}
            Change::Created => assert_eq!(decision.phase, Phase::Creating),
            Change::RollingUpdate => {
                assert_eq!(decision.phase, Phase::Updating);
                assert_eq!(decision.reason, Reason::StatefulSetUpdate);
            }
            Change::Restart | Change::StorageChange => {
                assert_eq!(decision.phase, Phase::Updating);
                assert_eq!(decision.reason, Reason::StatefulSetRestart);
            }
            Change::LiveConfig => {
                assert_eq!(decision.phase, Phase::Updating);
                assert_eq!(decision.reason, Reason::ConfigAppliedLive);
            }
        }
        let failing = !observation.failing_pods.is_empty() && observation.change == Change::None;
        assert_eq!(decision.phase == Phase::Failed, failing, "{decision:?}");
    }

    /// Lets the controller finish, every pod recover and become ready.
    fn settle(&mut self) {
        self.act(&Action::ControllerObserves);
        for pod in &mut self.pods {
            pod.failing = false;
            pod.ready = true;
        }
        while !self.truly_running() || self.current_revision != self.update_revision {
            self.act(&Action::ControllerStep);
            self.reconcile();
            for pod in &mut self.pods {
                pod.ready = true;
            }
            self.refresh_current_revision();
        }
    }
}

fn ready_status(cluster: &Cluster) -> &str {
    cluster
        .conditions
        .iter()
        .find(|c| c.type_ == condition_types::READY)
        .map(|c| c.status.as_str())
        .unwrap_or("missing")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_phase_never_lies_and_settles_in_running(
        replicas in 1..5i32,
        actions in proptest::collection::vec(action(), 0..60),
    ) {
        let mut cluster = Cluster::new(replicas);
        prop_assert_eq!(cluster.reconcile().phase, Phase::Creating);
        for action in &actions {
            cluster.act(action);
            cluster.reconcile();
        }
        if cluster.deleted {
            prop_assert_eq!(cluster.phase, Phase::Terminated);
            return Ok(());
        }
        // Reconcile any edit still unapplied, then let the cluster settle.
        cluster.reconcile();
        cluster.settle();
        let decision = cluster.reconcile();
        prop_assert_eq!(decision.phase, Phase::Running, "{:#?}", cluster);
        prop_assert_eq!(decision.reason, Reason::AllReplicasReady);
        prop_assert_eq!(ready_status(&cluster), "True");
        // Quiescent: nothing changes any more, not even condition times.
        let conditions_before = cluster.conditions.clone();
        let again = cluster.reconcile();
        prop_assert!(again.transition.is_none());
        prop_assert_eq!(&cluster.conditions, &conditions_before);
    }
}

/// The random walks above must actually visit every phase and every input the model can produce.
#[test]
fn random_walks_cover_every_phase() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;

    let mut runner = TestRunner::deterministic();
    let mut phases = BTreeSet::new();
    let mut inputs = BTreeSet::new();
    let mut undeleted = 0;
    let strategy = proptest::collection::vec(action(), 0..60);
    for _ in 0..300 {
        let actions = strategy.new_tree(&mut runner).unwrap().current();
        let mut cluster = Cluster::new(3);
        for action in std::iter::once(&Action::Resync).chain(&actions) {
            cluster.act(action);
            let decision = cluster.reconcile();
            phases.insert(decision.phase);
            inputs.insert(decision.input);
        }
        undeleted += usize::from(!cluster.deleted);
    }
    assert!(
        undeleted > 150,
        "only {undeleted}/300 walks reach the settle check"
    );
    let expected: BTreeSet<Phase> = Phase::ALL[1..].iter().copied().collect();
    assert_eq!(phases, expected);
    let missing: Vec<_> = redis_fsm::Input::ALL
        .into_iter()
        .filter(|i| !inputs.contains(i))
        .collect();
    // The model has no spec problems, missing children, replication topology or vanished StatefulSets.
    assert_eq!(
        missing,
        [
            redis_fsm::Input::SpecInvalid,
            redis_fsm::Input::ChildMissing,
            redis_fsm::Input::ManualInterventionNeeded,
            redis_fsm::Input::FailingOver,
            redis_fsm::Input::StatefulSetNotObserved
        ]
    );
}

#[test]
fn fresh_instance_walks_creating_pending_running() {
    let mut cluster = Cluster::new(2);
    assert_eq!(cluster.reconcile().phase, Phase::Creating);
    cluster.act(&Action::ControllerObserves);
    assert_eq!(cluster.reconcile().phase, Phase::Creating);
    cluster.act(&Action::ControllerStep);
    cluster.act(&Action::ControllerStep);
    let pending = cluster.reconcile();
    assert_eq!(pending.phase, Phase::Pending);
    assert_eq!(
        pending.message,
        "Waiting for pods to become ready. Ready: 0/2"
    );
    cluster.act(&Action::PodReady(0));
    cluster.act(&Action::PodReady(1));
    cluster.act(&Action::ControllerStep);
    let running = cluster.reconcile();
    assert_eq!(running.phase, Phase::Running);
    assert_eq!(running.message, "All 2/2 replicas are ready");
    let phases: Vec<(Phase, Phase)> = cluster
        .history
        .entries()
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        phases,
        [
            (Phase::Unknown, Phase::Creating),
            (Phase::Creating, Phase::Pending),
            (Phase::Pending, Phase::Running)
        ]
    );

    cluster.act(&Action::EditImage);
    let updating = cluster.reconcile();
    assert_eq!(updating.phase, Phase::Updating);
    assert_eq!(updating.reason, Reason::StatefulSetUpdate);
    cluster.act(&Action::ControllerObserves);
    cluster.act(&Action::ControllerStep);
    let rolling = cluster.reconcile();
    assert_eq!(rolling.reason, Reason::StatefulSetUpdating);
    assert_eq!(
        rolling.message,
        "StatefulSet is being updated. Updated: 1/2, Ready: 1/2"
    );
}
