//! Seeding a server from a snapshot the way a replica is seeded: the operator listens as a primary would, the
//! server is pointed at it (`REPLICAOF`), and on its `PSYNC` the operator answers `+FULLRESYNC` with the
//! snapshot (`$<length>` framing). The server loads it as a replica loads a full synchronisation, so no file is
//! written into the pod by anyone but the server itself. The operator then keeps the link open without sending
//! anything until the server is promoted (`REPLICAOF NO ONE`), which keeps the data.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Serves `snapshot` (an RDB file) with the history `replid` at `offset` to the first replica that connects to
/// `listener` and asks for it; returns once the snapshot was written, keeping the connection open for `hold`
/// (the server must not see its primary go before it is promoted).
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
            b"PSYNC" | b"SYNC" => {
                let header = format!("+FULLRESYNC {replid} {offset}\r\n${}\r\n", snapshot.len());
                stream.write_all(header.as_bytes()).await?;
                stream.write_all(snapshot).await?;
                stream.flush().await?;
                return Ok(stream.into_inner());
            }
            _ => b"-ERR unknown command\r\n",
        };
        stream.write_all(reply).await?;
    }
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
