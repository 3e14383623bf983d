//! A server's dataset read the way a replica reads it: `PSYNC ? -1` asks for a full synchronisation, the server
//! answers `+FULLRESYNC <replid> <offset>` and sends a snapshot (an RDB file) of its data at that offset, straight
//! from memory to the socket when it synchronises diskless (`capa eof`), so no copy is staged on the pod's disk.
//! The operator reads the snapshot and closes the connection; it never acknowledges, so the server never starts
//! the command stream after a diskless snapshot.
//!
//! The snapshot comes in one of two framings: `$<length>\r\n` and that many bytes (from a file on disk), or
//! `$EOF:<40 random characters>\r\n`, the bytes, and the same 40 characters again (diskless). Before either the
//! server may send bare `\n` as keep-alives while it prepares the snapshot. The parsers are pure; [`Snapshot`]
//! reads the framing from any stream (TCP or TLS).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the delimiter of a diskless snapshot.
pub const EOF_MARK_LEN: usize = 40;

/// The longest line the operator reads before the snapshot (a `+FULLRESYNC` line is about 60 bytes).
const MAX_LINE: usize = 512;

/// Why a snapshot could not be read. The texts never quote what the server sent: it runs an image the tenant
/// chose, and these reach status, Events and logs.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// The connection failed or was closed early.
    #[error("the connection broke while reading the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived for too long.
    #[error("the server sent nothing for {0:?}")]
    Idle(Duration),
    /// The server refused (an error reply), e.g. `NOPERM` or `NOAUTH`.
    #[error("the server refused {command}: {code}")]
    Refused {
        /// The command refused.
        command: &'static str,
        /// The first word of its error reply (`NOPERM`, `ERR`, ...), at most 32 characters.
        code: String,
    },
    /// A reply of an unexpected shape.
    #[error("unexpected reply to {0}")]
    Unexpected(&'static str),
    /// The stream ended before the snapshot did.
    #[error("the snapshot ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes read.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
}

/// What `+FULLRESYNC` said: the history and position the snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullResync {
    /// The server's replication id.
    pub replid: String,
    /// The replication offset the snapshot holds every write up to.
    pub offset: u64,
}

/// How the snapshot's end is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `$<length>`: that many bytes.
    Sized(u64),
    /// `$EOF:<mark>`: up to the mark.
    Delimited([u8; EOF_MARK_LEN]),
}

/// Parses the answer to `PSYNC ? -1` (without its line end).
pub fn parse_fullresync(line: &[u8]) -> Result<FullResync, RdbError> {
    let text = std::str::from_utf8(line).map_err(|_| RdbError::Unexpected("PSYNC"))?;
    if let Some(error) = text.strip_prefix('-') {
        return Err(refused("PSYNC", error));
    }
    let mut words = text
        .strip_prefix("+FULLRESYNC ")
        .ok_or(RdbError::Unexpected("PSYNC"))?
        .split(' ');
    let (Some(replid), Some(offset), None) = (words.next(), words.next(), words.next()) else {
        return Err(RdbError::Unexpected("PSYNC"));
    };
    if replid.len() != 40 || !replid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RdbError::Unexpected("PSYNC"));
    }
    Ok(FullResync {
        replid: replid.to_string(),
        offset: offset.parse().map_err(|_| RdbError::Unexpected("PSYNC"))?,
    })
}

/// Parses the snapshot's header line (without its line end).
pub fn parse_framing(line: &[u8]) -> Result<Framing, RdbError> {
    let rest = line
        .strip_prefix(b"$")
        .ok_or(RdbError::Unexpected("the snapshot header"))?;
    if let Some(mark) = rest.strip_prefix(b"EOF:") {
        return <[u8; EOF_MARK_LEN]>::try_from(mark)
            .map(Framing::Delimited)
            .map_err(|_| RdbError::Unexpected("the snapshot header"));
    }
    std::str::from_utf8(rest)
        .ok()
        .and_then(|n| n.parse().ok())
        .map(Framing::Sized)
        .ok_or(RdbError::Unexpected("the snapshot header"))
}

fn refused(command: &'static str, error: &str) -> RdbError {
    RdbError::Refused {
        command,
        code: error
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect(),
    }
}

/// Reads one line (up to `\n`, `\r` dropped), at most [`MAX_LINE`] bytes, each byte within `idle`.
async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    idle: Duration,
) -> Result<Vec<u8>, RdbError> {
    let mut line = Vec::new();
    loop {
        let byte = tokio::time::timeout(idle, stream.read_u8())
            .await
            .map_err(|_| RdbError::Idle(idle))??;
        match byte {
            b'\n' => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            _ if line.len() >= MAX_LINE => return Err(RdbError::Unexpected("a reply line")),
            _ => line.push(byte),
        }
    }
}

/// A command as RESP.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends `args` and expects a simple `+...` reply.
async fn simple<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    name: &'static str,
    args: &[&[u8]],
    idle: Duration,
) -> Result<(), RdbError> {
    stream.write_all(&command(args)).await?;
    let line = read_line(stream, idle).await?;
    match line.first() {
        Some(b'+') => Ok(()),
        Some(b'-') => Err(refused(name, &String::from_utf8_lossy(&line[1..]))),
        _ => Err(RdbError::Unexpected(name)),
    }
}

