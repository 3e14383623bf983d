//! The Redis client against real `redis-server` processes on 127.0.0.1 (Debian's `redis-server`
//! package): replication, promotion, parking, the operator's handover, configuration, write pauses, `WAIT`,
//! and that a stopped server makes calls fail within their bound instead of hanging.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_fsm::{Endpoint, ServerRole, ServerState};
use redis_operator::converge::handover::{hand_over, limits};
use redis_operator::converge::live_config;
use redis_operator::converge::topology::CommandError;
use redis_operator::redis::{RedisError, RedisNode, RoleReply, Timeouts};

const HOST: &str = "127.0.0.1";

#[path = "shared/server_binary.rs"]
mod server_binary;
use server_binary::server_binary;

/// A `redis-server` on a free port in its own directory, killed (and its directory removed) on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server started with extra arguments.
    fn start_with(extra: &[&str]) -> Server {
        let port = TcpListener::bind((HOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("redis-client-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new(server_binary())
            .args(["--bind", HOST, "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // Start a replica's full sync at once instead of waiting for more replicas.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_binary()));
        let server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((HOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    async fn node(&self) -> RedisNode {
        RedisNode::connect(HOST, self.port, None, Timeouts::default())
            .await
            .expect("connect")
    }

    /// A plain client for data commands the operator never sends (SET, GET).
    async fn data(&self) -> redis::aio::MultiplexedConnection {
        // No response timeout: `WAIT` blocks server-side for up to its own timeout.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        redis::Client::open(format!("redis://{HOST}:{}", self.port))
            .expect("client")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("data connection")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A stopped process ignores nothing but SIGKILL; continue it anyway so it exits cleanly.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it returns `Some`, failing after `within`.
async fn until<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn in_sync_replica(node: &RedisNode) -> Option<ServerState> {
    let state = node.observe().await.ok()?;
    match &state.role {
        ServerRole::Replica(link) if link.link_up && !link.sync_in_progress => Some(state),
        _ => None,
    }
}

/// Waits until `primary` itself lists the replica on `port`: the replica reports its link up
/// slightly before the master counts it online (the master waits for its first `REPLCONF ACK`).
async fn until_listed(primary: &RedisNode, port: u16) {
    until(
        Duration::from_secs(10),
        "the master to list its replica",
        || async {
            match primary.role().await.ok()? {
                RoleReply::Master { replicas, .. } => {
                    replicas.iter().any(|r| r.1 == port).then_some(())
                }
                RoleReply::Replica { .. } => None,
            }
        },
    )
    .await
}

async fn set(server: &Server, key: &str, value: &str) {
    let mut data = server.data().await;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut data)
        .await
        .expect("SET");
}

async fn get(server: &Server, key: &str) -> Option<String> {
    let mut data = server.data().await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut data)
        .await
        .expect("GET")
}

#[tokio::test]
async fn replicaof_role_info_and_wait_against_a_real_pair() {
    let (a, b) = (Server::start(), Server::start());
    let (na, nb) = (a.node().await, b.node().await);
    let fresh = na.observe().await.expect("observe");
    assert_eq!(fresh.role, ServerRole::Master);
    assert_eq!(fresh.keys, 0);
    assert!(!fresh.aof_enabled);

    set(&a, "k1", "v1").await;
    nb.replicaof(HOST, a.port).await.expect("replicaof");
    let replica = until(Duration::from_secs(10), "b in sync", || {
        in_sync_replica(&nb)
    })
    .await;
    until_listed(&na, b.port).await;
    let ServerRole::Replica(link) = &replica.role else {
        unreachable!("in_sync_replica returns replicas")
    };
    assert_eq!(
        (link.master_host.as_str(), link.master_port),
        (HOST, a.port)
    );
    assert_eq!(replica.keys, 1);
    assert_eq!(get(&b, "k1").await.as_deref(), Some("v1"));

    let primary = na.observe().await.expect("observe");
    assert_eq!(
        replica.replid, primary.replid,
        "the replica shares the primary's history"
    );

    match na.role().await.expect("role") {
        RoleReply::Master { replicas, .. } => {
            assert_eq!(replicas.len(), 1);
            assert_eq!(replicas[0].1, b.port);
        }
        other => panic!("a is master, got {other:?}"),
    }
    match nb.role().await.expect("role") {
        RoleReply::Replica { port, state, .. } => {
            assert_eq!(port, a.port);
            assert_eq!(state, "connected");
        }
        other => panic!("b is a replica, got {other:?}"),
    }
    let raw: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut b.data().await)
        .await
        .expect("info");
    assert!(raw.contains("role:slave"), "{raw}");

    // WAIT counts the replica that acknowledged this connection's write.
    let mut data = a.data().await;
    let () = redis::cmd("SET")
        .arg("k2")
        .arg("v2")
        .query_async(&mut data)
        .await
        .expect("SET");
    let acked: u32 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query_async(&mut data)
        .await
        .expect("WAIT");
    assert_eq!(acked, 1);
}

fn at(port: u16) -> Endpoint {
    Endpoint {
        host: HOST.into(),
        port,
    }
}

/// Writes `SET hN N` to `server` one after another until told to stop; returns the writes that were answered
/// OK (each by the server they were sent to).
async fn keep_writing(port: u16, stop: tokio::sync::watch::Receiver<bool>) -> Vec<u64> {
    let client = redis::Client::open(format!("redis://{HOST}:{port}/")).unwrap();
    // A write held back by the handover's pause waits as long as the pause: no response timeout of the
    // client's own (its default, 500 ms, is shorter than a pause on a loaded machine).
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let mut taken = Vec::new();
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let reply: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("h{n}"))
            .arg(n)
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(()) => taken.push(n),
            Err(e) if e.code() == Some("READONLY") => break,
            Err(e) => panic!("write {n}: {e}"),
        }
    }
    taken
}

#[tokio::test]
async fn promote_park_and_hand_over() {
    let (a, b) = (Server::start(), Server::start());
    let (na, nb) = (a.node().await, b.node().await);
    set(&a, "k", "v").await;
    nb.replicaof(HOST, a.port).await.expect("replicaof");
    until(Duration::from_secs(10), "b in sync", || {
        in_sync_replica(&nb)
    })
    .await;
    until_listed(&na, b.port).await;
    let history = na.observe().await.expect("observe").replid;

    // The handover under a writer: roles swap, the new master keeps the old history as replid2, every write
    // a took is on b, and the writer's next write is refused READONLY by a (held back by the pause, never
    // taken).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(keep_writing(a.port, stopped));
    until(Duration::from_secs(10), "writes on a", || async {
        (na.replication().await.ok()?.1 > 1000).then_some(())
    })
    .await;
    let limits = limits(Duration::from_secs(5), Timeouts::default().command);
    let done = hand_over(&na, &nb, &at(a.port), &at(b.port), limits, || true)
        .await
        .expect("handover");
    assert!(
        done.held < Duration::from_secs(1),
        "writes paused for {:?}",
        done.held
    );
    assert!(done.polls >= 1 && done.first.primary.is_some_and(|p| p.master));
    let _ = stop.send(true);
    let taken = writer.await.unwrap();
    assert!(!taken.is_empty());
    let promoted = nb.observe().await.expect("observe b");
    assert_eq!(promoted.role, ServerRole::Master);
    assert_eq!(promoted.replid2.as_deref(), Some(history.as_str()));
    let mut data = b.data().await;
    let on_b: Vec<Option<u64>> = redis::cmd("MGET")
        .arg(taken.iter().map(|n| format!("h{n}")).collect::<Vec<_>>())
        .query_async(&mut data)
        .await
        .unwrap();
    assert!(
        on_b.iter().all(Option::is_some),
        "a write a took is missing on b"
    );
    // a resumes from b with a partial resynchronisation (no full sync: its data stays its own history).
    until(Duration::from_secs(10), "a follows b", || {
        in_sync_replica(&na)
    })
    .await;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut b.data().await)
        .await
        .unwrap();
    assert!(info.contains("sync_full:0"), "a full resync: {info}");

    // A target that does not receive the stream (held back by a write pause of its own): the handover gives up
    // within its wait, before pausing the primary's writes: a write sent meanwhile is answered before the
    // handover ends, and the primary never changed.
    na.replicaof_no_one().await.expect("a back to master");
    nb.replicaof(HOST, a.port).await.expect("b follows a");
    until(Duration::from_secs(10), "b in sync again", || {
        in_sync_replica(&nb)
    })
    .await;
    nb.client_pause_write(Duration::from_secs(30))
        .await
        .expect("pause b");
    set(&a, "behind", "1").await;
    let short = limits_with_wait(Duration::from_millis(1500));
    let started = Instant::now();
    let (gave_up, written) = tokio::join!(
        async {
            let result = hand_over(&na, &nb, &at(a.port), &at(b.port), short, || true).await;
            (result, Instant::now())
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            set(&a, "during", "1").await;
            Instant::now()
        }
    );
    let (gave_up, ended) = (gave_up.0.expect_err("b never catches up"), gave_up.1);
    assert!(
        matches!(&gave_up, CommandError::SwitchoverGaveUp(why)
            if why.contains("bytes behind") && why.contains("before pausing writes")),
        "{gave_up}"
    );
    assert!(
        written < ended,
        "a write waited for the handover: it paused the primary"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(na.replication().await.unwrap().0, ServerRole::Master);
    set(&a, "after", "1").await;
    nb.client_unpause().await.expect("unpause b");
    until(Duration::from_secs(10), "b catches up", || {
        in_sync_replica(&nb)
    })
    .await;
    assert!(matches!(
        nb.replication().await.unwrap().0,
        ServerRole::Replica(_)
    ));

    // A target that is no replica of the primary is never promoted.
    let refused = hand_over(&nb, &na, &at(b.port), &at(a.port), short, || true)
        .await
        .expect_err("b is no master");
    assert!(
        matches!(&refused, CommandError::SwitchoverGaveUp(why) if why.contains("no master")),
        "{refused}"
    );

    // Park a: a replica of itself keeps its data, stays read-only and replicates from nobody.
    let before = na.observe().await.expect("observe");
    let keys = before.keys;
    assert!(keys > 1);
    na.replicaof(HOST, a.port).await.expect("park");
    let parked = na.observe().await.expect("observe");
    let ServerRole::Replica(link) = &parked.role else {
        panic!("parked server is a replica")
    };
    assert!(!link.link_up);
    assert_eq!(parked.keys, keys);
    let mut data = a.data().await;
    let write: redis::RedisResult<()> = redis::cmd("SET")
        .arg("x")
        .arg("1")
        .query_async(&mut data)
        .await;
    assert_eq!(write.expect_err("read-only").code(), Some("READONLY"));

    // Promote it again: a new history that continues the one it had.
    na.replicaof_no_one().await.expect("promote");
    let repromoted = na.observe().await.expect("observe");
    assert_eq!(repromoted.role, ServerRole::Master);
    assert_eq!(repromoted.replid2.as_deref(), Some(before.replid.as_str()));
    assert!(repromoted.second_repl_offset.is_some());
}

#[tokio::test]
async fn config_and_write_pause() {
    let a = Server::start();
    let na = a.node().await;
    na.config_set("maxmemory", "10mb")
        .await
        .expect("config set");
    assert_eq!(
        na.config_get("maxmemory")
            .await
            .expect("config get")
            .as_deref(),
        Some("10485760")
    );
    assert_eq!(
        na.config_get("no-such-directive")
            .await
            .expect("config get"),
        None
    );
    let bad = na
        .config_set("maxmemory", "lots")
        .await
        .expect_err("invalid value");
    assert!(matches!(bad, RedisError::Server { .. }), "{bad}");
}

/// A value for every directive the operator sets at runtime, different from Redis' default where possible,
/// written the way users write them (units, upper case, extra spaces).
const LIVE_SAMPLES: &[(&str, &str)] = &[
    ("active-expire-effort", "3"),
    ("appendfsync", "Always"),
    ("appendonly", "YES"),
    ("dynamic-hz", "no"),
    ("hz", "1000"),
    ("latency-monitor-threshold", "100"),
    ("lazyfree-lazy-eviction", "yes"),
    ("lazyfree-lazy-expire", "yes"),
    ("lazyfree-lazy-server-del", "yes"),
    ("lazyfree-lazy-user-del", "yes"),
    ("lazyfree-lazy-user-flush", "yes"),
    ("lfu-decay-time", "2"),
    ("lfu-log-factor", "20"),
    ("loglevel", "WARNING"),
    ("maxmemory", "100MB"),
    ("maxmemory-eviction-tenacity", "20"),
    ("maxmemory-policy", "AllKeys-LFU"),
    ("maxmemory-samples", "7"),
    ("min-replicas-max-lag", "5"),
    ("min-replicas-to-write", "1"),
    ("notify-keyspace-events", "KEA"),
    ("repl-backlog-size", "2mb"),
    ("repl-backlog-ttl", "60"),
    ("repl-timeout", "30"),
    ("replica-lazy-flush", "yes"),
    ("save", "900  1 300 10"),
    ("slowlog-log-slower-than", "-1"),
    ("slowlog-max-len", "64"),
    ("timeout", "10"),
];

/// The server under test reports its software and release, and knows exactly the directives of its generated
/// list (`scripts/server-directives.sh`); a server older than the support matrix is reported unsupported.
#[tokio::test]
async fn the_server_reports_its_release_and_knows_exactly_its_listed_directives() {
    let server = Server::start();
    let software = server.node().await.observe().await.unwrap().server;
    if let Some(why) = software.unsupported() {
        assert!(software.version < redis_fsm::Version(7, 0, 0), "{why}");
        assert!(why.contains("is not supported"), "{why}");
        return;
    }
    let file = format!(
        "{}/src/api/servers/{}-{}.{}.directives",
        env!("CARGO_MANIFEST_DIR"),
        software.name.as_str(),
        software.version.0,
        software.version.1
    );
    let listed = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!("{software}: no list {file} ({e}); run scripts/server-directives.sh")
    });
    let mut data = server.data().await;
    let all: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query_async(&mut data)
        .await
        .unwrap();
    let mut names: Vec<&str> = all.iter().step_by(2).map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        listed.lines().collect::<Vec<_>>(),
        "{software} drifted from {file}: run scripts/server-directives.sh"
    );
}

