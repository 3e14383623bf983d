//! The anchor: Redis Sentinel (Debian's `redis-sentinel`) failing over the same kind of primary + 2 replicas,
//! with the same writer and trial procedure as the operator's run. Three `redis-server`s and three sentinels on
//! 127.0.0.1, all started (and killed) by the benchmark.
//!
//! A killed server without persistence restarts empty; if it came back as a master before the sentinels
//! noticed, it would wipe the dataset on its replicas. It is restarted explicitly with `--replicaof <new
//! master>` once the failover is measured, so the comparison stays about failover time.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::failover::{
    check_lost, kill9, wait_failover, ConfigResult, System, Trial, TrialSettings,
    WRITES_TO_CONVERGE,
};
use crate::resp::{query, Connection, Reply};
use crate::writer::{Resolve, Target, Writer};

const HOST: &str = "127.0.0.1";
const MASTER_NAME: &str = "m";
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// Where and how the anchor runs.
#[derive(Clone, Debug)]
pub struct SentinelSetup {
    /// `redis-server` binary.
    pub redis_server: PathBuf,
    /// `redis-sentinel` binary.
    pub redis_sentinel: PathBuf,
    /// State directory (a subdirectory per configuration; wiped first).
    pub dir: PathBuf,
    /// Port of the first server (three consecutive ports).
    pub server_port: u16,
    /// Port of the first sentinel (three consecutive ports).
    pub sentinel_port: u16,
    /// `sentinel failover-timeout`, ms.
    pub failover_timeout_ms: u64,
    /// Trial counts and timeouts.
    pub settings: TrialSettings,
}

/// The processes of one configuration, killed when dropped.
struct Fleet {
    setup: SentinelSetup,
    dir: PathBuf,
    servers: Vec<Option<Child>>,
    sentinels: Vec<Child>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.servers.iter_mut().flatten().chain(&mut self.sentinels) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pids"));
    }
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind((HOST, port)).is_ok()
}

impl Fleet {
    fn server_port(&self, i: usize) -> u16 {
        self.setup.server_port + i as u16
    }

    fn sentinel_ports(&self) -> Vec<u16> {
        (0..3).map(|i| self.setup.sentinel_port + i).collect()
    }

    fn write_pids(&self) {
        let pids: Vec<String> = self
            .servers
            .iter()
            .flatten()
            .chain(&self.sentinels)
            .map(|c| c.id().to_string())
            .collect();
        let _ = std::fs::write(self.dir.join("pids"), pids.join("\n") + "\n");
    }

    /// Starts server `i` in an empty directory, as a replica of `master` if given.
    fn start_server(&mut self, i: usize, master: Option<u16>) -> Result<(), String> {
        let port = self.server_port(i);
        let dir = self.dir.join(format!("server-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut command = Command::new(&self.setup.redis_server);
        command
            .args(["--bind", HOST, "--port", &port.to_string()])
            // No persistence, like the operator's pods by default (their data directory is an emptyDir).
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // The operator renders the same into every pod's redis.conf.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if let Some(master) = master {
            command.args(["--replicaof", HOST, &master.to_string()]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.setup.redis_server.display()))?;
        self.servers[i] = Some(child);
        self.write_pids();
        Ok(())
    }

    fn start_sentinel(&mut self, i: u16, down_after_ms: u64) -> Result<(), String> {
        let port = self.setup.sentinel_port + i;
        let dir = self.dir.join(format!("sentinel-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind {HOST}\ndaemonize no\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER_NAME} {HOST} {master} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n\
             sentinel failover-timeout {MASTER_NAME} {timeout}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.display(),
            log = dir.join("sentinel.log").display(),
            master = self.setup.server_port,
            timeout = self.setup.failover_timeout_ms,
        );
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
        let child = Command::new(&self.setup.redis_sentinel)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.setup.redis_sentinel.display()))?;
        self.sentinels.push(child);
        self.write_pids();
        Ok(())
    }

    fn index_of(&self, port: u16) -> Option<usize> {
        (0..3).find(|i| self.server_port(*i) == port)
    }
}

fn fields(reply: &Reply) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Reply::Array(Some(items)) = reply {
        for pair in items.chunks(2) {
            if let [k, v] = pair {
                if let (Some(k), Some(v)) = (k.text(), v.text()) {
                    map.insert(k, v);
                }
            }
        }
    }
    map
}