/// How a server answered `PSYNC`.
pub enum Sync<S> {
    /// `+FULLRESYNC`: a snapshot follows.
    Full(Snapshot<S>),
    /// `+CONTINUE`: the command stream follows from the offset asked for, in the history `replid` (the server's
    /// own, which is a new one after a promotion).
    Continue {
        /// The connection.
        stream: S,
        /// The server's replication id.
        replid: String,
    },
}

/// Logs in as `login` when given and asks to synchronise: from `from` (a history and the offset of the next
/// byte wanted) when given, which the server continues when it still holds that history in its backlog, or else
/// (and without `from`) with a full synchronisation.
pub async fn sync<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    login: Option<(&str, &str)>,
    from: Option<(&str, u64)>,
    idle: Duration,
) -> Result<Sync<S>, RdbError> {
    if let Some((user, password)) = login {
        simple(
            &mut stream,
            "AUTH",
            &[b"AUTH", user.as_bytes(), password.as_bytes()],
            idle,
        )
        .await?;
    }
    simple(
        &mut stream,
        "REPLCONF",
        &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"],
        idle,
    )
    .await?;
    let offset = from.map(|(_, offset)| offset.to_string());
    let psync: [&[u8]; 3] = match (&from, &offset) {
        (Some((replid, _)), Some(offset)) => [b"PSYNC", replid.as_bytes(), offset.as_bytes()],
        _ => [b"PSYNC", b"?", b"-1"],
    };
    stream.write_all(&command(&psync)).await?;
    let line = loop {
        // Keep-alives may come first.
        let line = read_line(&mut stream, idle).await?;
        if !line.is_empty() {
            break line;
        }
    };
    if let Some(rest) = line.strip_prefix(b"+CONTINUE") {
        let replid = std::str::from_utf8(rest).unwrap_or_default().trim();
        let replid = match (replid.is_empty(), from) {
            (true, Some((asked, _))) => asked.to_string(),
            _ if replid.len() == 40 && replid.bytes().all(|b| b.is_ascii_hexdigit()) => {
                replid.to_string()
            }
            _ => return Err(RdbError::Unexpected("PSYNC")),
        };
        return Ok(Sync::Continue { stream, replid });
    }
    let resync = parse_fullresync(&line)?;
    let framing = loop {
        let line = read_line(&mut stream, idle).await?;
        // Keep-alives while the snapshot is prepared.
        if !line.is_empty() {
            break parse_framing(&line)?;
        }
    };
    Ok(Sync::Full(Snapshot {
        stream,
        framing,
        resync,
        read: 0,
        held: Vec::new(),
        done: false,
        idle,
    }))
}