/// Every directive on the live list really is settable at runtime, and what the server reports back is what
/// the planner expects, so a converged pod gets no further command (a mismatch would resend it forever).
#[tokio::test]
async fn every_live_directive_is_set_at_runtime_and_reads_back_as_planned() {
    let server = Server::start();
    let node = server.node().await;
    // A Valkey image may not name the Redis directives Valkey lacks (validation refuses them), so they are never
    // sent to a Valkey server: those, and only those, are left out on Valkey.
    let valkey = node.observe().await.unwrap().server.name == redis_fsm::ServerName::Valkey;
    let (settable, lacking): (Vec<&str>, Vec<&str>) =
        redis_operator::desired::live_directives::live_directives().partition(|directive| {
            !valkey || redis_operator::api::directives::valkey_lacks(directive).is_none()
        });
    let mut unknown = Vec::new();
    for directive in &lacking {
        if node
            .config_get(directive)
            .await
            .expect("config get")
            .is_none()
        {
            unknown.push(*directive);
        }
    }
    assert_eq!(
        unknown, lacking,
        "Valkey lacks exactly these live directives"
    );
    let mut settings: Vec<(String, String)> = Vec::new();
    for directive in settable {
        let (_, sample) = LIVE_SAMPLES
            .iter()
            .find(|(name, _)| *name == directive)
            .unwrap_or_else(|| panic!("no sample value for {directive}"));
        // Valkey's defaults differ from Redis' for some switches (lazyfree-* are on): a switch whose sample is
        // the server's default is tried the other way.
        let current = node.config_get(directive).await.expect("config get");
        let value = match (*sample, current.as_deref()) {
            ("yes", Some("yes")) => "no",
            ("no", Some("no")) => "yes",
            (sample, _) => sample,
        };
        settings.push((directive.to_string(), value.to_string()));
    }
    let desired = live_config::desired(&settings);
    assert_eq!(
        desired.len(),
        settings.len(),
        "every sample is a live value"
    );
    let mut observed = live_config::Observed::new();
    for setting in &desired {
        let before = node
            .config_get(&setting.directive)
            .await
            .expect("config get");
        assert!(
            !live_config::holds(setting, before.as_deref()),
            "{} {:?} is Redis' default: the sample proves nothing",
            setting.directive,
            setting.value
        );
        node.config_set(&setting.directive, &setting.value)
            .await
            .unwrap_or_else(|e| {
                panic!("CONFIG SET {} {:?}: {e}", setting.directive, setting.value)
            });
        let after = node
            .config_get(&setting.directive)
            .await
            .expect("config get");
        assert!(
            live_config::holds(setting, after.as_deref()),
            "{} {:?} reads back {after:?}",
            setting.directive,
            setting.value
        );
        observed.insert(setting.directive.clone(), after);
    }
    assert!(live_config::plan(&desired, &observed).is_empty());
    // `A` is reported for the whole set of classes, however it was written.
    node.config_set("notify-keyspace-events", "KEg$lshzxetd")
        .await
        .expect("config set");
    let events = node
        .config_get("notify-keyspace-events")
        .await
        .expect("config get");
    let all = desired
        .iter()
        .find(|s| s.directive == "notify-keyspace-events")
        .expect("a sample");
    assert!(live_config::holds(all, events.as_deref()), "{events:?}");
}

