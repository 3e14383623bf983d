//! The CamelCase reasons the engine writes to status, transitions and conditions.
//!
//! The operator and the generated docs use these constants so the names cannot drift.

/// The children are being created for the first time ([`crate::Phase::Creating`]).
pub const CREATING: &str = "Creating";
/// Not every replica is ready while no change is rolling out ([`crate::Phase::Pending`]).
pub const PODS_PENDING: &str = "PodsPending";
/// The rollout is complete and every replica is ready ([`crate::Phase::Running`]).
pub const ALL_REPLICAS_READY: &str = "AllReplicasReady";
/// The reconciler changed replicas, image or resources of the StatefulSet in place.
pub const STATEFULSET_UPDATE: &str = "StatefulSetUpdate";
/// The reconciler changed the configuration or storage, so pods restart.
pub const STATEFULSET_RESTART: &str = "StatefulSetRestart";
/// The configuration changed only in directives Redis sets at runtime: set on every pod, no restart.
pub const CONFIG_APPLIED_LIVE: &str = "ConfigAppliedLive";
/// The reconciler created the StatefulSet again for an instance that was already up.
pub const STATEFULSET_RECREATED: &str = "StatefulSetRecreated";
/// A StatefulSet rollout is observed in progress.
pub const STATEFULSET_UPDATING: &str = "StatefulSetUpdating";
/// A child that should exist is absent ([`crate::Phase::Failed`]).
pub const CHILD_MISSING: &str = "ChildMissing";
/// At least one pod is failing ([`crate::Phase::Failed`]).
pub const PODS_FAILING: &str = "PodsFailing";
/// Deletion was requested ([`crate::Phase::Terminated`]).
pub const DELETING: &str = "Deleting";
/// The spec is invalid; used when a [`crate::SpecProblem`] carries no reason of its own.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// The spec asks to shrink storage, which cannot be applied (a [`crate::SpecProblem`] reason).
pub const STORAGE_SHRINK_REFUSED: &str = "StorageShrinkRefused";
/// A child's name is taken by an object this instance does not control; the operator leaves it untouched
/// (a [`crate::SpecProblem`] reason).
pub const CHILD_CONFLICT: &str = "ChildConflict";
/// The application password's Secret is missing, lacks the key, or holds an empty password; nothing is
/// changed until it is fixed (a [`crate::SpecProblem`] reason).
pub const AUTH_SECRET_INVALID: &str = "AuthSecretInvalid";
/// The TLS Secret (`spec.tls.secretName`) is missing, lacks `tls.crt`, `tls.key` or `ca.crt`, or holds PEM
/// that does not parse, a key that does not match the certificate, or a certificate its CA did not sign;
/// nothing is changed until it is fixed (a [`crate::SpecProblem`] reason).
pub const TLS_SECRET_INVALID: &str = "TLSSecretInvalid";
/// `spec.tls` changes in a way replicas cannot replicate across (TLS on or off, another CA) while the instance
/// has more than one replica; nothing is changed (a [`crate::SpecProblem`] reason).
pub const TLS_CHANGE_REFUSED: &str = "TLSChangeRefused";
/// A change was applied but the API server keeps something else, so it is not applied again before a back-off
/// delay (a [`crate::SpecProblem`] reason).
pub const CHANGE_NOT_CONVERGING: &str = "ChangeNotConverging";
/// A failover is in flight: the primary is being moved to another pod ([`crate::Phase::Updating`]).
pub const FAILOVER: &str = "Failover";
/// No pod can be promoted without losing confirmed writes ([`crate::Phase::Failed`]).
pub const NO_SAFE_FAILOVER_CANDIDATE: &str = "NoSafeFailoverCandidate";
/// Several pods hold data of different replication histories ([`crate::Phase::Failed`]).
pub const DIVERGENT_HISTORIES: &str = "DivergentHistories";
/// The `PrimaryAvailable` condition holds: the recorded primary answers as a master.
pub const PRIMARY_CONFIRMED: &str = "PrimaryConfirmed";
/// No pod is a confirmed primary (and no failover is in flight).
pub const NO_CONFIRMED_PRIMARY: &str = "NoConfirmedPrimary";
/// The `ReplicationHealthy` condition holds: every replica is linked to the primary and in sync.
pub const REPLICAS_IN_SYNC: &str = "ReplicasInSync";
/// A replica is syncing, lagging, parked or unreachable, or there is no confirmed primary.
pub const REPLICAS_NOT_IN_SYNC: &str = "ReplicasNotInSync";
/// A switchover is in flight: the healthy primary hands over to a caught-up replica with `FAILOVER TO`
/// ([`crate::Phase::Updating`]).
pub const SWITCHOVER: &str = "Switchover";
/// A rolling update replaces the replicas one at a time ([`crate::Phase::Updating`]).
pub const UPDATING_REPLICAS: &str = "UpdatingReplicas";
/// A rolling update replaced every replica and waits for a requested switchover
/// (`primaryUpdateStrategy: Supervised`, [`crate::Phase::Updating`]).
pub const AWAITING_SWITCHOVER: &str = "AwaitingSwitchover";
/// A rolling update replaces the old primary, a replica since the switchover
/// ([`crate::Phase::Updating`]).
pub const UPDATING_OLD_PRIMARY: &str = "UpdatingOldPrimary";
