//! Tenant safety (issue 19, item 4): a data user cannot force a failover into split brain. A primary busy in an
//! endless script is alive: the operator kills the script after the failover delay and keeps the primary; one
//! whose script wrote (unkillable) is shut down before a replica is promoted, so it never acknowledges a write
//! after the new primary took writes. A primary whose connection slots are all taken (`maxclients`) is not failed
//! over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::replication::{
    assert_confirmed_keys_on_the_primary, assert_one_master, finish_and_check,
    three_converged_with_a_writer, wait_converged, wait_failed_over, wait_writes,
};

/// One exchange with `ip:6379` on a fresh connection: `AUTH` (when `password`) then `args`; the last reply line,
/// or `None` when the server could not be reached or did not answer within 3 s.
async fn try_command(ip: &str, password: Option<&str>, args: &[&str]) -> Option<String> {
    let mut request = String::new();
    if let Some(password) = password {
        request.push_str(&resp(&["AUTH", password]));
    }
    request.push_str(&resp(args));
    let lines = 1 + usize::from(password.is_some());
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((ip, 6379)).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        while reply.iter().filter(|b| **b == b'\n').count() < lines {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    };
    let reply = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .ok()??;
    reply
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .last()
        .map(String::from)
}

/// A client that keeps writing `old<n>` to one fixed address (a client pinned to the old primary, or one that
/// resolved its address before the failover), recording every write the server there acknowledged (`+OK`).
struct PinnedWriter {
    acknowledged: Arc<Mutex<Vec<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PinnedWriter {
    fn start(ip: String, password: Option<String>) -> PinnedWriter {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (acknowledged.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("old{n}");
                let value = n.to_string();
                let reply = try_command(&ip, password.as_deref(), &["SET", &key, &value]).await;
                if reply.as_deref() == Some("+OK") {
                    a.lock().unwrap().push(n);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        PinnedWriter {
            acknowledged,
            stop,
            task,
        }
    }

    async fn finish(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acknowledged = self.acknowledged.clone();
        self.task.await.unwrap();
        let keys = acknowledged.lock().unwrap().clone();
        keys
    }
}

/// Starts `script` with `EVAL` on `ip` as the application's user and leaves it running (the connection is
/// returned and must be kept open).
async fn start_script(ip: &str, password: Option<&str>, script: &str) -> tokio::net::TcpStream {
    let mut request = String::new();
    if let Some(password) = password {
        request.push_str(&resp(&["AUTH", password]));
    }
    request.push_str(&resp(&["EVAL", script, "0"]));
    let mut stream = tokio::net::TcpStream::connect((ip, 6379)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Polls until the server at `ip` answers `BUSY`.
async fn wait_busy(ip: &str, password: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = try_command(ip, password, &["PING"]).await;
        if reply.as_deref().is_some_and(|r| r.starts_with("-BUSY")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ip} never answered BUSY: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An endless script that never wrote: after the failover delay (2 s) the operator kills it, and the same
/// primary serves again. No failover, one master, no confirmed write lost, and every write the primary
/// acknowledged to a pinned client is still there.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_primary_has_its_script_killed_and_stays_primary() {
    let env = TestEnv::new("busy-kill").await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    let primary = first.current_primary.clone().unwrap();
    let ip = pod_ip(&env.pods().get(&primary).await.unwrap());
    let password = password_for(&ip).await;
    let pinned = PinnedWriter::start(ip.clone(), password.clone());
    let started = Instant::now();
    let _script = start_script(&ip, password.as_deref(), "while true do end").await;
    wait_busy(&ip, password.as_deref()).await;
    // The operator kills the script: the primary answers again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while try_command(&ip, password.as_deref(), &["PING"])
        .await
        .as_deref()
        != Some("+PONG")
    {
        assert!(Instant::now() < deadline, "the script was never killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy_for = started.elapsed();
    wait_writes(&writer, 20).await;
    let status = wait_converged(&env, "cache", 3).await;
    assert_eq!(
        status.current_primary.as_deref(),
        Some(primary.as_str()),
        "the busy primary was failed over instead of having its script killed"
    );
    assert_one_master(&env).await;
    let gap = finish_and_check(&env, writer, "busy script killed").await;
    let acknowledged = pinned.finish().await;
    assert_confirmed_keys_on_the_primary(&env, "old", &acknowledged).await;
    eprintln!(
        "busy script killed: primary busy for {busy_for:?}, longest confirmed-write gap {gap:?}"
    );
}

/// An endless script that wrote cannot be killed (`UNKILLABLE`). The operator fails over and shuts the busy
/// server down before it promotes a replica: exactly one master at the end, no confirmed write lost, and the
/// old primary's address acknowledges no write from the moment the script started (a client pinned to it, or
/// one that resolved it earlier, can never write to a server about to be re-pointed).
#[tokio::test(flavor = "multi_thread")]
async fn a_primary_busy_in_a_script_that_wrote_is_shut_down_and_acknowledges_nothing_after() {
    let env = TestEnv::new("busy-unkillable").await;
    let (first, writer) = three_converged_with_a_writer(&env, spec(3)).await;
    let primary = first.current_primary.clone().unwrap();
    let old_pod = env.pods().get(&primary).await.unwrap();
    let ip = pod_ip(&old_pod);
    let password = password_for(&ip).await;
    let _script = start_script(
        &ip,
        password.as_deref(),
        "redis.call('SET', 'script-wrote', '1') while true do end",
    )
    .await;
    wait_busy(&ip, password.as_deref()).await;
    // From here on the old primary may acknowledge nothing: it is busy, then stopped, then a replica.
    let pinned = PinnedWriter::start(ip.clone(), password.clone());
    let moved = wait_failed_over(&env, &primary, "a failover away from the busy primary").await;
    let status = moved.status.unwrap();
    let new_primary = status.current_primary.unwrap();
    assert_ne!(new_primary, primary);
    wait_writes(&writer, 20).await;
    assert_one_master(&env).await;
    let gap = finish_and_check(&env, writer, "unkillable busy script").await;
    let acknowledged = pinned.finish().await;
    assert!(
        acknowledged.is_empty(),
        "the old primary {primary} acknowledged writes after its script started: {acknowledged:?}"
    );
    // It was stopped (its process restarted), not left running beside the new primary.
    let restarted = env.pods().get(&primary).await.unwrap();
    let restarts = |p: &k8s_openapi::api::core::v1::Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c[0].restart_count)
    };
    assert!(
        restarts(&restarted) > restarts(&old_pod),
        "{} was not restarted",
        restarted.name_any()
    );
    // The script's write was never acknowledged to anyone, and it is gone with the stopped process.
    let final_ip = pod_ip(&env.pods().get(&new_primary).await.unwrap());
    let reply = try_command(&final_ip, password.as_deref(), &["EXISTS", "script-wrote"]).await;
    assert_eq!(reply.as_deref(), Some(":0"));
    eprintln!("unkillable busy script: longest confirmed-write gap {gap:?}");
}

/// Idle unauthenticated connections take every slot of a primary with `maxclients 40` for 25 s (failover delay
/// 2 s): the primary refuses new connections, and the operator, through the connection it keeps (see
/// `redis::pool`) or seeing that refusal (alive) whenever it needs a new one, never counts it unreachable and
/// does not fail over.
#[tokio::test(flavor = "multi_thread")]
async fn a_primary_whose_connection_slots_are_all_taken_is_not_failed_over() {
    let env = TestEnv::new("maxclients").await;
    let mut s = spec(3);
    s.config.insert("maxclients".into(), "40".into());
    let (first, writer) = three_converged_with_a_writer(&env, s).await;
    let primary = first.current_primary.clone().unwrap();
    let ip = pod_ip(&env.pods().get(&primary).await.unwrap());
    // 80 idle connections, and more whenever a slot frees (a close the server handles late, the writer's): every
    // slot stays taken for 25 s.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let filler = {
        let (ip, stop) = (ip.clone(), stop.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut refused = 0;
                while refused < 3 && held.len() < 400 {
                    let Ok(mut stream) = tokio::net::TcpStream::connect((ip.as_str(), 6379)).await
                    else {
                        break;
                    };
                    let _ = stream.write_all(b"PING\r\n").await;
                    let mut reply = [0u8; 64];
                    let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut reply))
                        .await
                        .map_or(0, |r| r.unwrap_or(0));
                    if reply[..n].starts_with(b"-ERR max number of clients reached") {
                        refused += 1;
                    } else if n > 0 {
                        // The reply (`NOAUTH` or `PONG`) shows the connection holds a slot.
                        refused = 0;
                        held.push(stream);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            held.len()
        })
    };
    let until = Instant::now() + Duration::from_secs(25);
    let mut samples = 0;
    while Instant::now() < until {
        let status = env.instances().get("cache").await.unwrap().status.unwrap();
        assert_eq!(
            status.current_primary.as_deref(),
            Some(primary.as_str()),
            "failed over while the primary refused new connections"
        );
        assert_eq!(
            status.target_primary.as_deref(),
            Some(primary.as_str()),
            "a failover started while the primary refused new connections"
        );
        let seen = status.pods.iter().find(|p| p.name == primary);
        assert!(
            seen.is_some_and(
                |p| p.role == "master" || p.message.contains("max number of clients reached")
            ),
            "the primary was neither observed nor seen refusing: {seen:?}"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let held = filler.await.unwrap();
    assert!(held >= 30, "only {held} connections held");
    assert!(samples >= 50, "only {samples} samples of the status");
    let status = wait_converged(&env, "cache", 3).await;
    assert_eq!(status.current_primary.as_deref(), Some(primary.as_str()));
    wait_writes(&writer, 20).await;
    assert_one_master(&env).await;
    finish_and_check(&env, writer, "maxclients").await;
}