#[tokio::test]
async fn a_stopped_server_times_out_within_the_bound() {
    let a = Server::start();
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        command: Duration::from_millis(300),
    };
    let node = RedisNode::connect(HOST, a.port, None, timeouts)
        .await
        .expect("connect");
    node.role().await.expect("role");

    a.signal("-STOP");
    let started = Instant::now();
    let error = node
        .observe()
        .await
        .expect_err("a stopped server cannot answer");
    let elapsed = started.elapsed();
    assert!(
        matches!(error, RedisError::CommandTimeout { .. }),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    // A new connection to the stopped server fails within the bounds too.
    let started = Instant::now();
    let outcome = match RedisNode::connect(HOST, a.port, None, timeouts).await {
        Ok(fresh) => fresh.role().await.map(|_| ()),
        Err(error) => Err(error),
    };
    let error = outcome.expect_err("a stopped server cannot answer");
    assert!(
        matches!(
            error,
            RedisError::ConnectTimeout { .. }
                | RedisError::CommandTimeout { .. }
                | RedisError::Connection { .. }
        ),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    a.signal("-CONT");
    until(
        Duration::from_secs(5),
        "the server answers again",
        || async { node.role().await.ok() },
    )
    .await;
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error() {
    let port = TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let error = RedisNode::connect(HOST, port, None, Timeouts::default())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, RedisError::Connection { .. }), "{error}");
}