/// The snapshot of one server being read: [`Snapshot::start`] asks for it, [`Snapshot::next_chunk`] yields its
/// bytes until the end.
pub struct Snapshot<S> {
    stream: S,
    framing: Framing,
    /// The history and position the snapshot covers.
    pub resync: FullResync,
    /// Bytes of the snapshot yielded so far.
    pub read: u64,
    /// Of a delimited snapshot: bytes read but not yielded, as they may be the start of the mark.
    held: Vec<u8>,
    done: bool,
    idle: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Snapshot<S> {
    /// Logs in as `login` (user, password) when given, asks for a full synchronisation and reads up to the start
    /// of the snapshot. `idle` bounds every wait for the server, the preparation of the snapshot included (the
    /// server sends a keep-alive every second meanwhile).
    pub async fn start(
        stream: S,
        login: Option<(&str, &str)>,
        idle: Duration,
    ) -> Result<Self, RdbError> {
        match sync(stream, login, None, idle).await? {
            Sync::Full(snapshot) => Ok(snapshot),
            Sync::Continue { .. } => Err(RdbError::Unexpected("PSYNC")),
        }
    }

    /// The connection, once the snapshot was read to its end: the command stream follows on it (after a
    /// diskless snapshot, once the replica acknowledges an offset).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// The next bytes of the snapshot, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RdbError> {
        if self.done {
            return Ok(None);
        }
        let mut buffer = vec![0u8; 64 * 1024];
        match self.framing {
            Framing::Sized(total) => {
                let left = total - self.read;
                if left == 0 {
                    self.done = true;
                    return Ok(None);
                }
                let want = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
                let n = self.fill(&mut buffer[..want]).await?;
                if n == 0 {
                    return Err(RdbError::Truncated {
                        got: self.read,
                        expected: total,
                    });
                }
                buffer.truncate(n);
                self.read += n as u64;
                Ok(Some(buffer))
            }
            Framing::Delimited(mark) => loop {
                let n = self.fill(&mut buffer).await?;
                if n == 0 {
                    return Err(RdbError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                self.held.extend_from_slice(&buffer[..n]);
                if self.held.ends_with(&mark) {
                    self.held.truncate(self.held.len() - EOF_MARK_LEN);
                    self.done = true;
                    let rest = std::mem::take(&mut self.held);
                    self.read += rest.len() as u64;
                    return Ok(Some(rest));
                }
                if self.held.len() > EOF_MARK_LEN {
                    let keep = self.held.split_off(self.held.len() - EOF_MARK_LEN);
                    let out = std::mem::replace(&mut self.held, keep);
                    self.read += out.len() as u64;
                    return Ok(Some(out));
                }
            },
        }
    }

    async fn fill(&mut self, buffer: &mut [u8]) -> Result<usize, RdbError> {
        tokio::time::timeout(self.idle, self.stream.read(buffer))
            .await
            .map_err(|_| RdbError::Idle(self.idle))?
            .map_err(RdbError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLID: &str = "8f3b9c1e2d4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c";

    #[test]
    fn fullresync_and_framing_are_read_and_anything_else_refused() {
        assert_eq!(
            parse_fullresync(format!("+FULLRESYNC {REPLID} 1234").as_bytes()).unwrap(),
            FullResync {
                replid: REPLID.into(),
                offset: 1234
            }
        );
        for bad in [
            "+CONTINUE".to_string(),
            format!("+FULLRESYNC {REPLID}"),
            format!("+FULLRESYNC {REPLID} x"),
            "+FULLRESYNC nothex 1".into(),
            format!("+FULLRESYNC {REPLID} 1 2"),
        ] {
            assert!(
                matches!(
                    parse_fullresync(bad.as_bytes()),
                    Err(RdbError::Unexpected(_))
                ),
                "{bad}"
            );
        }
        match parse_fullresync(b"-NOPERM this user has no permissions \x1b[31m") {
            Err(RdbError::Refused { code, .. }) => assert_eq!(code, "NOPERM"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_framing(b"$175").unwrap(), Framing::Sized(175));
        let mark = [b'a'; EOF_MARK_LEN];
        let mut line = b"$EOF:".to_vec();
        line.extend_from_slice(&mark);
        assert_eq!(parse_framing(&line).unwrap(), Framing::Delimited(mark));
        for bad in [&b"$EOF:short"[..], b"$-1x", b"+OK", b""] {
            assert!(parse_framing(bad).is_err());
        }
    }

    /// A fake server on one side of an in-memory pipe: what it is sent is checked, what it answers is given.
    async fn read_all(answer: Vec<u8>) -> Result<(FullResync, Vec<u8>), RdbError> {
        let (client, mut server) = tokio::io::duplex(1024);
        let serve = tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            // AUTH, REPLCONF and PSYNC arrive one after another; answer them in order.
            let mut seen = Vec::new();
            for reply in [&b"+OK\r\n"[..], b"+OK\r\n"] {
                let n = server.read(&mut request).await.unwrap();
                seen.extend_from_slice(&request[..n]);
                server.write_all(reply).await.unwrap();
            }
            let n = server.read(&mut request).await.unwrap();
            seen.extend_from_slice(&request[..n]);
            server.write_all(&answer).await.unwrap();
            seen
        });
        let mut snapshot =
            Snapshot::start(client, Some(("op", "pw")), Duration::from_secs(5)).await?;
        let mut data = Vec::new();
        while let Some(chunk) = snapshot.next_chunk().await? {
            data.extend_from_slice(&chunk);
        }
        assert_eq!(snapshot.read, data.len() as u64);
        let seen = String::from_utf8(serve.await.unwrap()).unwrap();
        assert!(seen.contains("AUTH\r\n$2\r\nop\r\n$2\r\npw"), "{seen}");
        assert!(seen.ends_with("PSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"), "{seen}");
        Ok((snapshot.resync, data))
    }

    #[tokio::test]
    async fn a_sized_and_a_delimited_snapshot_are_read_to_their_end_only() {
        let rdb: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut sized = format!("+FULLRESYNC {REPLID} 77\r\n\n\n${}\r\n", rdb.len()).into_bytes();
        sized.extend_from_slice(&rdb);
        // The command stream that follows a snapshot from disk is not part of it.
        sized.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let (resync, data) = read_all(sized).await.unwrap();
        assert_eq!(resync.offset, 77);
        assert_eq!(data, rdb);

        let mark = [b'z'; EOF_MARK_LEN];
        let mut delimited = format!("+FULLRESYNC {REPLID} 78\r\n$EOF:").into_bytes();
        delimited.extend_from_slice(&mark);
        delimited.extend_from_slice(b"\r\n");
        delimited.extend_from_slice(&rdb);
        delimited.extend_from_slice(&mark);
        let (_, data) = read_all(delimited).await.unwrap();
        assert_eq!(data, rdb);

        let mut truncated = format!("+FULLRESYNC {REPLID} 79\r\n$1000\r\n").into_bytes();
        truncated.extend_from_slice(&rdb[..10]);
        assert!(matches!(
            read_all(truncated).await,
            Err(RdbError::Truncated {
                got: 10,
                expected: 1000
            })
        ));
    }
}