/// `SENTINEL get-master-addr-by-name` on one sentinel.
async fn master_addr(sentinel: u16) -> Option<u16> {
    let reply = query(
        HOST,
        sentinel,
        &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        QUERY_TIMEOUT,
    )
    .await
    .ok()?;
    match reply {
        Reply::Array(Some(items)) => items.get(1)?.text()?.parse().ok(),
        _ => None,
    }
}

fn name(port: u16) -> String {
    format!("{HOST}:{port}")
}

/// A Sentinel client's discovery: asks all three sentinels at once and takes, in sentinel order, the first
/// address other than the one that just failed (else the first answer). That is the best case for Sentinel:
/// a client asking one sentinel at a time can hit one that has not learnt the new master yet.
fn resolver(sentinels: Vec<u16>) -> Resolve {
    Arc::new(move |failed: Option<Target>| {
        let sentinels = sentinels.clone();
        Box::pin(async move {
            let answers =
                futures::future::join_all(sentinels.iter().map(|s| master_addr(*s))).await;
            let answers: Vec<u16> = answers.into_iter().flatten().collect();
            let pick = answers
                .iter()
                .find(|p| failed.as_ref().is_none_or(|f| f.name != name(**p)))
                .or(answers.first())?;
            Some(Target {
                name: name(*pick),
                host: HOST.to_string(),
                port: *pick,
                password: None,
            })
        })
    })
}

/// A sentinel event: when it arrived, its channel (`+sdown`, ...) and its payload.
type Event = (Instant, String, String);