/// The ACL users the operator creates, on real servers: the operator's user can send every command the operator
/// sends (and the application user cannot), a replica authenticates to its primary as the replication user, and
/// `RedisNode::open` falls back to no login on a server that does not know the operator's user.
#[tokio::test]
async fn the_operators_acl_users_allow_exactly_what_the_operator_sends() {
    use redis_operator::api::AuthSpec;
    use redis_operator::auth::{self, REPLICATION_USER};
    use redis_operator::redis::{Access, Login};

    let (a, b) = (Server::start(), Server::start());
    let spec = AuthSpec::default();
    let mut n = 0;
    let resolved = auth::resolve("cache", &spec, None, None, &mut || {
        n += 1;
        format!("password-{n}")
    })
    .unwrap();
    let access = Access {
        timeouts: Timeouts::default(),
        login: auth::operator_login(&resolved),
        tls: Default::default(),
    };
    // No such user yet: the fallback connects without a login.
    let before = RedisNode::open(HOST, a.port, &access)
        .await
        .expect("fallback");
    assert!(before.acl_user("redis-operator").await.unwrap().is_none());
    for server in [&a, &b] {
        let node = server.node().await;
        // In the convergence pass's order: the operator's users, masterauth, then `default` (the application's),
        // which loses the administrative commands this unauthenticated connection is using.
        let users = auth::desired_users(&spec, &resolved);
        for user in users.iter().filter(|u| u.name != "default") {
            node.acl_setuser(user.name, &user.rules)
                .await
                .expect("setuser");
        }
        let replication = &resolved.internal[REPLICATION_USER];
        node.config_set("masterauth", replication).await.unwrap();
        node.config_set("masteruser", REPLICATION_USER)
            .await
            .unwrap();
        let default = users.iter().find(|u| u.name == "default").unwrap();
        node.acl_setuser("default", &default.rules).await.unwrap();
        let locked = node
            .config_get("maxmemory")
            .await
            .expect_err("now restricted");
        assert!(matches!(locked, RedisError::Server { ref code, .. } if code == "NOPERM"));
    }
    let (na, nb) = (
        RedisNode::open(HOST, a.port, &access)
            .await
            .expect("login a"),
        RedisNode::open(HOST, b.port, &access)
            .await
            .expect("login b"),
    );
    // Everything the operator sends, as its own user.
    na.observe().await.expect("INFO");
    na.role().await.expect("ROLE");
    na.config_get("maxmemory").await.expect("CONFIG GET");
    na.config_set("maxmemory", "0").await.expect("CONFIG SET");
    na.acl_user("default").await.expect("ACL GETUSER");
    nb.replicaof(HOST, a.port).await.expect("REPLICAOF");
    // The replica authenticates as the replication user.
    until(
        Duration::from_secs(10),
        "b in sync over an authenticated link",
        || in_sync_replica(&nb),
    )
    .await;
    until_listed(&na, b.port).await;
    let limits = limits(Duration::from_secs(5), Timeouts::default().command);
    hand_over(&na, &nb, &at(a.port), &at(b.port), limits, || true)
        .await
        .expect("CLIENT PAUSE, INFO, REPLICAOF NO ONE, REPLICAOF, CLIENT UNPAUSE");
    assert_eq!(nb.replication().await.unwrap().0, ServerRole::Master);
    nb.replicaof_no_one().await.expect("REPLICAOF NO ONE");

    // The application user (the generated password) may not do the same.
    let app = resolved.create_application_secret.clone().unwrap();
    let app_login = Login {
        username: "default".into(),
        password: app,
    };
    let as_app = RedisNode::connect_as(HOST, a.port, Some(&app_login), Timeouts::default())
        .await
        .expect("the application password works");
    let refused = as_app
        .config_set("maxmemory", "1")
        .await
        .expect_err("admin");
    assert!(
        matches!(&refused, RedisError::Server { code, .. } if code == "NOPERM"),
        "{refused}"
    );
    // And nothing but the passwords gets in.
    let wrong = Login {
        username: "redis-operator".into(),
        password: "guess".into(),
    };
    assert!(
        RedisNode::connect_as(HOST, a.port, Some(&wrong), Timeouts::default())
            .await
            .is_err()
    );
}

/// Applies the instance's users to `server` as the convergence pass does; returns the resolved passwords.
async fn with_the_operators_users(server: &Server) -> redis_operator::auth::Resolved {
    use redis_operator::api::AuthSpec;
    use redis_operator::auth::{self, REPLICATION_USER};

    let spec = AuthSpec::default();
    let mut n = 0;
    let resolved = auth::resolve("cache", &spec, None, None, &mut || {
        n += 1;
        format!("password-{n}")
    })
    .unwrap();
    let node = server.node().await;
    let users = auth::desired_users(&spec, &resolved);
    for user in users.iter().filter(|u| u.name != "default") {
        node.acl_setuser(user.name, &user.rules)
            .await
            .expect("setuser");
    }
    node.config_set("masterauth", &resolved.internal[REPLICATION_USER])
        .await
        .unwrap();
    node.config_set("masteruser", REPLICATION_USER)
        .await
        .unwrap();
    let default = users.iter().find(|u| u.name == "default").unwrap();
    node.acl_setuser("default", &default.rules).await.unwrap();
    resolved
}

/// What a holder of each internal user's password can do, on a real server: the exporter (reachable through
/// Prometheus-facing code), the probe and the replication user read no other user's secret (`CONFIG GET
/// masterauth` gives the replication password) and no command arguments (`SLOWLOG GET`, `CLIENT LIST`), and none
/// of them reads or writes a key with a command. The replication user's worst: `PSYNC` streams a copy of every
/// key (what it is for).
#[tokio::test]
async fn no_internal_user_but_the_operators_reads_another_users_secret() {
    use redis_operator::auth::{EXPORTER_USER, OPERATOR_USER, PROBE_USER, REPLICATION_USER};
    use redis_operator::redis::Login;

    let a = Server::start();
    set(&a, "secret-key", "secret-value").await;
    let resolved = with_the_operators_users(&a).await;
    let secret_readers: &[&[&str]] = &[
        &["CONFIG", "GET", "masterauth"],
        &["CONFIG", "GET", "*"],
        &["ACL", "LIST"],
        &["ACL", "GETUSER", "replication"],
        &["SLOWLOG", "GET"],
        &["CLIENT", "LIST"],
        &["ACL", "SETUSER", "replication", "nopass"],
        &["KEYS", "*"],
        &["GET", "k"],
        &["SET", "k", "v"],
        &["MONITOR"],
    ];
    for user in [EXPORTER_USER, PROBE_USER, REPLICATION_USER] {
        let login = Login {
            username: user.into(),
            password: resolved.internal[user].clone(),
        };
        let mut connection = redis::Client::open(format!("redis://{HOST}:{}", a.port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let () = redis::cmd("AUTH")
            .arg(&login.username)
            .arg(&login.password)
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{user} logs in: {e}"));
        for args in secret_readers {
            let mut cmd = redis::cmd(args[0]);
            cmd.arg(&args[1..]);
            let reply: redis::RedisResult<redis::Value> = cmd.query_async(&mut connection).await;
            let refused = reply
                .as_ref()
                .err()
                .and_then(|e| e.code().map(str::to_string));
            assert_eq!(
                refused.as_deref(),
                Some("NOPERM"),
                "{user} may run {args:?}: {reply:?}"
            );
        }
    }
    // The replication password is worth the whole data set: PSYNC sends a full copy.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect((HOST, a.port))
            .await
            .unwrap();
        let auth = format!(
            "AUTH {REPLICATION_USER} {}\r\n",
            resolved.internal[REPLICATION_USER]
        );
        raw.write_all(auth.as_bytes()).await.unwrap();
        let mut ok = [0u8; 5];
        raw.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        raw.write_all(b"PSYNC ? -1\r\n").await.unwrap();
        let mut stream = Vec::new();
        let mut buf = [0u8; 4096];
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(n) = raw.read(&mut buf).await {
                stream.extend_from_slice(&buf[..n]);
                if n == 0 || stream.windows(12).any(|w| w == b"secret-value") {
                    break;
                }
            }
        })
        .await;
        assert!(
            found.is_ok() && stream.windows(12).any(|w| w == b"secret-value"),
            "{:?}",
            String::from_utf8_lossy(&stream)
        );
    }
    // The operator's own user is the one that may: it sets masterauth and the users.
    let operator = Login {
        username: OPERATOR_USER.into(),
        password: resolved.internal[OPERATOR_USER].clone(),
    };
    let node = RedisNode::connect_as(HOST, a.port, Some(&operator), Timeouts::default())
        .await
        .unwrap();
    assert_eq!(
        node.config_get("masterauth").await.unwrap().as_deref(),
        Some(resolved.internal[REPLICATION_USER].as_str())
    );
}

