//! A "Redis" that lies: the tenant chooses the image, so whatever answers on a pod's port may send anything.
//! Fake servers on 127.0.0.1 (tokio listeners) answer the operator's client with endless or huge replies,
//! endless headers, slow drips and long error texts. The client must return a typed error within its byte cap
//! and its time bounds, never copy the reply into an error text, and talk to a bounded number of servers at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_fsm::Unobserved;
use redis_operator::redis::{RedisError, RedisNode, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "127.0.0.1";

/// A command timeout far longer than the cap takes to reach, even on a loaded CI machine (reading 1 MiB of
/// one-integer array elements took 0.24 s here alone and over 2 s under CI's load): a `TooLarge` error is
/// the cap's, a timeout would be `CommandTimeout`, and the bound [`WELL_BEFORE`] tells the two apart by time
/// as well.
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    command: Duration::from_secs(30),
};

/// Half the command timeout.
const WELL_BEFORE: Duration = Duration::from_secs(TIMEOUTS.command.as_secs() / 2);

/// A fake server: every accepted connection is handed to `serve`, which gets the stream after the first
/// request arrived. Returns the port.
async fn fake<F, Fut>(serve: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((HOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let serve = serve.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                if matches!(stream.read(&mut request).await, Ok(n) if n > 0) {
                    serve(stream).await;
                }
            });
        }
    });
    port
}

/// Writes `header` and then `total` bytes of `fill`, counting what the peer accepted in `sent`.
async fn stream_reply(mut stream: TcpStream, header: &[u8], total: usize, sent: Arc<AtomicUsize>) {
    if stream.write_all(header).await.is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        match stream.write(&chunk[..n]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                sent.fetch_add(n, Ordering::SeqCst);
                left -= n;
            }
        }
    }
    // Then hold the connection open, as a server that is still "sending".
    tokio::time::sleep(Duration::from_secs(60)).await;
}

async fn node(port: u16) -> RedisNode {
    RedisNode::connect(HOST, port, None, TIMEOUTS)
        .await
        .expect("the fake server accepts")
}

const HUGE: usize = 256 * 1024 * 1024;

/// A reply far larger than any real one: the client stops reading at its cap, long before the command timeout,
/// and says why. What the server could push into the connection is the cap plus the kernel's socket buffers.
#[tokio::test]
async fn a_huge_bulk_reply_stops_at_the_cap_long_before_the_timeout() {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let port = fake(move |stream| {
        let sent = counter.clone();
        async move { stream_reply(stream, format!("${HUGE}\r\n").as_bytes(), HUGE, sent).await }
    })
    .await;
    let node = node(port).await;
    let started = Instant::now();
    let error = node
        .observe()
        .await
        .expect_err("no reply of 256 MiB is read");
    let took = started.elapsed();
    assert!(matches!(error, RedisError::TooLarge { .. }), "{error}");
    assert!(took < WELL_BEFORE, "took {took:?}: {error}");
    drop(node);
    let pushed = sent.load(Ordering::SeqCst);
    assert!(
        pushed < 32 * 1024 * 1024,
        "the client took {pushed} bytes of the reply"
    );
}

