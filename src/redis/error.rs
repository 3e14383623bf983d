//! Why a call to a server failed ([`RedisError`]), the refusals a server answers with, and the bound on any
//! text taken from a server.

use std::time::Duration;

use redis_fsm::{Refusal, Unobserved};

use super::info::ParseError;

/// The longest text from a server (an error reply) kept in an error, in characters.
pub const MAX_ERROR_TEXT: usize = 200;

/// `text` for a status, Event or log line: control characters replaced, at most `max` characters.
pub fn bounded_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Why a call to a server failed. Every text in it that came from the server is bounded
/// ([`MAX_ERROR_TEXT`]); `Debug` shows what `Display` shows.
#[derive(thiserror::Error)]
pub enum RedisError {
    /// The connection was not established within the connect timeout.
    #[error("connecting to {endpoint} timed out after {after:?}")]
    ConnectTimeout {
        /// `host:port`.
        endpoint: String,
        /// The bound that expired.
        after: Duration,
    },
    /// The server did not answer within the command timeout.
    #[error("{command} on {endpoint} timed out after {after:?}")]
    CommandTimeout {
        /// `host:port`.
        endpoint: String,
        /// The command name.
        command: &'static str,
        /// The bound that expired.
        after: Duration,
    },
    /// The server could not be reached or the connection broke.
    #[error("{command} on {endpoint}: {}", bounded_text(&source.to_string(), MAX_ERROR_TEXT))]
    Connection {
        /// `host:port`.
        endpoint: String,
        /// The command name (`connect` for the connection itself).
        command: &'static str,
        /// The client library's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// The server answered with an error reply, e.g. `ERR FAILOVER target HOST and PORT is not a
    /// replica.` or `LOADING`.
    #[error("{command} on {endpoint} was refused: {message}")]
    Server {
        /// `host:port`.
        endpoint: String,
        /// The command name.
        command: &'static str,
        /// The error code, e.g. `ERR`, `LOADING`, `BUSY` (at most 32 characters).
        code: String,
        /// The error as the client library renders it, cut to [`MAX_ERROR_TEXT`] characters.
        message: String,
    },
    /// The server sent more than [`super::capped::MAX_READ_BYTES`] in one pass on this connection: a reply no real server sends.
    #[error("{command} on {endpoint}: unreadable, the server sent more than {limit} bytes")]
    TooLarge {
        /// `host:port`.
        endpoint: String,
        /// The command name.
        command: &'static str,
        /// The cap.
        limit: usize,
    },
    /// The server answered something the operator does not understand (never copied: see [`ParseError`]).
    #[error("unreadable reply to {command} from {endpoint}: {source}")]
    Reply {
        /// `host:port`.
        endpoint: String,
        /// The command name.
        command: &'static str,
        /// What was wrong with it.
        #[source]
        source: ParseError,
    },
}

impl RedisError {
    /// How a live server refused: `BUSY` (a script or function runs past `busy-reply-threshold`), or
    /// `ERR max number of clients reached`. `None` for every other failure, including an unreachable server.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            RedisError::Server { code, .. } if code == "BUSY" => Some(Refusal::Busy),
            RedisError::Server { message, .. }
                if message.contains("max number of clients reached") =>
            {
                Some(Refusal::MaxClients)
            }
            _ => None,
        }
    }
}

impl std::fmt::Debug for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisError({self})")
    }
}

impl From<&RedisError> for Unobserved {
    /// An observation that failed becomes part of the observation, not an abort. Its text goes into the
    /// status: bounded.
    fn from(error: &RedisError) -> Self {
        Unobserved {
            reason: bounded_text(&error.to_string(), 2 * MAX_ERROR_TEXT),
            refusal: error.refusal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_observation_becomes_an_unobserved_value() {
        let error = RedisError::ConnectTimeout {
            endpoint: "10.0.0.1:6379".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(
            Unobserved::from(&error).reason,
            "connecting to 10.0.0.1:6379 timed out after 2s"
        );
    }
}