/// Rules widened on a live server by someone with an administrative connection (more commands, keys,
/// channels, a selector, a flag) are put back by the convergence pass, which then finds nothing to do.
#[tokio::test]
async fn widened_acl_rules_are_put_back_by_the_convergence_pass() {
    use redis_operator::api::AuthSpec;
    use redis_operator::auth::{self, OPERATOR_USER, REPLICATION_USER};
    use redis_operator::converge::auth::{converge_server, Plan, Reported};
    use redis_operator::redis::{Access, Login};

    let a = Server::start();
    let resolved = with_the_operators_users(&a).await;
    let plan = Plan {
        users: auth::desired_users(&AuthSpec::default(), &resolved),
        replication_password: Some(resolved.internal[REPLICATION_USER].clone()),
    };
    let access = Access {
        timeouts: Timeouts::default(),
        login: auth::operator_login(&resolved),
        tls: Default::default(),
    };
    let leading = || true;
    let mut reported = Reported::default();
    let set = converge_server(HOST, a.port, &plan, true, &access, leading, &mut reported)
        .await
        .expect("a pass");
    assert!(set.is_empty(), "already converged: {set:?}");

    let operator = Login {
        username: OPERATOR_USER.into(),
        password: resolved.internal[OPERATOR_USER].clone(),
    };
    let admin = RedisNode::connect_as(HOST, a.port, Some(&operator), Timeouts::default())
        .await
        .unwrap();
    let before: Vec<_> = {
        let mut users = Vec::new();
        for user in ["default", "exporter", "probe", "replication"] {
            users.push(admin.acl_user(user).await.unwrap());
        }
        users
    };
    let widen = |rules: &[&str]| rules.iter().map(ToString::to_string).collect::<Vec<_>>();
    admin
        .acl_setuser("exporter", &widen(&["+@all"]))
        .await
        .unwrap();
    admin
        .acl_setuser("default", &widen(&["+@admin"]))
        .await
        .unwrap();
    admin
        .acl_setuser("probe", &widen(&["~*", "&*", "skip-sanitize-payload"]))
        .await
        .unwrap();
    admin
        .acl_setuser("replication", &widen(&["(~* +get)"]))
        .await
        .unwrap();

    let set = converge_server(HOST, a.port, &plan, true, &access, leading, &mut reported)
        .await
        .expect("a pass");
    assert_eq!(
        set,
        [
            "user replication",
            "user probe",
            "user exporter",
            "user default"
        ],
        "every widened user is set again"
    );
    for (user, was) in ["default", "exporter", "probe", "replication"]
        .iter()
        .zip(&before)
    {
        assert_eq!(&admin.acl_user(user).await.unwrap(), was, "{user}");
    }
    let exporter = Login {
        username: "exporter".into(),
        password: resolved.internal["exporter"].clone(),
    };
    let as_exporter = RedisNode::connect_as(HOST, a.port, Some(&exporter), Timeouts::default())
        .await
        .unwrap();
    let refused = as_exporter
        .config_set("maxmemory", "1")
        .await
        .expect_err("the exporter's commands are back to its own");
    assert!(
        matches!(&refused, RedisError::Server { code, .. } if code == "NOPERM"),
        "{refused}"
    );
    let again = converge_server(HOST, a.port, &plan, true, &access, leading, &mut reported)
        .await
        .expect("a pass");
    assert!(again.is_empty(), "{again:?}");
}

/// What Redis reports for the rules the operator sets holds them: the internal users' and the default
/// application rules are recognised as written (an operator that restarts sets nothing again), and rules Redis
/// spells its own way (overlapping categories expanded into commands) hold once reported after setting, so a
/// converged server is not set again on every pass.
#[tokio::test]
async fn redis_spelling_of_every_kind_of_rule_holds_without_resetting_each_pass() {
    use redis_operator::api::AuthSpec;
    use redis_operator::auth::{self, password_hash, rules, user_rules, REPLICATION_USER};
    use redis_operator::converge::auth::{converge_server, Plan, Reported};
    use redis_operator::redis::Access;

    let a = Server::start();
    let node = a.node().await;
    let hashes = vec![password_hash(b"pw")];
    let recognised = [
        "-@all +info +role +replicaof +config|get +config|set +client|pause +client|unpause \
         +client|kill +acl|getuser +acl|setuser",
        "-@all +psync +replconf +ping",
        "-@all +ping +info +slowlog|len +latency|latest +select +dbsize +cluster|info",
        redis_operator::api::DEFAULT_USER_RULES,
        "~* &* +@all",
        "%R~cache:* %W~out:* %RW~both:* allchannels +@all -@admin -flushall",
        "allkeys resetchannels &news:* -@all +get +set +del +get",
        "~* +@all -@admin (~cache:* +get) (%R~logs:* +@read)",
    ];
    for (n, text) in recognised.iter().enumerate() {
        let name = format!("user{n}");
        let words = user_rules(&hashes, text);
        node.acl_setuser(&name, &words)
            .await
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let reported = node.acl_user(&name).await.unwrap().expect("the user");
        assert!(
            rules::holds(&words, &hashes, &reported),
            "{text:?} is reported as {reported:?}"
        );
    }

    // Application rules Redis rewrites: one pass sets them, the next finds them held.
    for text in [
        "~app:* &* +@read +@write -@dangerous",
        "~* &* +@all -@dangerous +keys",
    ] {
        let server = Server::start();
        let spec = AuthSpec {
            default_user_rules: text.into(),
            ..Default::default()
        };
        let mut n = 0;
        let resolved = auth::resolve("cache", &spec, None, None, &mut || {
            n += 1;
            format!("password-{n}")
        })
        .unwrap();
        let plan = Plan {
            users: auth::desired_users(&spec, &resolved),
            replication_password: Some(resolved.internal[REPLICATION_USER].clone()),
        };
        let access = Access {
            timeouts: Timeouts::default(),
            login: auth::operator_login(&resolved),
            tls: Default::default(),
        };
        let mut reported = Reported::default();
        converge_server(
            HOST,
            server.port,
            &plan,
            true,
            &access,
            || true,
            &mut reported,
        )
        .await
        .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let again = converge_server(
            HOST,
            server.port,
            &plan,
            true,
            &access,
            || true,
            &mut reported,
        )
        .await
        .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert!(again.is_empty(), "{text}: set again: {again:?}");
    }
}