/// The same without a length: a status line that never ends, and an array header announcing a billion
/// elements followed by endless small integers.
#[tokio::test]
async fn an_endless_line_or_array_stops_at_the_cap() {
    for header in [&b"+"[..], b"*1000000000\r\n"] {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let header = header.to_vec();
        let port = fake(move |mut stream| {
            let sent = counter.clone();
            let header = header.clone();
            async move {
                if header == b"+" {
                    stream_reply(stream, &header, HUGE, sent).await;
                } else {
                    let _ = stream.write_all(&header).await;
                    let items = b":1\r\n".repeat(16 * 1024);
                    while let Ok(n) = stream.write(&items).await {
                        sent.fetch_add(n, Ordering::SeqCst);
                        // 64 MiB of one-integer elements: enough to tell a cap from none.
                        if sent.load(Ordering::SeqCst) > 64 * 1024 * 1024 {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        })
        .await;
        let node = node(port).await;
        let started = Instant::now();
        let error = node.role().await.expect_err("an endless reply");
        assert!(matches!(error, RedisError::TooLarge { .. }), "{error}");
        assert!(started.elapsed() < WELL_BEFORE, "{error}");
        drop(node);
        assert!(sent.load(Ordering::SeqCst) < 32 * 1024 * 1024);
    }
}

/// A header that announces more than is ever sent, and a reply dripped a byte at a time: the command timeout
/// ends both.
#[tokio::test]
async fn an_endless_header_or_a_slow_drip_ends_at_the_command_timeout() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        command: Duration::from_millis(500),
    };
    let port = fake(|mut stream| async move {
        let _ = stream.write_all(b"$999999999999\r\n").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let drip = fake(|mut stream| async move {
        let _ = stream.write_all(b"$100\r\n").await;
        for _ in 0..1000 {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for port in [port, drip] {
        let node = RedisNode::connect(HOST, port, None, timeouts)
            .await
            .unwrap();
        let started = Instant::now();
        let error = node.observe().await.expect_err("never a whole reply");
        assert!(
            matches!(error, RedisError::CommandTimeout { .. }),
            "{error}"
        );
        // The drip would take 20 s and the header never ends; 5 s leaves room for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    }
}

/// Error texts go into status, Events and logs: a server's error line, however long, is cut to a fixed length,
/// and a reply the operator cannot parse is reported as unreadable, without its content.
#[tokio::test]
async fn error_texts_are_cut_and_an_unreadable_reply_is_not_copied() {
    let long_error = fake(|mut stream| async move {
        let line = format!("-ERR {}\r\n", "A".repeat(100_000));
        let _ = stream.write_all(line.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let error = node(long_error)
        .await
        .role()
        .await
        .expect_err("an error reply");
    assert!(matches!(error, RedisError::Server { .. }), "{error}");
    let text = error.to_string();
    assert!(text.len() <= 400, "{} bytes: {text}", text.len());
    assert!(Unobserved::from(&error).reason.len() <= 400);

    let canary = format!("CANARY{}", "B".repeat(10_000));
    let info = format!(
        "# Server\r\nrun_id:8b734155d054a9ac600824368e2a007b91eea1b4\r\nuptime_in_seconds:5\r\n\
         # Replication\r\nrole:{canary}\r\n"
    );
    // The same reply to every request (the operator asks for the INFO sections one at a time).
    let lying = fake(move |mut stream| {
        let reply = format!("${}\r\n{info}\r\n", info.len());
        async move {
            let mut request = [0u8; 1024];
            while stream.write_all(reply.as_bytes()).await.is_ok() {
                if !matches!(stream.read(&mut request).await, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    })
    .await;
    let error = node(lying).await.observe().await.expect_err("unreadable");
    assert!(matches!(error, RedisError::Reply { .. }), "{error}");
    let text = error.to_string();
    assert!(!text.contains("CANARY"), "the reply is copied: {text:.200}");
    assert!(text.contains("unreadable"), "{text}");
    assert!(!format!("{error:?}").contains("CANARY"));
}

/// However many servers a reconcile wants at once, the client holds at most
/// `redis_operator::redis::client::MAX_CONNECTIONS` connections; the others wait for one to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_max_connections_servers_are_talked_to_at_once() {
    use redis_operator::redis::client::MAX_CONNECTIONS;
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = open.clone();
    // Accepts, never answers; counts connections.
    let listener = TcpListener::bind((HOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        command: Duration::from_secs(1),
    };
    let started = Instant::now();
    let calls: Vec<_> = (0..2 * MAX_CONNECTIONS)
        .map(|_| {
            tokio::spawn(async move {
                let node = RedisNode::connect(HOST, port, None, timeouts).await?;
                node.role().await.map(|_| ())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_wave = open.load(Ordering::SeqCst);
    assert!(
        first_wave <= MAX_CONNECTIONS && first_wave > 0,
        "{first_wave} connections at once"
    );
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(
            matches!(outcome, Err(RedisError::CommandTimeout { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(open.load(Ordering::SeqCst), 2 * MAX_CONNECTIONS);
    assert!(started.elapsed() >= Duration::from_secs(2));
}
