//! The readiness check: a Redis `PING` spoken in RESP over a plain TCP connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// What a server answered to `PING`, as far as readiness is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingReply {
    /// `+PONG`: the server serves commands.
    Pong,
    /// The server answers but demands authentication (`-NOAUTH`): it is up, so it counts as ready.
    AuthRequired,
    /// An error reply such as `-LOADING`: the server is up but not serving.
    Error(String),
    /// Anything else a Redis server would not say.
    Unexpected(String),
    /// No complete line yet.
    Incomplete,
}

impl PingReply {
    /// Whether the reply means the server is ready for clients.
    pub fn is_ready(&self) -> bool {
        matches!(self, PingReply::Pong | PingReply::AuthRequired)
    }
}

/// Classifies the first RESP line of a reply to `PING`.
pub fn parse_ping_reply(buf: &[u8]) -> PingReply {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return PingReply::Incomplete;
    };
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    match line.as_bytes().first() {
        Some(b'+') if line == "+PONG" => PingReply::Pong,
        Some(b'-') if line.starts_with("-NOAUTH") => PingReply::AuthRequired,
        Some(b'-') => PingReply::Error(line[1..].to_string()),
        _ => PingReply::Unexpected(line),
    }
}

/// Sends `PING` to `addr` and reads the answer; `None` when the server cannot be reached in time.
pub async fn ping(addr: SocketAddr, timeout: Duration) -> Option<PingReply> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(PING).await.ok()?;
        let mut buf = Vec::with_capacity(64);
        let mut chunk = [0u8; 64];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return Some(parse_ping_reply(&buf));
            }
            buf.extend_from_slice(&chunk[..n]);
            let reply = parse_ping_reply(&buf);
            if reply != PingReply::Incomplete || buf.len() > 4096 {
                return Some(reply);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_is_ready() {
        assert_eq!(parse_ping_reply(b"+PONG\r\n"), PingReply::Pong);
        assert!(parse_ping_reply(b"+PONG\r\n").is_ready());
    }

    #[test]
    fn partial_lines_are_incomplete() {
        assert_eq!(parse_ping_reply(b""), PingReply::Incomplete);
        assert_eq!(parse_ping_reply(b"+PON"), PingReply::Incomplete);
        assert_eq!(parse_ping_reply(b"+PONG\r"), PingReply::Incomplete);
    }

    #[test]
    fn errors_are_not_ready_except_noauth() {
        let loading = parse_ping_reply(b"-LOADING Redis is loading the dataset in memory\r\n");
        assert_eq!(
            loading,
            PingReply::Error("LOADING Redis is loading the dataset in memory".into())
        );
        assert!(!loading.is_ready());
        assert!(parse_ping_reply(b"-NOAUTH Authentication required.\r\n").is_ready());
    }

    #[test]
    fn other_replies_are_unexpected() {
        assert_eq!(
            parse_ping_reply(b"+OK\r\n"),
            PingReply::Unexpected("+OK".into())
        );
        assert_eq!(
            parse_ping_reply(b"HTTP/1.1 400\r\n"),
            PingReply::Unexpected("HTTP/1.1 400".into())
        );
        assert!(!parse_ping_reply(b"$4\r\nPONG\r\n").is_ready());
    }

    #[tokio::test]
    async fn pings_a_fake_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; PING.len()];
            conn.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, PING);
            conn.write_all(b"+PO").await.unwrap();
            conn.write_all(b"NG\r\n").await.unwrap();
        });
        assert_eq!(
            ping(addr, Duration::from_secs(5)).await,
            Some(PingReply::Pong)
        );
    }

    #[tokio::test]
    async fn unreachable_server_yields_none() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(ping(addr, Duration::from_secs(2)).await, None);
    }
}