/// A stock server can make `INFO` large: with `databases` set high and a key in each of 40 000 databases the
/// keyspace section alone is over the client's read cap. A whole `INFO` is then refused as too large, not
/// buffered; the observation, which asks for its sections one at a time, still reads the server, replication
/// and persistence sections and counts the server as holding data. A server with 300 databases in use is read
/// exactly, as before.
#[tokio::test]
async fn an_info_over_the_read_cap_is_refused_and_the_observation_still_reads_the_server() {
    use redis_operator::redis::client::MAX_READ_BYTES;

    let a = Server::start_with(&["--databases", "50000"]);
    let mut data = a.data().await;
    let fill = |from: u32, to: u32| {
        let mut pipe = redis::pipe();
        for db in from..to {
            pipe.cmd("SELECT").arg(db).ignore();
            pipe.cmd("SET").arg("k").arg("v").ignore();
        }
        pipe
    };
    let () = fill(0, 300).query_async(&mut data).await.expect("fill");
    let state = a.node().await.observe().await.expect("a normal INFO");
    assert_eq!(state.keys, 300);

    let () = fill(300, 40_000)
        .query_async(&mut data)
        .await
        .expect("fill");
    let raw: String = redis::cmd("INFO").query_async(&mut data).await.unwrap();
    assert!(raw.len() > MAX_READ_BYTES, "INFO is {} bytes", raw.len());
    let state = a
        .node()
        .await
        .observe()
        .await
        .expect("observed without the keyspace section");
    assert_eq!(state.role, ServerRole::Master);
    assert!(state.keys >= 1);
    assert!(!state.run_id.is_empty());
}

/// A raw client that authenticates as `user` and sends `command` without waiting for its reply (a script that
/// blocks the server). The connection is returned so it stays open.
async fn send_raw(
    port: u16,
    user: &str,
    password: &str,
    command: &[&str],
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let resp = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    };
    let mut stream = tokio::net::TcpStream::connect((HOST, port)).await.unwrap();
    stream
        .write_all(resp(&["AUTH", user, password]).as_bytes())
        .await
        .unwrap();
    let mut ok = [0u8; 5];
    stream.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    stream.write_all(resp(command).as_bytes()).await.unwrap();
    stream
}

/// The operator's users on `server`, plus `app` (every command and key), and the operator's access.
async fn operator_access(server: &Server) -> redis_operator::redis::Access {
    use redis_operator::auth::{self, OPERATOR_USER};
    let resolved = with_the_operators_users(server).await;
    let access = redis_operator::redis::Access {
        timeouts: Timeouts::default(),
        login: auth::operator_login(&resolved),
        tls: Default::default(),
    };
    assert_eq!(
        access.login.as_ref().map(|l| l.username.as_str()),
        Some(OPERATOR_USER)
    );
    let node = RedisNode::open(HOST, server.port, &access).await.unwrap();
    let app = ["on", ">app-password", "+@all", "~*", "&*"].map(String::from);
    node.acl_setuser("app", &app).await.unwrap();
    access
}

/// A server busy in a script answers the operator's user (its login is `HELLO`, which a busy server accepts)
/// with `BUSY`, seen as the refusal `Busy`, not as an unreachable server. The operator's user may kill a script
/// that did not write; one that wrote is `UNKILLABLE`, and `SHUTDOWN NOSAVE NOW` then stops the server.
#[tokio::test]
async fn a_busy_server_is_seen_busy_and_its_script_is_killed_or_the_server_shut_down() {
    use redis_fsm::Refusal;
    let a = Server::start_with(&["--lua-time-limit", "300"]);
    let access = operator_access(&a).await;
    let observe = || async {
        let node = RedisNode::open(HOST, a.port, &access).await?;
        node.observe().await
    };
    let busy = || async {
        until(Duration::from_secs(10), "BUSY", || async {
            match observe().await {
                Err(error) if error.refusal() == Some(Refusal::Busy) => Some(()),
                _ => None,
            }
        })
        .await
    };

    let _reader = send_raw(
        a.port,
        "app",
        "app-password",
        &["EVAL", "while true do end", "0"],
    )
    .await;
    busy().await;
    let unobserved = redis_fsm::Unobserved::from(&observe().await.unwrap_err());
    assert_eq!(
        unobserved.refusal,
        Some(Refusal::Busy),
        "{}",
        unobserved.reason
    );
    let node = RedisNode::open(HOST, a.port, &access).await.unwrap();
    assert!(node
        .kill_script()
        .await
        .expect("the operator may kill a script"));
    // The script stops at its next interrupt check.
    until(
        Duration::from_secs(5),
        "an observation after the kill",
        || async { observe().await.ok() },
    )
    .await;
    assert!(!node.kill_script().await.unwrap(), "nothing runs any more");

    let _writer = send_raw(
        a.port,
        "app",
        "app-password",
        &["EVAL", "redis.call('SET', 'k', 'v') while true do end", "0"],
    )
    .await;
    busy().await;
    let node = RedisNode::open(HOST, a.port, &access).await.unwrap();
    let refused = node.kill_script().await.unwrap_err();
    assert!(
        matches!(&refused, RedisError::Server { code, .. } if code == "UNKILLABLE"),
        "{refused}"
    );
    node.shutdown_nosave()
        .await
        .expect("SHUTDOWN NOSAVE in BUSY");
    until(Duration::from_secs(10), "the server to stop", || async {
        match RedisNode::open(HOST, a.port, &access).await {
            Err(RedisError::Connection { .. }) => Some(()),
            _ => None,
        }
    })
    .await;
}

