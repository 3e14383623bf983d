//! Why a command to the Redis servers was not carried out; shared by the topology commands and the handover.

use crate::redis::RedisError;

/// Why a topology command was not (fully) sent.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// This process cannot prove it holds the leader Lease.
    #[error("not sending {0}: leadership of the operator is not proven")]
    NotLeading(&'static str),
    /// The pod to command has no address.
    #[error("pod {0} has no address")]
    NoAddress(String),
    /// The server refused or did not answer.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A switchover gave up before promoting anyone: the primary was unpaused and nothing changed.
    #[error("switchover given up, nothing changed: {0}")]
    SwitchoverGaveUp(String),
}
