//! Seeding a server from a snapshot the way a replica is seeded: the operator listens as a primary would, the
//! server is pointed at it (`REPLICAOF`), and on its `PSYNC` the operator answers `+FULLRESYNC` with the
//! snapshot (`$<length>` framing). The server loads it as a replica loads a full synchronisation, so no file is
//! written into the pod by anyone but the server itself. The operator then keeps the link open without sending
//! anything until the server is promoted (`REPLICAOF NO ONE`), which keeps the data.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Serves `snapshot` (an RDB file) with the history `replid` at `offset` to the first replica that connects to
/// `listener` and asks for it; returns the connection once the snapshot was written (the caller keeps it open:
/// the server must not see its primary go before it is promoted or parked).
pub async fn serve_once(
    listener: &TcpListener,
    snapshot: &[u8],
    replid: &str,
    offset: u64,
    idle: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let (stream, _) = tokio::time::timeout(idle, listener.accept())
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let mut stream = await_sync(stream, idle).await?;
    full_resync(&mut stream, replid, offset, snapshot.len() as u64).await?;
    stream.write_all(snapshot).await?;
    stream.flush().await?;
    Ok(stream.into_inner())
}

/// Answers a replica's handshake on `stream` (`PING`, `AUTH`, `REPLCONF`) until it asks for the data (`PSYNC`
/// or `SYNC`); returns the stream then, the request consumed.
pub async fn await_sync<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    idle: Duration,
) -> std::io::Result<BufReader<S>> {
    let mut stream = BufReader::new(stream);
    loop {
        let command = read_command(&mut stream, idle).await?;
        let name = command
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: &[u8] = match name.as_slice() {
            b"PING" => b"+PONG\r\n",
            b"AUTH" | b"REPLCONF" => b"+OK\r\n",
            b"PSYNC" | b"SYNC" => return Ok(stream),
            _ => b"-ERR unknown command\r\n",
        };
        stream.write_all(reply).await?;
    }
}

/// Starts a full synchronisation: the history `replid` at `offset`, then the length of the snapshot that
/// follows (the caller writes exactly `len` bytes next).
pub async fn full_resync<W: AsyncWrite + Unpin>(
    stream: &mut W,
    replid: &str,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    let header = format!("+FULLRESYNC {replid} {offset}\r\n${len}\r\n");
    stream.write_all(header.as_bytes()).await
}

/// One RESP array of bulk strings (what a replica sends its primary).
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    idle: Duration,
) -> std::io::Result<Vec<Vec<u8>>> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let mut line = String::new();
    tokio::time::timeout(idle, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let count = bounded(&line, '*', 16).ok_or_else(invalid)?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).await?;
        let len = bounded(&line, '$', 4096).ok_or_else(invalid)?;
        let mut arg = vec![0u8; len + 2];
        reader.read_exact(&mut arg).await?;
        arg.truncate(len);
        args.push(arg);
    }
    Ok(args)
}

/// The number after `marker` on a RESP header line, at most `max`.
fn bounded(line: &str, marker: char, max: usize) -> Option<usize> {
    line.trim_end()
        .strip_prefix(marker)?
        .parse()
        .ok()
        .filter(|n| *n <= max)
}