/// Sentinel's events (`PSUBSCRIBE *` on every sentinel), stamped on arrival.
fn subscribe(sentinels: &[u16]) -> (UnboundedReceiver<Event>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = unbounded_channel();
    let tasks = sentinels
        .iter()
        .map(|&port| {
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(mut c) = Connection::connect(HOST, port, QUERY_TIMEOUT).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    if c.command(&["PSUBSCRIBE", "*"], QUERY_TIMEOUT)
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    loop {
                        match c.read(Duration::from_secs(3600)).await {
                            Ok(Reply::Array(Some(items))) if items.len() == 4 => {
                                let channel = items[2].text().unwrap_or_default();
                                let payload = items[3].text().unwrap_or_default();
                                if tx.send((Instant::now(), channel, payload)).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    (rx, tasks)
}

/// The steps of a Sentinel failover worth timing, by event channel.
fn step_of(channel: &str, payload: &str) -> Option<&'static str> {
    Some(match channel {
        "+sdown" if payload.starts_with("master ") => "+sdown of the master (first sentinel)",
        "+odown" => "+odown",
        "+try-failover" => "+try-failover",
        "+elected-leader" => "+elected-leader",
        "+selected-slave" => "+selected-slave",
        "+promoted-slave" => "+promoted-slave",
        "+switch-master" => "+switch-master (first sentinel)",
        "+tilt" => "+tilt (a sentinel's timer stalled)",
        "-failover-abort-not-elected" => "-failover-abort-not-elected",
        "+failover-end-for-timeout" => "+failover-end-for-timeout",
        _ => return None,
    })
}

struct Events {
    rx: UnboundedReceiver<Event>,
    steps: Vec<(String, Instant)>,
    tilts: usize,
}

impl Events {
    fn pump(&mut self) {
        while let Ok((at, channel, payload)) = self.rx.try_recv() {
            if channel == "+tilt" {
                self.tilts += 1;
            }
            if let Some(step) = step_of(&channel, &payload) {
                if !self.steps.iter().any(|(n, _)| n == step) {
                    self.steps.push((step.to_string(), at));
                }
            }
        }
    }
}

/// `SENTINEL master` and `SENTINEL replicas` agree on every sentinel: the master `master` (flags `master`,
/// two other sentinels), two replicas flagged `slave` with their link up, and the master lists both as online.
async fn topology_converged(fleet: &Fleet, master: u16) -> Result<(), String> {
    let replicas: BTreeSet<u16> = (0..3)
        .map(|i| fleet.server_port(i))
        .filter(|p| *p != master)
        .collect();
    for sentinel in fleet.sentinel_ports() {
        let m = query(
            HOST,
            sentinel,
            &["SENTINEL", "master", MASTER_NAME],
            QUERY_TIMEOUT,
        )
        .await
        .map_err(|e| format!("sentinel {sentinel}: {e}"))?;
        let m = fields(&m);
        if m.get("port").map(String::as_str) != Some(&master.to_string())
            || m.get("flags").map(String::as_str) != Some("master")
            || m.get("num-other-sentinels").map(String::as_str) != Some("2")
        {
            return Err(format!(
                "sentinel {sentinel}: master {:?} flags {:?} other sentinels {:?}",
                m.get("port"),
                m.get("flags"),
                m.get("num-other-sentinels")
            ));
        }
        let r = query(
            HOST,
            sentinel,
            &["SENTINEL", "replicas", MASTER_NAME],
            QUERY_TIMEOUT,
        )
        .await
        .map_err(|e| format!("sentinel {sentinel}: {e}"))?;
        let Reply::Array(Some(items)) = r else {
            return Err(format!(
                "sentinel {sentinel}: SENTINEL replicas answered {r:?}"
            ));
        };
        let healthy: BTreeSet<u16> = items
            .iter()
            .map(fields)
            .filter(|f| {
                f.get("flags").map(String::as_str) == Some("slave")
                    && f.get("master-link-status").map(String::as_str) == Some("ok")
                    && f.get("master-port").map(String::as_str) == Some(&master.to_string())
            })
            .filter_map(|f| f.get("port")?.parse().ok())
            .collect();
        if healthy != replicas {
            return Err(format!(
                "sentinel {sentinel}: healthy replicas {healthy:?}, want {replicas:?}"
            ));
        }
    }
    let info = query(HOST, master, &["INFO", "replication"], QUERY_TIMEOUT)
        .await
        .map_err(|e| format!("master {master}: {e}"))?
        .text()
        .unwrap_or_default();
    let online = info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count();
    if !info.contains("role:master") || online != 2 {
        return Err(format!("master {master}: {online} replicas online"));
    }
    Ok(())
}

/// Waits until every sentinel names the same master, the topology is whole, and the writer confirmed
/// [`WRITES_TO_CONVERGE`] writes on that master; returns its port.
async fn wait_converged(
    fleet: &Fleet,
    writer: Option<&Writer>,
    events: &mut Events,
    timeout: Duration,
) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let master = loop {
        events.pump();
        let answers =
            futures::future::join_all(fleet.sentinel_ports().iter().map(|s| master_addr(*s))).await;
        let last_problem = match answers.as_slice() {
            [Some(a), Some(b), Some(c)] if a == b && b == c => {
                match topology_converged(fleet, *a).await {
                    Ok(()) => break *a,
                    Err(e) => e,
                }
            }
            _ => format!("sentinels name {answers:?}"),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "Sentinel topology not converged within {timeout:?}: {last_problem}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(writer) = writer {
        let left = deadline.saturating_duration_since(Instant::now());
        writer
            .wait_confirmed_on(&name(master), writer.count(), WRITES_TO_CONVERGE, left)
            .await?;
    }
    Ok(master)
}

/// Runs the trials against Sentinel with `down-after-milliseconds: down_after_ms`.
pub async fn measure(setup: &SentinelSetup, down_after_ms: u64) -> ConfigResult {
    let mut result = ConfigResult::new(
        System::Sentinel,
        Duration::from_millis(down_after_ms),
        format!("down-after-milliseconds: {down_after_ms}"),
    );
    if let Err(e) = run(setup, down_after_ms, &mut result).await {
        eprintln!("[bench] failover (Sentinel, down-after {down_after_ms} ms): {e}");
        result.error = Some(e);
    }
    result
}

async fn run(
    setup: &SentinelSetup,
    down_after_ms: u64,
    result: &mut ConfigResult,
) -> Result<(), String> {
    let dir = setup.dir.join(format!("down-after-{down_after_ms}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut fleet = Fleet {
        setup: setup.clone(),
        dir: dir.clone(),
        servers: vec![None, None, None],
        sentinels: Vec::new(),
    };
    let ports: Vec<u16> = (0..3)
        .map(|i| fleet.server_port(i))
        .chain(fleet.sentinel_ports())
        .collect();
    if let Some(busy) = ports.iter().find(|p| !port_free(**p)) {
        return Err(format!("port {busy} is in use"));
    }
    fleet.start_server(0, None)?;
    fleet.start_server(1, Some(setup.server_port))?;
    fleet.start_server(2, Some(setup.server_port))?;
    // The sentinels read the replicas from the master's INFO: start them once the servers listen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..3).any(|i| port_free(fleet.server_port(i))) {
        if Instant::now() > deadline {
            return Err("the servers did not start listening within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..3 {
        fleet.start_sentinel(i, down_after_ms)?;
    }
    eprintln!(
        "[bench] failover: Sentinel in {}, down-after-milliseconds {down_after_ms}, {} trials",
        dir.display(),
        setup.settings.trials
    );
    let (rx, tasks) = subscribe(&fleet.sentinel_ports());
    let mut events = Events {
        rx,
        steps: Vec::new(),
        tilts: 0,
    };
    wait_converged(&fleet, None, &mut events, setup.settings.converge_timeout).await?;
    let writer = Writer::start(
        resolver(fleet.sentinel_ports()),
        setup.settings.write_interval,
    );
    let outcome = trials(setup, &mut fleet, &writer, &mut events, result).await;

    let final_master =
        futures::future::join_all(fleet.sentinel_ports().iter().map(|s| master_addr(*s))).await;
    let master = final_master.into_iter().flatten().next();
    result
        .finish_writer(writer, master.map(|port| (HOST, port)))
        .await;
    events.pump();
    if events.tilts > 0 {
        result.notes.push(format!(
            "sentinels entered TILT mode {} times (their timer stalled: a loaded machine)",
            events.tilts
        ));
    }
    for task in tasks {
        task.abort();
    }
    result.notes.push(format!(
        "sentinel logs: {}",
        dir.join("sentinel-*/sentinel.log").display()
    ));
    drop(fleet);
    outcome
}

async fn trials(
    setup: &SentinelSetup,
    fleet: &mut Fleet,
    writer: &Writer,
    events: &mut Events,
    result: &mut ConfigResult,
) -> Result<(), String> {
    let settings = &setup.settings;
    let mut known_missing = BTreeSet::new();
    let mut master = wait_converged(fleet, Some(writer), events, settings.converge_timeout).await?;
    for i in 0..settings.trials {
        let index = fleet
            .index_of(master)
            .ok_or_else(|| format!("the master {master} is none of ours"))?;
        let pid = fleet.servers[index]
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| format!("server {master} is not running"))?;
        let from = writer.count();
        let last_before = writer.last().map(|c| c.at);
        events.pump();
        events.steps.clear();
        let old = name(master);
        let killed = Instant::now();
        kill9(pid)?;
        let first = wait_failover(
            writer,
            from,
            &old,
            killed,
            settings.failover_timeout,
            || events.pump(),
        )
        .await?;
        if let Some(mut child) = fleet.servers[index].take() {
            let _ = child.wait();
        }
        let mut trial = Trial {
            failover: first.at.duration_since(killed),
            from: old.clone(),
            to: first.target.clone(),
            gap: last_before.map_or(Duration::ZERO, |t| first.at.duration_since(t)),
            ..Default::default()
        };
        eprintln!(
            "[bench] failover trial {}/{} (Sentinel): {} → {} in {:.2} s",
            i + 1,
            settings.trials,
            trial.from,
            trial.to,
            trial.failover.as_secs_f64()
        );
        let new_port: u16 = first
            .target
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| format!("bad target {}", first.target))?;
        // Back empty, as a replica of the new master: never as a master that could wipe the others.
        fleet.start_server(index, Some(new_port))?;
        let next = wait_converged(fleet, Some(writer), events, settings.converge_timeout).await?;
        trial.rejoin = killed.elapsed();
        events.pump();
        trial.milestones = events
            .steps
            .iter()
            .map(|(n, at)| (n.clone(), at.saturating_duration_since(killed)))
            .collect();
        if name(next) != trial.to {
            trial.notes.push(format!(
                "first confirmed write on {} but converged on {}",
                trial.to,
                name(next)
            ));
        }
        trial.lost = check_lost(writer, HOST, next, &mut known_missing).await?;
        result.trials.push(trial);
        master = next;
    }
    Ok(())
}
