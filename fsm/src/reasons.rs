//! The CamelCase reasons the engine writes to status, transitions and conditions.
//!
//! One enum, so a reason the docs name is one the code can produce: the operator and the generated docs
//! (`docs/fsm.md`) take every name from [`Reason`], and a claims test checks the hand-written docs against
//! [`Reason::ALL`].

use std::fmt;

/// Declares [`Reason`] with its wire name and meaning in one place, so the enum, [`Reason::ALL`],
/// [`Reason::as_str`] and [`Reason::description`] cannot disagree.
macro_rules! reasons {
    ($($variant:ident => $name:literal, $meaning:literal;)+) => {
        /// A reason of a phase, a transition or a condition, as written to status (`status.reason`,
        /// `status.history[].reason`, `status.conditions[].reason`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $(#[doc = $meaning] $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The CamelCase name written to status; it never changes for a variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)+
                }
            }

            /// What the reason means, for the generated docs.
            pub fn description(self) -> &'static str {
                match self {
                    $(Reason::$variant => $meaning,)+
                }
            }
        }
    };
}

reasons! {
    Creating => "Creating",
        "The children are being created for the first time (`Creating`).";
    PodsPending => "PodsPending",
        "Not every replica is ready while no change is rolling out (`Pending`).";
    AllReplicasReady => "AllReplicasReady",
        "The rollout is complete, every replica is ready and serves its role (`Running`).";
    StatefulSetUpdate => "StatefulSetUpdate",
        "The reconciler changed replicas, image, resources or placement of the StatefulSet in place.";
    StatefulSetRestart => "StatefulSetRestart",
        "The reconciler changed the configuration or storage, so pods restart.";
    ConfigAppliedLive => "ConfigAppliedLive",
        "The configuration changed only in directives Redis sets at runtime: set on every pod, no restart.";
    StatefulSetRecreated => "StatefulSetRecreated",
        "The reconciler created the StatefulSet again for an instance that was already up.";
    StatefulSetUpdating => "StatefulSetUpdating",
        "A StatefulSet rollout is observed in progress.";
    ChildMissing => "ChildMissing",
        "A child that should exist is absent, or the API server refused to create or update it (`Failed`).";
    PodsFailing => "PodsFailing",
        "At least one pod is failing, or cannot be created (`Failed`).";
    Deleting => "Deleting",
        "Deletion was requested (`Terminated`).";
    InvalidSpec => "InvalidSpec",
        "The spec is invalid; nothing is changed (a spec problem).";
    StorageChangeRefused => "StorageChangeRefused",
        "The spec shrinks or removes storage, which cannot be applied; nothing is changed (a spec problem).";
    ChildConflict => "ChildConflict",
        "A child's name is taken by an object this instance does not control; the operator leaves it untouched \
         (a spec problem).";
    AuthSecretInvalid => "AuthSecretInvalid",
        "The application password's Secret is missing, lacks the key, or holds an empty password; nothing is \
         changed until it is fixed (a spec problem).";
    TlsSecretInvalid => "TLSSecretInvalid",
        "The TLS Secret (`spec.tls.secretName`) is missing, lacks `tls.crt`, `tls.key` or `ca.crt`, or holds \
         PEM that does not parse, a key that does not match the certificate, or a certificate its CA did not \
         sign; nothing is changed until it is fixed (a spec problem).";
    TlsChangeRefused => "TLSChangeRefused",
        "`spec.tls` changes in a way replicas cannot replicate across (TLS on or off, another CA) while the \
         instance has more than one replica; nothing is changed (a spec problem).";
    ChangeNotConverging => "ChangeNotConverging",
        "A change was applied but the API server keeps something else, so it is not applied again before a \
         back-off delay (a spec problem).";
    Failover => "Failover",
        "A failover is in flight: the primary is being moved to another pod (`Updating`, and condition \
         `PrimaryAvailable` false).";
    Switchover => "Switchover",
        "A switchover is in flight: the healthy primary hands over to a caught-up replica, writes paused until it \
         holds every one (`Updating`).";
    NoSafeFailoverCandidate => "NoSafeFailoverCandidate",
        "No pod can be promoted without losing confirmed writes; a person decides (`Failed`).";
    DivergentHistories => "DivergentHistories",
        "Several pods hold data and none is recorded as the last primary; a person chooses one (`Failed`).";
    UnsupportedServer => "UnsupportedServer",
        "The image runs a server the operator does not support (Redis before 7.0, Valkey before 7.2), or a \
         change of `spec.image` that replicas could not follow (Valkey to Redis, a lower release); refused at \
         admission when the image's tag tells, else at first contact, when no command is sent to any pod \
         (`Failed`).";
    RestoreFailed => "RestoreFailed",
        "The backup `spec.bootstrap.fromBackup` names cannot be restored (it failed, its checksum does not match, \
         the server cannot load it) or pods already hold other data; no pod serves (`Failed`).";
    UpdatingReplicas => "UpdatingReplicas",
        "A rolling update replaces the replicas one at a time (`Updating`).";
    AwaitingSwitchover => "AwaitingSwitchover",
        "A rolling update replaced every replica and waits for a requested switchover \
         (`primaryUpdateStrategy: Supervised`, `Updating`).";
    UpdatingOldPrimary => "UpdatingOldPrimary",
        "A rolling update replaces the old primary, a replica since the switchover (`Updating`).";
    PrimaryConfirmed => "PrimaryConfirmed",
        "Condition `PrimaryAvailable` holds: the recorded primary answers as a master.";
    NoConfirmedPrimary => "NoConfirmedPrimary",
        "Condition `PrimaryAvailable` does not hold: no pod is a confirmed primary and no failover is in flight.";
    ReplicasInSync => "ReplicasInSync",
        "Condition `ReplicationHealthy` holds: every replica is linked to the primary and in sync.";
    ReplicasNotInSync => "ReplicasNotInSync",
        "Condition `ReplicationHealthy` does not hold: a replica is syncing, lagging, parked or unreachable, or \
         there is no confirmed primary.";
}

impl Reason {
    /// The reason named `name` on the wire, if it is one.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.as_str().to_owned()
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Reason {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_camel_case_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for &reason in Reason::ALL {
            let name = reason.as_str();
            assert!(seen.insert(name), "{name} named twice");
            assert!(
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{name} is not CamelCase"
            );
            assert_eq!(Reason::from_name(name), Some(reason));
            assert_eq!(reason.to_string(), name);
            assert!(!reason.description().is_empty());
        }
        assert_eq!(Reason::from_name("StorageShrinkRefused"), None);
    }
}
