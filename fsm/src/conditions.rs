//! The standard conditions derived from a decision: one slot per type.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::phase::Phase;

/// The condition types [`conditions`] maintains, in the order it returns them.
pub mod condition_types {
    /// True iff the phase is `Running`.
    pub const READY: &str = "Ready";
    /// True iff the phase is `Creating`, `Pending` or `Updating`.
    pub const PROGRESSING: &str = "Progressing";
    /// True iff the phase is `Failed`.
    pub const DEGRADED: &str = "Degraded";
    /// Every maintained type, in order.
    pub const ALL: [&str; 3] = [READY, PROGRESSING, DEGRADED];
}

/// A Kubernetes-style status condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, one of [`condition_types::ALL`].
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"`, `"False"` or `"Unknown"`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A human message.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The RedisInstance generation this condition was computed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("maximum" = crate::history::MAX_GENERATION))]
    pub observed_generation: Option<i64>,
}

/// Whether condition `type_` is true in `phase`.
pub(crate) fn holds_in(type_: &str, phase: Phase) -> bool {
    matches!(
        (type_, phase),
        (condition_types::READY, Phase::Running)
            | (
                condition_types::PROGRESSING,
                Phase::Creating | Phase::Pending | Phase::Updating
            )
            | (condition_types::DEGRADED, Phase::Failed)
    )
}

/// The status of condition `type_` in `phase`; everything is `"Unknown"` in [`Phase::Unknown`].
fn status_in(type_: &str, phase: Phase) -> &'static str {
    if phase == Phase::Unknown {
        "Unknown"
    } else if holds_in(type_, phase) {
        "True"
    } else {
        "False"
    }
}

/// The conditions after `decision`: exactly one per type, in the order of
/// [`condition_types::ALL`].
///
/// Reason and message come from the decision. `lastTransitionTime` is kept from `previous` unless
/// that condition's status changes (or it had none), so an unchanged status never rewrites the
/// time. Conditions of other types in `previous` are dropped.
pub fn conditions(
    previous: &[Condition],
    decision: &Decision,
    generation: i64,
    now: &str,
) -> Vec<Condition> {
    condition_types::ALL
        .iter()
        .map(|&type_| {
            let status = status_in(type_, decision.phase);
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == type_)
                .filter(|c| c.status == status)
                .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: decision.reason.clone(),
                message: decision.message.clone(),
                last_transition_time,
                observed_generation: Some(generation),
            }
        })
        .collect()
}
