//! The seven phases a RedisInstance can be in.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The phase of a RedisInstance, as persisted in `status.phase`.
///
/// It is also the state type of the rust-fsm machine (see [`crate::transition`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Phase {
    /// No phase recorded yet (a fresh object); [`crate::step`] never returns it.
    #[default]
    Unknown,
    /// The children are being created for the first time.
    Creating,
    /// The children exist and no change is rolling out, but not every replica is ready.
    Pending,
    /// The StatefulSet rollout is complete and every replica is ready.
    Running,
    /// A change to the StatefulSet was just applied or is rolling out.
    Updating,
    /// The instance cannot make progress: invalid spec, a missing child or failing pods.
    Failed,
    /// Deletion was requested; absorbing.
    Terminated,
}

impl Phase {
    /// Every phase, in declaration order.
    pub const ALL: [Phase; 7] = [
        Phase::Unknown,
        Phase::Creating,
        Phase::Pending,
        Phase::Running,
        Phase::Updating,
        Phase::Failed,
        Phase::Terminated,
    ];

    /// The name of the phase, identical to its serialised form.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unknown => "Unknown",
            Phase::Creating => "Creating",
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Updating => "Updating",
            Phase::Failed => "Failed",
            Phase::Terminated => "Terminated",
        }
    }
}

impl Phase {
    /// What the phase means, for the generated docs.
    pub fn description(self) -> &'static str {
        match self {
            Phase::Unknown => "No phase recorded yet; never the result of a step.",
            Phase::Creating => "The children are being created for the first time.",
            Phase::Pending => {
                "The children exist and no change is rolling out, but not every replica is ready."
            }
            Phase::Running => "The StatefulSet rollout is complete and every replica is ready.",
            Phase::Updating => "A change to the StatefulSet was just applied or is rolling out.",
            Phase::Failed => {
                "No progress is possible: invalid spec, missing child or failing pods. \
                 Recovers as soon as the cause clears."
            }
            Phase::Terminated => "Deletion was requested. Absorbing: no input leaves it.",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plain string enum. The derived schema would be a `oneOf` of documented constants, which
/// Kubernetes structural schemas reject in a CRD.
impl JsonSchema for Phase {
    fn schema_name() -> Cow<'static, str> {
        "Phase".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The phase of a RedisInstance.",
            "type": "string",
            "enum": Phase::ALL.map(Phase::as_str),
        })
    }
}