/// A server whose connection slots are all taken answers `ERR max number of clients reached`: the refusal
/// `MaxClients` (alive), not an unreachable server, with or without the operator's login, to a new connection.
/// A connection the operator kept from before (see `redis::pool`) is still served.
#[tokio::test]
async fn a_server_at_maxclients_is_seen_refusing_not_unreachable() {
    use redis_fsm::Refusal;
    use redis_operator::redis::refusal_of;
    // With the operator's login (authentication on), and without (off).
    let with_users = Server::start_with(&["--maxclients", "8"]);
    let without = Server::start_with(&["--maxclients", "8"]);
    let cases = [
        (&with_users, operator_access(&with_users).await),
        (&without, redis_operator::redis::Access::default()),
    ];
    for (server, access) in cases {
        // One pass before the slots are taken: its connection is kept.
        RedisNode::open(HOST, server.port, &access)
            .await
            .unwrap()
            .role()
            .await
            .unwrap();
        // Every slot taken by a client that answered: connect until three in a row are refused (a slot freed by
        // a close the server handles late is taken by the next connection).
        let mut held = Vec::new();
        let mut refused = 0;
        while refused < 3 {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect((HOST, server.port))
                .await
                .unwrap();
            let _ = stream.write_all(b"PING\r\n").await;
            let mut reply = [0u8; 64];
            let n = stream.read(&mut reply).await.unwrap_or(0);
            if reply[..n].starts_with(b"-ERR max number of clients reached") {
                refused += 1;
            } else {
                refused = 0;
                held.push(stream);
            }
        }
        // Each time: the refusal is read as a reply, or the server closed the connection before the first
        // command was read (then it is read from a connection that sends nothing).
        // A new connection is refused (a connection kept from before the slots were taken is no new one).
        for _ in 0..5 {
            let error = match RedisNode::open_fresh(HOST, server.port, &access).await {
                Ok(node) => node.observe().await.expect_err("refused"),
                Err(error) => error,
            };
            let refusal = refusal_of(&error, HOST, server.port, &access).await;
            assert_eq!(refusal, Some(Refusal::MaxClients), "{error}");
        }
        let kept = RedisNode::open(HOST, server.port, &access).await.unwrap();
        kept.observe().await.expect("the kept connection is served");
        drop(kept);
        drop(held);
        until(Duration::from_secs(10), "an observation", || async {
            RedisNode::open(HOST, server.port, &access)
                .await
                .ok()?
                .observe()
                .await
                .ok()
        })
        .await;
    }
    // A server that is gone is no refusal.
    let port = with_users.port;
    let access = redis_operator::redis::Access::default();
    drop(with_users);
    let error = RedisNode::open(HOST, port, &access).await.unwrap_err();
    assert_eq!(
        refusal_of(&error, HOST, port, &access).await,
        None,
        "{error}"
    );
}

/// `CLIENT KILL TYPE normal` and `TYPE pubsub`, as the operator's user, disconnect data and Pub/Sub clients of a
/// demoted server but neither the connection sending them nor its replication links.
#[tokio::test]
async fn client_kill_by_type_spares_the_sender_and_replication_links() {
    let a = Server::start();
    let b = Server::start();
    b.node().await.replicaof(HOST, a.port).await.unwrap();
    // Online at the primary (ROLE lists only replicas past their initial sync).
    until(Duration::from_secs(10), "b linked to a", || async {
        match a.node().await.role().await.ok()? {
            RoleReply::Master { replicas, .. } => (replicas.len() == 1).then_some(()),
            RoleReply::Replica { .. } => None,
        }
    })
    .await;
    // The link is authenticated at connect time: it stays once `default` needs a password.
    let access = operator_access(&a).await;
    let mut data = redis::Client::open(format!("redis://app:app-password@{HOST}:{}", a.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("PING").query_async(&mut data).await.unwrap();
    let _subscriber = send_raw(a.port, "app", "app-password", &["SUBSCRIBE", "news"]).await;
    let node = RedisNode::open(HOST, a.port, &access).await.unwrap();
    assert!(
        node.client_kill_type("normal")
            .await
            .expect("the operator may")
            >= 1
    );
    assert_eq!(node.client_kill_type("pubsub").await.unwrap(), 1);
    node.role().await.expect("the sender is spared");
    let dropped: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut data).await;
    assert!(dropped.is_err(), "the data client was disconnected");
    match node.role().await.unwrap() {
        RoleReply::Master { replicas, .. } => assert_eq!(replicas.len(), 1, "{replicas:?}"),
        other => panic!("a is the primary, got {other:?}"),
    }
}

/// The server's count of connections it accepted (INFO stats), read through `data`.
async fn connections_received(data: &mut redis::aio::MultiplexedConnection) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(data)
        .await
        .expect("INFO stats");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received")
}

/// A pass's connection is kept for the next pass to the same server: three passes cost the server one
/// connection. A kept connection the server closed is never handed out again: the next pass opens a new one
/// and is served.
#[tokio::test]
async fn a_pass_takes_the_kept_connection_and_never_a_closed_one() {
    use redis_operator::redis::pool;
    use redis_operator::redis::Access;

    let a = Server::start();
    let endpoint = format!("{HOST}:{}", a.port);
    let access = Access::default();
    let mut data = a.data().await;
    let before = connections_received(&mut data).await;
    for _ in 0..3 {
        let node = RedisNode::open(HOST, a.port, &access).await.expect("open");
        node.role().await.expect("ROLE");
    }
    assert_eq!(connections_received(&mut data).await, before + 1);
    assert_eq!(pool::kept_for(&endpoint), 1);

    // The server closes every client but the sender (the data connection).
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut data)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);
    until(
        Duration::from_secs(5),
        "the kept connection seen closed",
        || async { (pool::kept_for(&endpoint) == 0).then_some(()) },
    )
    .await;
    let node = RedisNode::open(HOST, a.port, &access).await.expect("open");
    node.role().await.expect("served through a new connection");
    drop(node);
    assert_eq!(connections_received(&mut data).await, before + 2);

    // A command that times out spoils the connection: it is closed, not kept.
    let node = RedisNode::open(HOST, a.port, &access).await.expect("open");
    a.signal("-STOP");
    let stalled = node.role().await;
    a.signal("-CONT");
    assert!(
        matches!(stalled, Err(RedisError::CommandTimeout { .. })),
        "{stalled:?}"
    );
    drop(node);
    assert_eq!(pool::kept_for(&endpoint), 0);
}

/// Handover limits with a short `wait`, for a give-up within a test.
fn limits_with_wait(wait: Duration) -> redis_fsm::HandoverLimits {
    redis_fsm::HandoverLimits {
        stream_wait: wait,
        ..limits(wait, Duration::from_millis(500))
    }
}

