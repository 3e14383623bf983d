//! A minimal RESP2 client for the failover benchmark: one TCP connection, commands sent as arrays of bulk
//! strings, replies read with a bound. Enough for SET, WAIT, MGET, INFO, ROLE and SENTINEL.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n ...`; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n ...`; `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for bulk and status replies.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Encodes one command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A connection to one server.
pub struct Connection {
    stream: BufReader<TcpStream>,
    /// `host:port`, for messages.
    pub addr: String,
}

fn other(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}

impl Connection {
    /// Connects within `timeout`.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<Connection> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| other(format!("connect to {host}:{port} timed out")))??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            addr: format!("{host}:{port}"),
        })
    }

    /// Connects within `timeout` and, with a `password`, authenticates as the `default` user (`AUTH`).
    pub async fn connect_as(
        host: &str,
        port: u16,
        password: Option<&str>,
        timeout: Duration,
    ) -> std::io::Result<Connection> {
        let mut connection = Self::connect(host, port, timeout).await?;
        if let Some(password) = password {
            match connection.command(&["AUTH", password], timeout).await? {
                Reply::Status(ok) if ok == "OK" => {}
                reply => return Err(other(format!("AUTH answered {reply:?}"))),
            }
        }
        Ok(connection)
    }

    /// Sends several commands at once (a pipeline) and reads one reply each, all within `timeout`.
    pub async fn pipeline(
        &mut self,
        commands: &[Vec<&str>],
        timeout: Duration,
    ) -> std::io::Result<Vec<Reply>> {
        let exchange = async {
            let mut request = Vec::new();
            for command in commands {
                request.extend_from_slice(&encode(command));
            }
            self.stream.get_mut().write_all(&request).await?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                replies.push(read_reply(&mut self.stream).await?);
            }
            Ok(replies)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| other(format!("{} did not answer within {timeout:?}", self.addr)))?
    }

    /// Reads one more reply (a pushed message on a subscribed connection) within `timeout`.
    pub async fn read(&mut self, timeout: Duration) -> std::io::Result<Reply> {
        tokio::time::timeout(timeout, read_reply(&mut self.stream))
            .await
            .map_err(|_| other(format!("{} sent nothing within {timeout:?}", self.addr)))?
    }

    /// Sends one command and reads its reply within `timeout`.
    pub async fn command(&mut self, args: &[&str], timeout: Duration) -> std::io::Result<Reply> {
        let mut replies = self.pipeline(&[args.to_vec()], timeout).await?;
        replies.pop().ok_or_else(|| other("no reply"))
    }
}

/// Connects, sends one command, reads the reply: for one-off queries.
pub async fn query(
    host: &str,
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> std::io::Result<Reply> {
    let mut connection = Connection::connect(host, port, timeout).await?;
    connection.command(args, timeout).await
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    let n = stream.read_line(&mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_reply(
    stream: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| other(format!("bad RESP line {line:?}")))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut data = vec![0u8; len as usize + 2];
                stream.read_exact(&mut data).await?;
                data.truncate(len as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(read_reply(stream).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(other(format!("bad RESP line {line:?}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_bulk_string_arrays() {
        assert_eq!(
            encode(&["SET", "k1", ""]),
            b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn parses_nested_replies() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"+OK\r\n:2\r\n*3\r\n$1\r\na\r\n$-1\r\n*1\r\n-ERR x\r\n")
                .await
                .unwrap();
        });
        let mut c = Connection::connect("127.0.0.1", port, Duration::from_secs(1))
            .await
            .unwrap();
        let replies = c
            .pipeline(
                &[vec!["SET", "k", "v"], vec!["WAIT", "1", "0"], vec!["X"]],
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(replies[0], Reply::Status("OK".into()));
        assert_eq!(replies[1], Reply::Integer(2));
        assert_eq!(
            replies[2],
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Error("ERR x".into())])),
            ]))
        );
    }
}
