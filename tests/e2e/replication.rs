//! Replication: one primary, live replicas, role labels and Services, operator-driven failover without
//! losing a write confirmed with `WAIT`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use redis_operator::api::RedisInstanceStatus;
use redis_operator::redis::{RedisNode, RoleReply, Timeouts};
use tokio::io::AsyncWriteExt;

use crate::harness::*;

const ROLE: &str = "redis-operator.github.io/role";

/// Whether the status shows one primary and `replicas - 1` in-sync replicas, all labelled.
pub(crate) fn converged(status: &RedisInstanceStatus, replicas: usize) -> bool {
    let labelled = |label: &str| status.pods.iter().filter(|p| p.label == label).count();
    status.current_primary.is_some()
        && status.target_primary == status.current_primary
        && status.pods.len() == replicas
        && labelled("primary") == 1
        && labelled("replica") == replicas - 1
}

/// Waits until the status shows one primary with in-sync replicas and the pods carry those labels (they are
/// patched right after the status write).
pub(crate) async fn wait_converged(
    env: &TestEnv,
    name: &str,
    replicas: usize,
) -> RedisInstanceStatus {
    let status = env
        .wait_status(name, "one primary with in-sync replicas", move |s| {
            converged(s, replicas)
        })
        .await
        .status
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pods = env.pods_of(name).await;
        let carried: Vec<(String, String)> = pods
            .iter()
            .map(|p| {
                (
                    p.name_any(),
                    p.labels().get(ROLE).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let recorded: Vec<(String, String)> = status
            .pods
            .iter()
            .map(|p| (p.name.clone(), p.label.clone()))
            .collect();
        if carried == recorded {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "pod labels {carried:?} never matched the status {recorded:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pods carrying `role`, by name.
pub(crate) async fn labelled(env: &TestEnv, name: &str, role: &str) -> Vec<Pod> {
    env.pods_of(name)
        .await
        .into_iter()
        .filter(|p| p.labels().get(ROLE).map(String::as_str) == Some(role))
        .collect()
}

async fn role_of(pod: &Pod) -> RoleReply {
    let ip = pod_ip(pod);
    let password = password_for(&ip).await;
    let node = RedisNode::connect(&ip, 6379, password.as_deref(), Timeouts::default())
        .await
        .expect("connect");
    node.role().await.expect("ROLE")
}

/// Polls `GET key` on `ip` until it returns `value` (replication is asynchronous).
async fn wait_key(ip: &str, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = redis_command(ip, &["GET", key]).await;
        if reply.contains(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never reached {ip}: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_are_one_primary_and_two_live_replicas() {
    let env = TestEnv::new("repl").await;
    env.create("cache", spec(3)).await;
    let running = env.wait_running("cache").await.status.unwrap();
    // Running is only written once replication is in place, in the same status write.
    assert!(
        converged(&running, 3),
        "Running before replication: {running:#?}"
    );
    let status = wait_converged(&env, "cache", 3).await;
    let primary_name = status.current_primary.clone().unwrap();
    for (type_, reason) in [
        ("PrimaryAvailable", "PrimaryConfirmed"),
        ("ReplicationHealthy", "ReplicasInSync"),
    ] {
        let condition = status.conditions.iter().find(|c| c.type_ == type_);
        assert!(
            condition.is_some_and(|c| c.status == "True" && c.reason == reason),
            "{type_}: {condition:?}"
        );
    }

    let primaries = labelled(&env, "cache", "primary").await;
    assert_eq!(
        primaries.len(),
        1,
        "exactly one pod carries the primary label"
    );
    let primary = &primaries[0];
    assert_eq!(primary.name_any(), primary_name);
    let replicas = labelled(&env, "cache", "replica").await;
    assert_eq!(replicas.len(), 2);

    match role_of(primary).await {
        RoleReply::Master {
            replicas: linked, ..
        } => {
            assert_eq!(linked.len(), 2, "two connected replicas: {linked:?}")
        }
        other => panic!("{primary_name} is not a master: {other:?}"),
    }
    for replica in &replicas {
        match role_of(replica).await {
            RoleReply::Replica { host, state, .. } => {
                assert_eq!(host, pod_ip(primary));
                assert_eq!(state, "connected");
            }
            other => panic!("{} is not a replica: {other:?}", replica.name_any()),
        }
    }

    assert_eq!(
        redis_command(&pod_ip(primary), &["SET", "greeting", "hello"]).await,
        "+OK\r\n"
    );
    for replica in &replicas {
        wait_key(&pod_ip(replica), "greeting", "hello").await;
        let refused = redis_command(&pod_ip(replica), &["SET", "x", "1"]).await;
        assert!(refused.starts_with("-READONLY"), "{refused:?}");
    }

    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    let selector = |svc: Service| svc.spec.unwrap().selector.unwrap();
    let rw = selector(services.get("cache").await.unwrap());
    assert_eq!(rw.get(ROLE).map(String::as_str), Some("primary"));
    let ro = selector(services.get("cache-replicas").await.unwrap());
    assert_eq!(ro.get(ROLE).map(String::as_str), Some("replica"));
    let headless = selector(services.get("cache-headless").await.unwrap());
    assert!(!headless.contains_key(ROLE));
}

/// What became of one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    /// Written, and a replica acknowledged it.
    Confirmed,
    /// Written (`SET` answered `+OK`) but no replica acknowledged it within `WAIT`'s second.
    Unacknowledged,
    /// Refused: the login, or the `SET` (read-only, paused, ...).
    Refused,
}

/// One application connection to a primary: logged in once, then `SET key value` and `WAIT 1 1000` per write,
/// as a client library's pooled connection does. (A new connection per write left ~28,000 sockets in
/// TIME_WAIT towards the primary within a minute, and the operator, on the same host in these tests, got
/// `Cannot assign requested address` for that address and failed it over as unreachable.)
struct AppConnection {
    ip: String,
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl AppConnection {
    /// Connects to `ip` and authenticates with `password` when given; `Ok(None)` when the login is refused.
    async fn open(ip: &str, password: Option<&str>) -> std::io::Result<Option<AppConnection>> {
        let stream = within_3s(tokio::net::TcpStream::connect((ip, 6379))).await?;
        let mut connection = AppConnection {
            ip: ip.to_string(),
            stream: tokio::io::BufReader::new(stream),
        };
        if let Some(password) = password {
            let replies = connection.exchange(&[&["AUTH", password]]).await?;
            if replies[0] != "+OK" {
                return Ok(None);
            }
        }
        Ok(Some(connection))
    }

    /// Sends `commands` in one round trip and reads one single-line reply for each.
    async fn exchange(&mut self, commands: &[&[&str]]) -> std::io::Result<Vec<String>> {
        use tokio::io::AsyncBufReadExt;
        let request: String = commands.iter().map(|c| resp(c)).collect();
        let stream = &mut self.stream;
        within_3s(async move {
            stream.get_mut().write_all(request.as_bytes()).await?;
            let mut replies = Vec::new();
            for _ in commands {
                let mut line = String::new();
                if stream.read_line(&mut line).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                replies.push(line.trim_end().to_string());
            }
            Ok(replies)
        })
        .await
    }

    /// Writes `SET key value` then `WAIT 1 1000`.
    async fn write(&mut self, key: &str, value: &str) -> std::io::Result<Write> {
        let replies = self
            .exchange(&[&["SET", key, value], &["WAIT", "1", "1000"]])
            .await?;
        Ok(match (replies[0].as_str(), replies[1].as_str()) {
            ("+OK", acks) if acks.starts_with(':') && acks != ":0" => Write::Confirmed,
            ("+OK", _) => Write::Unacknowledged,
            _ => Write::Refused,
        })
    }
}

/// `io` with a deadline of 3 s (a timeout is an I/O error: the connection is dropped).
async fn within_3s<T>(
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(Duration::from_secs(3), io)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}

/// A client writing numbered keys to whatever pod carries the primary label, re-resolving on errors.
pub(crate) struct Writer {
    confirmed: Arc<Mutex<Vec<u64>>>,
    /// Keys whose write was refused or whose connection failed (not those merely unacknowledged).
    failed: Arc<Mutex<Vec<u64>>>,
    longest_gap: Arc<Mutex<Duration>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// A writer on one connection, opened again only after a failed or unconfirmed write.
    pub(crate) fn start(pods: Api<Pod>) -> Writer {
        Writer::spawn(pods, false)
    }

    /// A writer that opens a new connection, and so logs in again, for every write (at most ~100 a second).
    pub(crate) fn start_logging_in_per_write(pods: Api<Pod>) -> Writer {
        Writer::spawn(pods, true)
    }

    fn spawn(pods: Api<Pod>, new_login_per_write: bool) -> Writer {
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let longest_gap = Arc::new(Mutex::new(Duration::ZERO));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, f, g, s) = (
            confirmed.clone(),
            failed.clone(),
            longest_gap.clone(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let mut next = 0u64;
            let mut last_ok = Instant::now();
            let mut target: Option<String> = None;
            // The instance's password, looked up from the primary found, again after a failed write (it may
            // have been turned on).
            let mut password: Option<Option<String>> = None;
            let mut connection: Option<AppConnection> = None;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if target.is_none() {
                    let params = ListParams::default().labels(&format!("{ROLE}=primary"));
                    target = pods.list(&params).await.ok().and_then(|l| {
                        l.items
                            .first()
                            .and_then(|p| p.status.as_ref()?.pod_ip.clone())
                    });
                }
                let Some(ip) = target.clone() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if password.is_none() {
                    password = Some(password_for(&ip).await);
                }
                let secret = password.clone().flatten();
                if connection.as_ref().is_none_or(|c| c.ip != ip) || new_login_per_write {
                    if new_login_per_write {
                        // A new connection per write, paced so that the sockets it leaves in TIME_WAIT stay
                        // far below the host's ephemeral ports.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    connection = AppConnection::open(&ip, secret.as_deref())
                        .await
                        .ok()
                        .flatten();
                }
                let outcome = match connection.as_mut() {
                    Some(open) => open.write(&format!("k{next}"), &next.to_string()).await,
                    None => Err(std::io::Error::other("no connection")),
                };
                match outcome {
                    Ok(Write::Confirmed) => {
                        let gap = last_ok.elapsed();
                        let mut longest = g.lock().unwrap();
                        *longest = (*longest).max(gap);
                        last_ok = Instant::now();
                        c.lock().unwrap().push(next);
                        next += 1;
                    }
                    // Written but not confirmed, or refused: not counted; try the next key on a fresh look-up.
                    outcome => {
                        if outcome.is_err() || outcome.is_ok_and(|w| w == Write::Refused) {
                            f.lock().unwrap().push(next);
                        }
                        next += 1;
                        target = None;
                        password = None;
                        connection = None;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Writer {
            confirmed,
            failed,
            longest_gap,
            stop,
            task,
        }
    }

    /// Keys whose write was refused or whose connection failed so far.
    pub(crate) fn failed(&self) -> Vec<u64> {
        self.failed.lock().unwrap().clone()
    }

    fn confirmed_count(&self) -> usize {
        self.confirmed.lock().unwrap().len()
    }

    pub(crate) async fn finish(self) -> (Vec<u64>, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap();
        let confirmed = self.confirmed.lock().unwrap().clone();
        let gap = *self.longest_gap.lock().unwrap();
        (confirmed, gap)
    }
}

/// Waits until the writer has confirmed `more` writes beyond what it had.
pub(crate) async fn wait_writes(writer: &Writer, more: usize) {
    let target = writer.confirmed_count() + more;
    let deadline = Instant::now() + Duration::from_secs(90);
    while writer.confirmed_count() < target {
        assert!(
            Instant::now() < deadline,
            "the writer confirmed no new writes in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the writer, reports what it saw for `scenario`, and checks that every write it saw confirmed is on
/// the final primary.
pub(crate) async fn finish_and_check(env: &TestEnv, writer: Writer, scenario: &str) -> Duration {
    let (confirmed, gap) = writer.finish().await;
    eprintln!(
        "{scenario}: {} confirmed writes, longest write gap {gap:?}",
        confirmed.len()
    );
    assert_no_confirmed_write_lost(env, &confirmed).await;
    gap
}

/// Every confirmed key is on the final primary.
async fn assert_no_confirmed_write_lost(env: &TestEnv, confirmed: &[u64]) {
    assert_confirmed_keys_on_the_primary(env, "k", confirmed).await;
}

/// Every confirmed key `<prefix><n>` (value `n`) is on the final primary. When the roles move while it reads
/// (a failover after the check began: the operator disconnects the clients of a demoted primary), it reads
/// again on the primary that follows, at most three times; a key missing on a primary it read through is a
/// failure at once.
pub(crate) async fn assert_confirmed_keys_on_the_primary(
    env: &TestEnv,
    prefix: &str,
    confirmed: &[u64],
) {
    for attempt in 1..=3 {
        // A primary label: after a failover the new primary is labelled once its promotion is recorded.
        let deadline = Instant::now() + Duration::from_secs(60);
        let primary = loop {
            if let Some(primary) = labelled(env, "cache", "primary").await.into_iter().next() {
                break primary;
            }
            assert!(
                Instant::now() < deadline,
                "no pod labelled primary for 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match missing_on(&primary, prefix, confirmed).await {
            Ok(missing) => {
                assert!(
                    missing.is_empty(),
                    "{} of {} confirmed writes lost on {}: {missing:?}",
                    missing.len(),
                    confirmed.len(),
                    primary.name_any()
                );
                return;
            }
            Err(error) if attempt < 3 => eprintln!(
                "reading the confirmed keys on {} failed ({error}): the roles moved; reading on the next primary",
                primary.name_any()
            ),
            Err(error) => panic!("reading the confirmed keys on {}: {error}", primary.name_any()),
        }
    }
}

/// The confirmed keys `primary` does not hold, or the error that broke the reading.
async fn missing_on(
    primary: &Pod,
    prefix: &str,
    confirmed: &[u64],
) -> redis::RedisResult<BTreeSet<u64>> {
    let ip = pod_ip(primary);
    // One connection and one MGET per thousand keys (a writer confirms thousands).
    let url = match password_for(&ip).await {
        Some(password) => format!("redis://:{password}@{ip}:6379"),
        None => format!("redis://{ip}:6379"),
    };
    let mut connection = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut missing = BTreeSet::new();
    for chunk in confirmed.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|k| format!("{prefix}{k}")).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await?;
        for (key, value) in chunk.iter().zip(values) {
            if value.as_deref() != Some(key.to_string().as_str()) {
                missing.insert(*key);
            }
        }
    }
    Ok(missing)
}

pub(crate) fn process_id(pod: &Pod) -> i32 {
    container_pid(pod, "redis")
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c[0].restart_count)
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_after_a_killed_primary_and_a_deleted_primary_loses_no_confirmed_write() {
    let env = TestEnv::new("failover").await;
    let mut s = spec(3);
    s.replication.failover_delay_seconds = 3;
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let first = wait_converged(&env, "cache", 3).await;
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 20).await;

    // kill -9 the primary's server: the container restarts empty (no persistence) and parked.
    let old = first.current_primary.clone().unwrap();
    let pod = env.pods().get(&old).await.unwrap();
    let restarts_before = restarts(&pod);
    signal_process(process_id(&pod), "-9");
    env.wait_status("cache", "without an available primary", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "PrimaryAvailable" && c.status == "False")
    })
    .await;
    let second = wait_failed_over(&env, &old, "failed over to another pod")
        .await
        .status
        .unwrap();
    // Labels follow the status write.
    wait_converged(&env, "cache", 3).await;
    wait_writes(&writer, 20).await;
    // The kubelet reports the restart in the pod's status on its own pace (on 1.34 it came after the operator
    // had already seen the new server and converged): wait for it.
    let deadline = Instant::now() + WAIT;
    while restarts(&env.pods().get(&old).await.unwrap()) <= restarts_before {
        assert!(
            Instant::now() < deadline,
            "the old primary's container restarted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let replica_labels = labelled(&env, "cache", "replica").await;
    assert!(
        replica_labels.iter().any(|p| p.name_any() == old),
        "the old primary rejoined as a replica"
    );
    assert_eq!(labelled(&env, "cache", "primary").await.len(), 1);

    // Delete the primary pod: failover, and the re-created pod joins as a replica.
    let old = second.current_primary.clone().unwrap();
    env.pods()
        .delete(&old, &DeleteParams::default())
        .await
        .unwrap();
    wait_failed_over(&env, &old, "failed over after the pod deletion").await;
    wait_converged(&env, "cache", 3).await;
    wait_writes(&writer, 20).await;
    assert!(
        labelled(&env, "cache", "replica")
            .await
            .iter()
            .any(|p| p.name_any() == old),
        "the re-created pod joined as a replica: {:#?}",
        env.instances().get("cache").await.unwrap().status
    );

    finish_and_check(&env, writer, "failover").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_up_adds_replicas_and_scaling_down_keeps_the_primary() {
    let env = TestEnv::new("replscale").await;
    env.create("cache", spec(1)).await;
    env.wait_running("cache").await;
    let alone = wait_converged(&env, "cache", 1).await;
    let primary = alone.current_primary.clone().unwrap();
    let ip = pod_ip(&env.pods().get(&primary).await.unwrap());
    assert_eq!(redis_command(&ip, &["SET", "kept", "yes"]).await, "+OK\r\n");

    env.patch_spec("cache", serde_json::json!({"replicas": 3}))
        .await;
    env.wait_running("cache").await;
    let grown = wait_converged(&env, "cache", 3).await;
    assert_eq!(grown.current_primary.as_deref(), Some(primary.as_str()));
    for replica in labelled(&env, "cache", "replica").await {
        wait_key(&pod_ip(&replica), "kept", "yes").await;
    }

    env.patch_spec("cache", serde_json::json!({"replicas": 1}))
        .await;
    env.wait_running("cache").await;
    let shrunk = wait_converged(&env, "cache", 1).await;
    assert_eq!(shrunk.current_primary.as_deref(), Some(primary.as_str()));
    let ip = pod_ip(&env.pods().get(&primary).await.unwrap());
    assert!(redis_command(&ip, &["GET", "kept"]).await.contains("yes"));
}

/// Creates `cache` from `s` with three pods and a failover delay of 2 s, waits until it runs with one primary
/// and two in-sync replicas, and starts a writer that has confirmed 20 writes.
pub(crate) async fn three_converged_with_a_writer(
    env: &TestEnv,
    mut s: redis_operator::api::RedisInstanceSpec,
) -> (RedisInstanceStatus, Writer) {
    s.replicas = 3;
    s.replication.failover_delay_seconds = 2;
    env.create("cache", s).await;
    env.wait_running("cache").await;
    let first = wait_converged(env, "cache", 3).await;
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 20).await;
    (first, writer)
}

/// Waits until `cache` has another primary than `old`, with two in-sync replicas.
pub(crate) async fn wait_failed_over(
    env: &TestEnv,
    old: &str,
    what: &str,
) -> redis_operator::api::RedisInstance {
    let old = old.to_string();
    env.wait_status("cache", what, move |s| {
        s.current_primary.as_ref().is_some_and(|p| *p != old) && converged(s, 3)
    })
    .await
}

/// The primary `cache`'s status records.
async fn current_primary(env: &TestEnv) -> String {
    let status = env.instances().get("cache").await.unwrap().status.unwrap();
    status.current_primary.expect("a recorded primary")
}

/// Sends a signal (`-9`, `-STOP`, ...) to a host process.
fn signal_process(pid: i32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// Kills the current primary's server with SIGKILL (its container restarts empty and parked).
pub(crate) async fn kill_primary_server(env: &TestEnv) -> String {
    let primary = current_primary(env).await;
    let pod = env.pods().get(&primary).await.unwrap();
    signal_process(process_id(&pod), "-9");
    primary
}

/// Every server answers `ROLE`; exactly one is a master, and it is the pod carrying the primary label.
pub(crate) async fn assert_one_master(env: &TestEnv) {
    let primaries = labelled(env, "cache", "primary").await;
    assert_eq!(primaries.len(), 1, "one pod labelled primary");
    for pod in env.pods_of("cache").await {
        let is_master = matches!(role_of(&pod).await, RoleReply::Master { .. });
        assert_eq!(
            is_master,
            pod.name_any() == primaries[0].name_any(),
            "{} master: {is_master}",
            pod.name_any()
        );
    }
}

/// The operator is killed (SIGKILL) at three points of a failover — after the primary failed but before the
/// failover started, once the failover started (`targetPrimary: Pending` persisted), and once a target was
/// recorded but maybe not promoted — and a new operator process resumes from status each time: exactly one
/// primary, and no confirmed write lost.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_killed_mid_failover_resumes_to_exactly_one_primary() {
    let mut env = TestEnv::new("killfo").await;
    let mut s = spec(3);
    s.replication.failover_delay_seconds = 2;
    env.create("cache", s).await;
    env.wait_running("cache").await;
    wait_converged(&env, "cache", 3).await;
    let writer = Writer::start(env.pods());
    wait_writes(&writer, 20).await;

    type Point = fn(&RedisInstanceStatus, &str) -> bool;
    let points: [(&str, Point); 3] = [
        ("the primary failing, no failover yet", |s, old| {
            s.current_primary.as_deref() == Some(old) && s.primary_failing_since.is_some()
        }),
        ("the failover started", |s, _| {
            s.target_primary.as_deref() == Some("Pending")
        }),
        ("a target recorded", |s, _| {
            s.target_primary
                .as_ref()
                .is_some_and(|t| t != "Pending" && Some(t) != s.current_primary.as_ref())
        }),
    ];
    for (index, (what, point)) in points.into_iter().enumerate() {
        // "Failing, no failover yet" needs a primary that stays unreachable: a killed server that comes back
        // at once (the kubelet restarts a container's first exit without delay) is failed over at once, as a
        // restarted server. The first point freezes the server instead, and thaws it once failed over.
        let (old, frozen) = if index == 0 {
            let old = current_primary(&env).await;
            let pid = process_id(&env.pods().get(&old).await.unwrap());
            signal_process(pid, "-STOP");
            (old, Some(pid))
        } else {
            (kill_primary_server(&env).await, None)
        };
        env.wait_status("cache", what, |s| point(s, &old)).await;
        env.operator.kill();
        // The servers keep running without an operator; a new process resumes from status.
        env.operator = Operator::start(env.info, &env.ns, &[]);
        if let Some(pid) = frozen {
            let moved = old.clone();
            env.wait_status("cache", "another primary recorded", move |s| {
                s.current_primary.as_ref().is_some_and(|p| *p != moved)
            })
            .await;
            signal_process(pid, "-CONT");
        }
        wait_failed_over(&env, &old, "failed over to another pod").await;
        wait_converged(&env, "cache", 3).await;
        assert_one_master(&env).await;
        wait_writes(&writer, 20).await;
    }
    finish_and_check(&env, writer, "operator killed mid-failover").await;
}

/// Scaling down past the primary's ordinal switches over first (the handover: writes paused until the target
/// caught up), then removes the old primary's pod: the instance keeps one primary and loses no confirmed write.
#[tokio::test(flavor = "multi_thread")]
async fn a_scale_down_that_removes_the_primary_switches_over_first() {
    let env = TestEnv::new("switch").await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    // Move the primary off ordinal 0 with a failover (the most advanced replica, lowest ordinal on a tie).
    let old = kill_primary_server(&env).await;
    assert_eq!(Some(old.as_str()), first.current_primary.as_deref());
    let moved = wait_failed_over(&env, &old, "failed over")
        .await
        .status
        .unwrap();
    wait_converged(&env, "cache", 3).await;
    let primary = moved.current_primary.unwrap();
    wait_writes(&writer, 20).await;

    // Keep only the lowest ordinals that exclude the primary.
    let ordinal: i32 = primary.rsplit('-').next().unwrap().parse().unwrap();
    env.patch_spec("cache", serde_json::json!({"replicas": ordinal}))
        .await;
    let after = env
        .wait_status("cache", "switched over and scaled down", move |s| {
            s.status == redis_fsm::Phase::Running
                && s.current_primary.as_deref() != Some(primary.as_str())
                && converged(s, usize::try_from(ordinal).unwrap())
        })
        .await
        .status
        .unwrap();
    let new_primary = after.current_primary.clone().unwrap();
    assert!(
        new_primary
            .rsplit('-')
            .next()
            .unwrap()
            .parse::<i32>()
            .unwrap()
            < ordinal,
        "{new_primary} survives the scale-down"
    );
    wait_converged(&env, "cache", usize::try_from(ordinal).unwrap()).await;
    // With one pod left no write can be confirmed by a replica any more: every write the writer saw
    // confirmed was confirmed before or during the switchover, and must be on the new primary.
    finish_and_check(&env, writer, "switchover").await;
    assert_eq!(
        env.pods_of("cache").await.len(),
        usize::try_from(ordinal).unwrap()
    );
}

/// Waits until no pod of `cache` is left (the StatefulSet of a deleted instance is collected with its pods).
async fn wait_no_pods(env: &TestEnv) {
    let deadline = Instant::now() + WAIT;
    while !env.pods_of("cache").await.is_empty() {
        assert!(Instant::now() < deadline, "pods of cache still there");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The pod whose data claim carries the highest primary mark.
async fn marked_primary(env: &TestEnv) -> Option<String> {
    let claims = env
        .claims()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    claims
        .iter()
        .filter_map(|claim| {
            let epoch: u64 = claim
                .annotations()
                .get("redis-operator.github.io/primary-epoch")?
                .parse()
                .ok()?;
            Some((epoch, claim.name_any().strip_prefix("data-")?.to_string()))
        })
        .max()
        .map(|(_, pod)| pod)
}

/// An instance deleted and re-created over its retained claims (every pod holds data, no primary recorded)
/// starts from the pod that was its primary, whose claim carries the operator's mark, not from the lowest
/// ordinal, and keeps every confirmed write. Without the marks it stops and says how to choose; the annotation
/// its message names resolves it.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_re_created_over_its_claims_starts_from_its_last_primary() {
    let env = TestEnv::with_operator_args("recreate", &["--resync-seconds", "1"]).await;
    let mut s = spec(3);
    s.storage = crate::storage("1Gi", None);
    let (first, writer) = three_converged_with_a_writer(&env, s.clone()).await;
    // Move the primary off the lowest ordinal: a failover.
    let old = kill_primary_server(&env).await;
    assert_eq!(Some(old.as_str()), first.current_primary.as_deref());
    let primary = wait_failed_over(&env, &old, "failed over")
        .await
        .status
        .unwrap()
        .current_primary
        .unwrap();
    wait_converged(&env, "cache", 3).await;
    wait_writes(&writer, 20).await;
    let (confirmed, _) = writer.finish().await;
    let deadline = Instant::now() + WAIT;
    while marked_primary(&env).await.as_deref() != Some(primary.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the claim of {primary} never marked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    env.delete_and_wait_gone("cache").await;
    wait_no_pods(&env).await;
    env.create("cache", s.clone()).await;
    let status = wait_converged(&env, "cache", 3).await;
    assert_eq!(status.current_primary.as_deref(), Some(primary.as_str()));
    assert_confirmed_keys_on_the_primary(&env, "k", &confirmed).await;
    assert_one_master(&env).await;
    // The mark is written once per primary change: none while converged (once Running and Ready: the pods'
    // readiness can come after the roles converge).
    env.wait_running("cache").await;
    crate::assert_idle_resyncs_write_nothing(&env).await;

    // Claims without the marks (an instance of an older operator): it stops, saying how to choose.
    env.delete_and_wait_gone("cache").await;
    wait_no_pods(&env).await;
    for claim in env
        .claims()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        env.claims()
            .patch(
                &claim.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({
                    "metadata": {"annotations": {"redis-operator.github.io/primary-epoch": null}}
                })),
            )
            .await
            .unwrap();
    }
    env.create("cache", s).await;
    let stopped = env
        .wait_status("cache", "stopped for a person to choose", |s| {
            s.reason == "DivergentHistories"
        })
        .await
        .status
        .unwrap();
    assert_eq!(stopped.status, redis_fsm::Phase::Failed);
    let message = &stopped.last_condition_message;
    assert!(
        message.contains("redis-operator.github.io/bootstrap-primary=POD"),
        "{message}"
    );
    for pod in env.pods_of("cache").await {
        assert!(
            !matches!(role_of(&pod).await, RoleReply::Master { .. }),
            "{} was promoted while stopped",
            pod.name_any()
        );
    }
    env.instances()
        .patch(
            "cache",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"redis-operator.github.io/bootstrap-primary": primary}}
            })),
        )
        .await
        .unwrap();
    let status = wait_converged(&env, "cache", 3).await;
    assert_eq!(status.current_primary.as_deref(), Some(primary.as_str()));
    assert_confirmed_keys_on_the_primary(&env, "k", &confirmed).await;
}