/// A snapshot read from one server as a replica reads it (the backup's reader) seeds an empty server through the
/// replication protocol (the operator serving it as a primary would), and the seeded server keeps the data once
/// promoted.
#[tokio::test]
async fn a_snapshot_read_from_one_server_seeds_another_through_replication() {
    use redis_operator::backup::{rdb::Snapshot, serve::serve_once};
    let (a, b) = (Server::start(), Server::start());
    for n in 0..500 {
        set(&a, &format!("s{n}"), &n.to_string()).await;
    }
    let stream = tokio::net::TcpStream::connect((HOST, a.port))
        .await
        .unwrap();
    let mut snapshot = Snapshot::start(stream, None, Duration::from_secs(10))
        .await
        .expect("PSYNC");
    let mut rdb = Vec::new();
    while let Some(chunk) = snapshot.next_chunk().await.unwrap() {
        rdb.extend_from_slice(&chunk);
    }
    assert!(rdb.starts_with(b"REDIS"));

    let listener = tokio::net::TcpListener::bind((HOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let nb = b.node().await;
    nb.replicaof(HOST, port)
        .await
        .expect("replicaof the operator");
    let _held = serve_once(
        &listener,
        &rdb,
        &snapshot.resync.replid,
        snapshot.resync.offset,
        Duration::from_secs(10),
    )
    .await
    .expect("served");
    until(Duration::from_secs(10), "b loaded the snapshot", || async {
        let state = nb.observe().await.ok()?;
        (state.keys == 500 && !state.loading).then_some(())
    })
    .await;
    nb.replicaof_no_one().await.expect("promoted");
    let mut data = b.data().await;
    let value: String = redis::cmd("GET")
        .arg("s499")
        .query_async(&mut data)
        .await
        .unwrap();
    assert_eq!(value, "499");
    let promoted = nb.observe().await.expect("observe");
    assert_eq!(promoted.role, ServerRole::Master);
    assert_eq!(promoted.keys, 500);
}

/// The archive's segments under `prefix` (timeline, the stream bytes of its segments in order), from `bucket`.
async fn archived_streams(
    bucket: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> Vec<(redis_operator::backup::archive::Timeline, Vec<u8>)> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use redis_operator::backup::archive;
    use tokio::io::AsyncReadExt;
    let keys: Vec<String> = bucket
        .list(Some(&object_store::path::Path::from(format!(
            "{prefix}/archive"
        ))))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (timeline, listed) in archive::parse_listing(prefix, keys.iter().map(String::as_str)) {
        let mut stream = Vec::new();
        for segment in &listed.segments {
            let key = timeline.segment_key(prefix, segment);
            let compressed = bucket
                .get(&object_store::path::Path::from(key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let mut data = Vec::new();
            async_compression::tokio::bufread::ZstdDecoder::new(&compressed[..])
                .read_to_end(&mut data)
                .await
                .unwrap();
            stream.extend(archive::decode_frames(&data).unwrap().0);
        }
        out.push((timeline, stream));
    }
    out
}

/// The archiver follows a replica's stream and stores every write; when the replica is promoted (the old
/// primary following it), the archive goes on in the same timeline, without a gap, even when a server that
/// does not hold the archived history is asked first.
#[tokio::test]
async fn the_archiver_stores_every_write_and_continues_across_a_promotion() {
    use redis_operator::backup::archiver::{Archivers, Job};
    let (a, b) = (Server::start(), Server::start());
    let nb = b.node().await;
    nb.replicaof(HOST, a.port).await.unwrap();
    until_listed(&a.node().await, b.port).await;
    // A replica refuses to be synchronised from (NOMASTERLINK) until its own link is up; Valkey lists a replica
    // on its primary before that.
    until(Duration::from_secs(10), "b in sync", || {
        in_sync_replica(&nb)
    })
    .await;
    let bucket: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let archivers = Archivers::default();
    let job = |sources: Vec<Endpoint>| Job {
        sources,
        access: redis_operator::redis::Access {
            timeouts: Timeouts::default(),
            login: None,
            tls: Default::default(),
        },
        bucket: bucket.clone(),
        prefix: "ns/c".into(),
        segment: Duration::from_millis(500),
        new_base_after: None,
        retention: None,
        caught_up: Box::new(|_| {}),
        leading: Box::new(|| true),
    };
    archivers.start("uid", "s".into(), job(vec![at(b.port)]));
    // Writes made once the base is stored are in the stream (earlier ones are in the base).
    until(
        Duration::from_secs(20),
        "the archive has a base",
        || async { archivers.progress("uid", "s")?.timeline.map(|_| ()) },
    )
    .await;
    for n in 0..200 {
        set(&a, &format!("before{n}"), "x").await;
    }
    let holds = |needle: &'static [u8]| {
        let bucket = bucket.clone();
        async move {
            let streams = archived_streams(&bucket, "ns/c").await;
            streams
                .iter()
                .any(|(_, s)| s.windows(needle.len()).any(|w| w == needle))
                .then_some(streams)
        }
    };
    until(
        Duration::from_secs(20),
        "the archive holds before199",
        || holds(b"before199"),
    )
    .await;
    // b is promoted (which closes its replicas' links) and a follows it; a new server c replicates from b too:
    // it holds b's data but not the archived history, so the archiver, asking c first, continues from b.
    nb.replicaof_no_one().await.unwrap();
    a.node().await.replicaof(HOST, b.port).await.unwrap();
    let c = Server::start();
    c.node().await.replicaof(HOST, b.port).await.unwrap();
    until_listed(&nb, c.port).await;
    for n in 0..200 {
        set(&b, &format!("after{n}"), "y").await;
    }
    let streams = until(
        Duration::from_secs(30),
        "the archive holds after199",
        || {
            // An archiver that ended is started again as the reconcile does, from what the bucket holds.
            if archivers.progress("uid", "s").is_none() {
                archivers.start("uid", "s".into(), job(vec![at(c.port), at(b.port)]));
            }
            holds(b"after199")
        },
    )
    .await;
    assert_eq!(streams.len(), 1, "the archive forked");
    let stream = &streams[0].1;
    for n in [0, 199] {
        for key in [format!("before{n}"), format!("after{n}")] {
            assert!(
                stream.windows(key.len()).any(|w| w == key.as_bytes()),
                "{key} not archived"
            );
        }
    }
}

/// With a new base due every second and a retention of three, the archiver starts new timelines while writes
/// go on (each continuing from its own full synchronisation) and deletes the old ones when it starts the next,
/// never the newest.
#[tokio::test]
async fn the_archiver_starts_new_bases_and_drops_timelines_past_retention() {
    use redis_operator::backup::archiver::{Archivers, Job};
    let a = Server::start();
    let bucket: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let archivers = Archivers::default();
    archivers.start(
        "uid",
        "s".into(),
        Job {
            sources: vec![at(a.port)],
            access: redis_operator::redis::Access {
                timeouts: Timeouts::default(),
                login: None,
                tls: Default::default(),
            },
            bucket: bucket.clone(),
            prefix: "ns/c".into(),
            segment: Duration::from_millis(200),
            new_base_after: Some(Duration::from_secs(1)),
            retention: Some(Duration::from_secs(3)),
            caught_up: Box::new(|_| {}),
            leading: Box::new(|| true),
        },
    );
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(9) {
        set(&a, &format!("k{n}"), "v").await;
        n += 1;
        for (timeline, _) in archived_streams(&bucket, "ns/c").await {
            seen.insert(timeline);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now: std::collections::BTreeSet<_> = archived_streams(&bucket, "ns/c")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    eprintln!("timelines seen {}, stored now {}", seen.len(), now.len());
    assert!(seen.len() >= 4, "new bases were not started: {seen:?}");
    assert!(!now.is_empty(), "the newest timeline was deleted");
    let oldest = seen.iter().min_by_key(|t| t.offset).unwrap();
    assert!(
        !now.contains(oldest),
        "the oldest timeline outlived its retention"
    );
    assert!(archivers
        .progress("uid", "s")
        .is_some_and(|p| p.error.is_none()));
}
