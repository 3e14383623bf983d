//! Real `redis-server` processes behind the fake API's pods (Debian's `redis-server` package): the container
//! runtime of the reconcile tests. The operator reaches a pod's server at its `status.podIP` on the fixed port
//! 6379 (`converge::topology::endpoint`), so every server listens on an address of its own in 127.0.0.0/8,
//! port 6379, checked to answer with this process's own server (not another one that took the address).
//!
//! A server is started as its pod's container is: with the StatefulSet template's arguments (`$(POD_IP)`
//! expanded, so it boots parked, a replica of itself) over the rendered `redis.conf` of the ConfigMap, in a
//! data directory of its own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis_fsm::{ServerRole, ServerState};
use redis_operator::redis::{RedisNode, RoleReply, Timeouts};

/// The port every server listens on (the operator's fixed Redis port).
pub const PORT: u16 = 6379;
/// Where the pod template mounts the rendered `redis.conf`.
const CONFIG_PATH: &str = "/etc/redis/redis.conf";
/// How long a server may take to start, and the topology to settle after a command.
const DEADLINE: Duration = Duration::from_secs(20);

/// Addresses handed out so far in this process.
static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
/// Servers started so far in this process (each one's data directory is its own).
static STARTED: AtomicU32 = AtomicU32::new(0);

/// A loopback address no other test of this process uses: `127.X.Y.Z` with `X` from the process id, so two
/// test processes running side by side are unlikely to meet (and [`Server::start`] checks anyway).
pub fn next_address() -> String {
    let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
    let x = 64 + std::process::id() % 128;
    format!("127.{x}.{}.{}", n / 200, 10 + n % 200)
}

/// One `redis-server` process; killed (and its directory removed) on drop.
pub struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// Starts a server as a pod's container at `ip`: `args` are the container's (the first one the path of the
    /// configuration file), `config` the rendered `redis.conf`. Each start gets a new, empty data directory.
    /// `None` when the address is taken (the server exits, or another process answers there).
    pub async fn start(ip: &str, args: &[String], config: &str) -> Option<Server> {
        let dir = std::env::temp_dir().join(format!(
            "reconcile-test-{}-{ip}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let config_file = dir.join("redis.conf");
        std::fs::write(&config_file, config).expect("the configuration file");
        let args: Vec<String> = args
            .iter()
            .map(|arg| match arg.as_str() {
                CONFIG_PATH => config_file.display().to_string(),
                other => other.replace("$(POD_IP)", ip),
            })
            .collect();
        let child = Command::new(crate::server_binary::server_binary())
            .args(&args)
            // The template's `dir /data`, here: the command line comes after the file.
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}",
                    crate::server_binary::server_binary()
                )
            });
        let mut server = Server { child, dir };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if server.child.try_wait().expect("try_wait").is_some() {
                // Most likely the address is taken.
                return None;
            }
            if let Some(pid) = process_id(ip).await {
                return (pid == server.child.id().to_string()).then_some(server);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server at {ip} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and waits until the process is gone (its address is free then).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `process_id` of the server answering at `ip`, `None` while nothing answers there.
async fn process_id(ip: &str) -> Option<String> {
    let mut connection = redis::Client::open(format!("redis://{ip}:{PORT}"))
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .map(|pid| pid.trim().to_string())
}

/// The operator's own client, unauthenticated (the tests' instances run without authentication).
pub async fn connect(ip: &str) -> Result<RedisNode, redis_operator::redis::RedisError> {
    RedisNode::connect(ip, PORT, None, Timeouts::default()).await
}

/// What the server at `ip` reports, `None` when nothing answers.
pub async fn observe(ip: &str) -> Option<ServerState> {
    connect(ip).await.ok()?.observe().await.ok()
}

/// The readiness probe of the pod template (`desired::container::readiness_script`): a master, or a replica with
/// its link up and no full sync running.
pub async fn ready(ip: &str) -> bool {
    observe(ip).await.is_some_and(|state| match state.role {
        ServerRole::Master => true,
        ServerRole::Replica(link) => link.link_up && !link.sync_in_progress,
    })
}

/// Waits until the servers at `ips` stopped moving: none is loading, every replica that follows another live
/// master of them is in sync with it (link up, no full sync, its offset the master's) and listed online by it,
/// and every other replica (parked, or following a server that is gone) has noticed that its link is down.
pub async fn settle(ips: &[String]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if settled(ips).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the servers {ips:?} did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn settled(ips: &[String]) -> bool {
    let mut states = Vec::new();
    for ip in ips {
        if let Some(state) = observe(ip).await {
            states.push((ip.clone(), state));
        }
    }
    for (ip, state) in &states {
        if state.loading {
            return false;
        }
        let ServerRole::Replica(link) = &state.role else {
            continue;
        };
        let master = states.iter().find(|(other, s)| {
            *other == link.master_host && other != ip && matches!(s.role, ServerRole::Master)
        });
        let Some((master_ip, master)) = master else {
            // Its master is gone (or it is parked): it has noticed once its link is down.
            if link.link_up {
                return false;
            }
            continue;
        };
        if !link.link_up || link.sync_in_progress || link.replica_offset != master.repl_offset {
            return false;
        }
        let listed = match connect(master_ip).await {
            Ok(node) => match node.role().await {
                Ok(RoleReply::Master { replicas, .. }) => replicas
                    .iter()
                    .any(|(host, port, _)| host == ip && *port == PORT),
                _ => false,
            },
            Err(_) => false,
        };
        if !listed {
            return false;
        }
    }
    true
}

/// A plain client for the data commands the operator never sends (`SET`, `GET`, `WAIT`).
pub async fn data(ip: &str) -> redis::aio::MultiplexedConnection {
    // No response timeout: `WAIT` blocks server-side for up to its own timeout.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(format!("redis://{ip}:{PORT}"))
        .expect("client")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("data connection")
}

/// Writes `key` on the primary at `ip` and waits until at least one replica acknowledged it (`WAIT 1`): a
/// write a client saw confirmed.
pub async fn set_confirmed(ip: &str, key: &str, value: &str) {
    let mut data = data(ip).await;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut data)
        .await
        .expect("SET");
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut data)
        .await
        .expect("WAIT");
    assert!(acknowledged >= 1, "{key} was not confirmed by a replica");
}

/// The value of `key` on the server at `ip`.
pub async fn get(ip: &str, key: &str) -> Option<String> {
    let mut data = data(ip).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut data)
        .await
        .expect("GET")
}
