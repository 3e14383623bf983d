//! The reasons of the Kubernetes Events the operator publishes on a RedisInstance.
//!
//! An Event carries either a reason the status carries too ([`EventReason::Status`]: a phase transition, a
//! rolling-update step, a confirmed primary, a stop that needs a person) or one only Events carry. Every
//! publishing site takes an [`EventReason`], the generated `docs/fsm.md` lists them all ([`docs_section`]),
//! and the claims test (`tests/claims.rs`) checks the hand-written docs against [`EventReason::all`].

use std::fmt::{self, Write as _};

use redis_fsm::Reason;

/// Declares the reasons only Events carry, with their wire name and meaning in one place.
macro_rules! event_reasons {
    ($($variant:ident => $name:literal, $meaning:literal;)+) => {
        /// The reason of an Event the operator publishes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventReason {
            /// A reason the status carries too, e.g. the new reason of a phase transition.
            Status(Reason),
            $(#[doc = $meaning] $variant,)+
        }

        impl EventReason {
            /// The reasons only Events carry, in declaration order.
            pub const EVENT_ONLY: &'static [EventReason] = &[$(EventReason::$variant,)+];

            /// The CamelCase reason of the Event; it never changes for a variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    EventReason::Status(reason) => reason.as_str(),
                    $(EventReason::$variant => $name,)+
                }
            }

            /// What the Event says, for the generated docs.
            pub fn description(self) -> &'static str {
                match self {
                    EventReason::Status(reason) => reason.description(),
                    $(EventReason::$variant => $meaning,)+
                }
            }
        }
    };
}

event_reasons! {
    ExposedWithoutTLS => "ExposedWithoutTLS",
        "Warning: a client Service is `NodePort` or `LoadBalancer` while TLS is off, so passwords and data cross \
         the network in clear text; the status carries the condition `ExposedWithoutTLS` as long as it lasts.";
    FailoverStarted => "FailoverStarted",
        "Warning: a failover starts; the note names the old primary and why it failed (counted by \
         `redis_operator_failovers_total`).";
    SwitchoverStarted => "SwitchoverStarted",
        "A switchover of the healthy primary starts (writes pause until the target holds every one, then the roles \
         swap); the note names both pods and why (counted \
         by `redis_operator_switchovers_total`).";
    SwitchoverAbandoned => "SwitchoverAbandoned",
        "Warning: a switchover did not complete in time; writes continue on the old primary, and the note says \
         when the next attempt is.";
    SwitchoverRefused => "SwitchoverRefused",
        "Warning: a requested switchover names a pod that is not one of the instance's, or the instance has no \
         replica; the request is removed.";
    ConfigNeedsRestart => "ConfigNeedsRestart",
        "A configuration change restarts the pods; the note names the directives that cannot be set at runtime.";
    ReplacingStatefulSet => "ReplacingStatefulSet",
        "The StatefulSet is deleted with orphan propagation to apply a new claim template; pods and claims are \
         kept.";
    ExpandingClaim => "ExpandingClaim",
        "A PersistentVolumeClaim is asked for a larger size.";
    DeletingClaim => "DeletingClaim",
        "A PersistentVolumeClaim is deleted with its instance (`storage.whenDeleted: Delete`).";
    PasswordInForce => "PasswordInForce",
        "The application password of the Secret's current version is in force on every pod.";
    CertificateReloaded => "CertificateReloaded",
        "Every pod serves the TLS Secret's renewed certificate.";
    Undecodable => "Undecodable",
        "Warning: the operator cannot read the RedisInstance and leaves it and its children alone until it is \
         fixed; the note names the field and its expected type.";
}

impl EventReason {
    /// Every reason an Event can carry: each status [`Reason`], then [`EventReason::EVENT_ONLY`].
    pub fn all() -> impl Iterator<Item = EventReason> {
        Reason::ALL
            .iter()
            .map(|&reason| EventReason::Status(reason))
            .chain(EventReason::EVENT_ONLY.iter().copied())
    }
}

impl From<Reason> for EventReason {
    fn from(reason: Reason) -> Self {
        EventReason::Status(reason)
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Events part of `docs/fsm.md`: the reasons only Events carry, and which status reasons Events repeat.
pub fn docs_section() -> String {
    let mut out = String::from(
        "\n## Events\n\nEvery phase transition publishes an Event with the new phase's reason (a `Warning` \
         into `Failed`); the topology pass publishes the rolling-update steps (`UpdatingReplicas`, \
         `UpdatingOldPrimary`, `StatefulSetUpdating`), `PrimaryConfirmed` when a primary is confirmed, and \
         `NoSafeFailoverCandidate` or `DivergentHistories` once when it stops; a configuration change applied at \
         runtime publishes `ConfigAppliedLive`. These reasons are only Events':\n\n\
         | Reason | Meaning |\n| --- | --- |\n",
    );
    for reason in EventReason::EVENT_ONLY {
        let _ = writeln!(out, "| `{reason}` | {} |", reason.description());
    }
    out
}

/// The whole `docs/fsm.md`: the phase engine's generated page and the operator's Events.
pub fn fsm_docs_page() -> String {
    redis_fsm::docs_page() + &docs_section()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_reasons_are_unique_and_none_shadows_a_status_reason() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in EventReason::all() {
            assert!(seen.insert(reason.as_str()), "{reason} named twice");
            assert!(!reason.description().is_empty());
        }
        for reason in EventReason::EVENT_ONLY {
            assert_eq!(Reason::from_name(reason.as_str()), None);
        }
    }

    #[test]
    fn a_status_reason_keeps_its_name_on_the_event() {
        assert_eq!(
            EventReason::from(Reason::ConfigAppliedLive).as_str(),
            "ConfigAppliedLive"
        );
        assert_eq!(EventReason::FailoverStarted.to_string(), "FailoverStarted");
    }

    /// `docs/fsm.md` is generated; regenerate with `REDIS_OPERATOR_BLESS=1 cargo test --lib fsm_docs` or
    /// `cargo run -- fsm --format doc > docs/fsm.md`.
    #[test]
    fn fsm_docs_page_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fsm.md");
        let expected = fsm_docs_page();
        if std::env::var("REDIS_OPERATOR_BLESS").as_deref() == Ok("1") {
            std::fs::write(path, &expected).expect("write docs/fsm.md");
            return;
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/fsm.md is out of date with the code. Regenerate it with `cargo run -- fsm --format doc > \
             docs/fsm.md` (or `REDIS_OPERATOR_BLESS=1 cargo test --lib fsm_docs`) and commit the result."
        );
    }
}
