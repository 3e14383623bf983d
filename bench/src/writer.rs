//! The failover benchmark's client: writes numbered keys with `SET` + `WAIT 1 1000` to whatever server the
//! discovery (the operator's primary label, or Sentinel) names, re-resolving after any error or unconfirmed
//! write, and records every confirmed write with where and when it was confirmed. Also the check that every
//! confirmed key is on a given server.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::resp::{Connection, Reply};

/// How long a connect may take before the target counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on one SET + WAIT exchange (WAIT itself blocks at most 1 s).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before re-resolving after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A server the discovery named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The pod name (operator) or `host:port` (Sentinel): what "another primary" is judged by.
    pub name: String,
    /// Address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// The `default` user's password, when the server requires one.
    pub password: Option<String>,
}

/// The discovery: given the target that just failed (if any), the server to write to now.
pub type Resolve = Arc<
    dyn Fn(Option<Target>) -> Pin<Box<dyn Future<Output = Option<Target>> + Send>> + Send + Sync,
>;

/// One confirmed write.
#[derive(Clone, Debug)]
pub struct Confirmed {
    /// The key's number: key `k<n>` holds `<n>`.
    pub key: u64,
    /// When the `WAIT` reply arrived.
    pub at: Instant,
    /// [`Target::name`] of the server that confirmed it.
    pub target: String,
}

/// Counters of a writer's attempts.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterStats {
    /// Writes acknowledged by at least one replica.
    pub confirmed: u64,
    /// `SET` accepted but `WAIT 1 1000` returned 0: not counted as confirmed.
    pub unconfirmed: u64,
    /// Connect failures, refused writes (`READONLY`, ...), timeouts and dropped connections.
    pub errors: u64,
    /// Discovery look-ups.
    pub resolves: u64,
    /// Longest time between two consecutive confirmed writes.
    pub longest_gap: Duration,
}

#[derive(Default)]
struct Shared {
    confirmed: Vec<Confirmed>,
    stats: WriterStats,
    /// The password of the last target connected to (for the lost-write check).
    password: Option<String>,
}

/// A running writer task.
pub struct Writer {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn key(n: u64) -> String {
    format!("k{n}")
}

impl Writer {
    /// Starts writing, pausing `interval` after each confirmed write.
    pub fn start(resolve: Resolve, interval: Duration) -> Writer {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut next = 0u64;
            let mut last_ok: Option<Instant> = None;
            let mut connection: Option<(Connection, Target)> = None;
            let mut failed: Option<Target> = None;
            while !st.load(Ordering::Relaxed) {
                if connection.is_none() {
                    sh.lock().unwrap().stats.resolves += 1;
                    let Some(target) = resolve(failed.clone()).await else {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    };
                    let password = target.password.as_deref();
                    match Connection::connect_as(
                        &target.host,
                        target.port,
                        password,
                        CONNECT_TIMEOUT,
                    )
                    .await
                    {
                        Ok(c) => {
                            sh.lock().unwrap().password = target.password.clone();
                            connection = Some((c, target));
                        }
                        Err(_) => {
                            sh.lock().unwrap().stats.errors += 1;
                            failed = Some(target);
                            tokio::time::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                    }
                }
                let Some((c, target)) = connection.as_mut() else {
                    continue;
                };
                let n = next;
                next += 1;
                let (k, v) = (key(n), n.to_string());
                let replies = c
                    .pipeline(
                        &[vec!["SET", &k, &v], vec!["WAIT", "1", "1000"]],
                        WRITE_TIMEOUT,
                    )
                    .await;
                match replies.as_deref() {
                    Ok([Reply::Status(ok), Reply::Integer(acks)]) if ok == "OK" && *acks >= 1 => {
                        let at = Instant::now();
                        {
                            let mut shared = sh.lock().unwrap();
                            if let Some(last) = last_ok {
                                shared.stats.longest_gap =
                                    shared.stats.longest_gap.max(at.duration_since(last));
                            }
                            shared.stats.confirmed += 1;
                            shared.confirmed.push(Confirmed {
                                key: n,
                                at,
                                target: target.name.clone(),
                            });
                        }
                        last_ok = Some(at);
                        failed = None;
                        tokio::time::sleep(interval).await;
                    }
                    Ok([Reply::Status(ok), Reply::Integer(_)]) if ok == "OK" => {
                        // Written, but no replica acknowledged it within 1 s: it may be lost; look again.
                        sh.lock().unwrap().stats.unconfirmed += 1;
                        failed = Some(target.clone());
                        connection = None;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    _ => {
                        sh.lock().unwrap().stats.errors += 1;
                        failed = Some(target.clone());
                        connection = None;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        });
        Writer { shared, stop, task }
    }

    /// The password the writer authenticated with last.
    pub fn password(&self) -> Option<String> {
        self.shared.lock().unwrap().password.clone()
    }

    /// Confirmed writes so far.
    pub fn count(&self) -> usize {
        self.shared.lock().unwrap().confirmed.len()
    }

    /// The confirmed writes from index `from` on.
    pub fn since(&self, from: usize) -> Vec<Confirmed> {
        let shared = self.shared.lock().unwrap();
        shared.confirmed.get(from..).unwrap_or_default().to_vec()
    }

    /// The keys confirmed so far.
    pub fn keys(&self) -> Vec<u64> {
        let shared = self.shared.lock().unwrap();
        shared.confirmed.iter().map(|c| c.key).collect()
    }

    /// The last confirmed write.
    pub fn last(&self) -> Option<Confirmed> {
        self.shared.lock().unwrap().confirmed.last().cloned()
    }

    /// Waits until `count` writes confirmed by `target` arrived after index `from`; returns the index after the
    /// last one looked at.
    pub async fn wait_confirmed_on(
        &self,
        target: &str,
        from: usize,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .since(from)
                .iter()
                .filter(|c| c.target == target)
                .count();
            if seen >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the writer confirmed only {seen} of {count} writes on {target} within {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the task.
    pub async fn finish(self) -> WriterStats {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let stats = self.shared.lock().unwrap().stats;
        stats
    }
}

/// The keys among `keys` that `host:port` does not hold with their value (read with pipelined `MGET`s).
pub async fn missing_keys(
    host: &str,
    port: u16,
    password: Option<&str>,
    keys: &[u64],
) -> Result<Vec<u64>, String> {
    let mut connection = Connection::connect_as(host, port, password, Duration::from_secs(2))
        .await
        .map_err(|e| format!("lost-write check: {e}"))?;
    let mut missing = Vec::new();
    for chunk in keys.chunks(1000) {
        let names: Vec<String> = chunk.iter().map(|n| key(*n)).collect();
        let mut command = vec!["MGET"];
        command.extend(names.iter().map(String::as_str));
        let reply = connection
            .command(&command, Duration::from_secs(10))
            .await
            .map_err(|e| format!("lost-write check on {host}:{port}: {e}"))?;
        let Reply::Array(Some(values)) = reply else {
            return Err(format!("lost-write check: MGET answered {reply:?}"));
        };
        for (n, value) in chunk.iter().zip(values) {
            if value.text() != Some(n.to_string()) {
                missing.push(*n);
            }
        }
    }
    Ok(missing)
}
