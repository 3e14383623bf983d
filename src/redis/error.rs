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
    /// The operator could not open a socket for a reason of its own host: no local port left
    /// (`EADDRNOTAVAIL`, e.g. tens of thousands of sockets in `TIME_WAIT`), no file descriptor (`EMFILE`,
    /// `ENFILE`), no buffer or memory (`ENOBUFS`, `ENOMEM`). Says nothing of the server.
    #[error("connecting to {endpoint}: the operator's own host refused a socket: {source}")]
    Local {
        /// `host:port`.
        endpoint: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error reply, e.g. `NOPERM` (an ACL without the command) or
    /// `LOADING`.
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
    /// `ERR max number of clients reached`; or that the operator could not open a socket at all
    /// ([`RedisError::Local`]). `None` for every other failure, including an unreachable server.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            RedisError::Local { .. } => Some(Refusal::OperatorCannotConnect),
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

/// Whether `error`, from opening a socket, is the operator's own host refusing it (see [`RedisError::Local`]).
pub fn is_local(error: &std::io::Error) -> bool {
    // Linux errno values: EADDRNOTAVAIL, EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(error.raw_os_error(), Some(99 | 24 | 23 | 105 | 12))
        || error.kind() == std::io::ErrorKind::AddrNotAvailable
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
    fn the_operators_own_host_refusing_a_socket_is_no_unreachable_server() {
        for errno in [99, 24, 23, 105, 12] {
            assert!(
                is_local(&std::io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        // ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH: the server or the path to it.
        for errno in [111, 110, 113, 101] {
            assert!(
                !is_local(&std::io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        let error = RedisError::Local {
            endpoint: "10.0.0.1:6379".into(),
            source: std::io::Error::from_raw_os_error(99),
        };
        assert_eq!(error.refusal(), Some(Refusal::OperatorCannotConnect));
        assert_eq!(
            Unobserved::from(&error).refusal,
            Some(Refusal::OperatorCannotConnect)
        );
    }

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
