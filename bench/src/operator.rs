//! The operator under test as a separate process: start, stop, scrape its metrics, read its footprint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a start waits for `/readyz` once `/healthz` answers; the caches of an empty or small namespace
/// sync in milliseconds.
const READY_GRACE: Duration = Duration::from_secs(3);

/// How long a stop waits for the process to exit on SIGTERM before killing it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How to start `redis-operator run`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The operator binary.
    pub binary: PathBuf,
    /// Kubeconfig the operator reads.
    pub kubeconfig: PathBuf,
    /// Kubeconfig context of the operator's identity (audited under its own user name).
    pub context: String,
    /// `--resync-seconds`.
    pub resync_seconds: u64,
    /// Directory for the operator's logs.
    pub log_dir: PathBuf,
    /// `--log-level` (`warn` keeps the convergence runs' logs small).
    pub log_level: String,
    /// Extra environment of the process (e.g. `REDIS_OPERATOR_ROLLOUT=statefulset`).
    pub env: Vec<(String, String)>,
}

/// A running operator process, killed when dropped.
pub struct Operator {
    child: Child,
    metrics_port: u16,
}

/// Resident memory and CPU time of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Footprint {
    /// Resident set size now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Operator {
    /// Starts the operator scoped to `namespace`, without leader election, and waits until it serves HTTP and
    /// its watch caches have synced (`/readyz`). `/readyz` can stay 503 although the caches are synced (see
    /// docs/benchmarks.md), so after [`READY_GRACE`] with `/healthz` answering the start counts as done.
    pub async fn start(launch: &Launch, namespace: &str) -> Result<Operator, String> {
        let metrics_port = free_port().map_err(|e| format!("no free port: {e}"))?;
        std::fs::create_dir_all(&launch.log_dir)
            .map_err(|e| format!("{}: {e}", launch.log_dir.display()))?;
        let log = launch
            .log_dir
            .join(format!("operator-{namespace}-{metrics_port}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stderr = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&launch.binary)
            .env("KUBECONFIG", &launch.kubeconfig)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .args(["run", "--namespace", namespace, "--leader-election=false"])
            .args(["--context", &launch.context])
            .args(["--resync-seconds", &launch.resync_seconds.to_string()])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--log-level", &launch.log_level])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.binary.display()))?;
        let mut operator = Operator {
            child,
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut serving_since = None;
        loop {
            if let Some((200, _)) = operator.http_get("/readyz").await {
                return Ok(operator);
            }
            if let Some((200, _)) = operator.http_get("/healthz").await {
                let since = *serving_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= READY_GRACE {
                    return Ok(operator);
                }
            }
            if let Ok(Some(status)) = operator.child.try_wait() {
                return Err(format!(
                    "operator exited ({status}); log: {}",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "operator not serving after 60 s; log: {}",
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process with SIGTERM; kills it if it has not exited after [`STOP_GRACE`]. Returns whether it
    /// exited on SIGTERM.
    pub async fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "[bench] operator {} did not exit within {STOP_GRACE:?} of SIGTERM; killing it",
            self.child.id()
        );
        false
    }

    async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())?;
        Some((code, body))
    }

    /// The operator's Prometheus metrics.
    pub async fn metrics(&self) -> Metrics {
        let text = self
            .http_get("/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        Metrics { text }
    }

    /// Memory and CPU time of the process.
    pub fn footprint(&self) -> Footprint {
        footprint(self.child.id())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads VmRSS, VmHWM (`/proc/PID/status`) and utime+stime (`/proc/PID/stat`, in clock ticks of 1/100 s).
pub fn footprint(pid: u32) -> Footprint {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3 (state); utime and stime are
    // fields 14 and 15.
    let after_comm = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
    Footprint {
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
        cpu_seconds: (ticks(11) + ticks(12)) as f64 / CLOCK_TICKS_PER_SECOND,
    }
}

/// One scrape of the operator's `/metrics`.
pub struct Metrics {
    text: String,
}

impl Metrics {
    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = f64> + 'a {
        self.text.lines().filter_map(move |line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.split_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse().ok()
        })
    }

    /// The value of one exact series (`name{labels}` as exposed), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.trim().parse().ok())?
        })
    }

    /// Reconciles finished, whatever their result.
    pub fn reconciles(&self) -> f64 {
        self.samples("redis_operator_reconciles_total")
            .fold(0.0, |a, b| a + b)
    }

    /// Reconciles that ended in an error.
    pub fn failed_reconciles(&self) -> f64 {
        self.text
            .lines()
            .filter(|l| {
                l.starts_with("redis_operator_reconciles_total{") && !l.contains("result=\"ok\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    /// Seconds spent inside reconciles (the duration histogram's sum).
    pub fn reconcile_seconds(&self) -> f64 {
        self.samples("redis_operator_reconcile_duration_seconds_sum")
            .sum()
    }

    /// The operator's Redis-side cost so far: connections opened, commands sent, reply bytes read.
    pub fn redis_cost(&self) -> RedisCost {
        let sum = |name| self.samples(name).sum::<f64>();
        RedisCost {
            connections: sum("redis_operator_redis_connections_opened_total"),
            commands: sum("redis_operator_redis_commands_total"),
            read_bytes: sum("redis_operator_redis_read_bytes_total"),
        }
    }
}

/// What the operator cost the Redis servers (its own counters): connections opened, commands sent, reply bytes
/// read; a difference of two scrapes is the cost of the time between them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisCost {
    /// Connections opened.
    pub connections: f64,
    /// Commands sent.
    pub commands: f64,
    /// Reply bytes read.
    pub read_bytes: f64,
}

impl RedisCost {
    /// The cost between `earlier` and this scrape.
    pub fn since(self, earlier: RedisCost) -> RedisCost {
        RedisCost {
            connections: self.connections - earlier.connections,
            commands: self.commands - earlier.commands,
            read_bytes: self.read_bytes - earlier.read_bytes,
        }
    }

    /// This cost divided by `by`.
    fn divided(self, by: f64) -> RedisCost {
        RedisCost {
            connections: self.connections / by,
            commands: self.commands / by,
            read_bytes: self.read_bytes / by,
        }
    }

    /// This cost per instance, over `n` instances.
    pub fn per_instance(self, n: usize) -> RedisCost {
        self.divided(n.max(1) as f64)
    }

    /// This cost per instance and minute, over `n` instances and `window`.
    pub fn per_instance_minute(self, n: usize, window: std::time::Duration) -> RedisCost {
        self.per_instance(n)
            .divided((window.as_secs_f64() / 60.0).max(1e-9))
    }
}
