//! Reaction after an API server outage: kill -9 of kube-apiserver, down for a while, restarted; once it answers
//! again, a spec patch is made and timed until its status comes back, as in the latency run. A stale watch (a
//! long reconnect back-off) shows here as seconds instead of milliseconds.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::{Api, Client};
use redis_operator::api::RedisInstance;

use crate::latency::{is_running_at, patch_maxmemory, wait_observed};
use crate::watch::Watch;

/// How to take the API server down and bring it back.
pub struct Outage {
    /// Pid file of the running kube-apiserver.
    pub pid_file: PathBuf,
    /// Shell command that starts it again and returns once it is ready (e.g. `bash devcluster/cluster.sh up`).
    pub restart: String,
    /// How long it stays down.
    pub down: Duration,
    /// Outages to measure.
    pub trials: usize,
}

/// One outage.
#[derive(Debug, Clone, Default)]
pub struct OutageTrial {
    /// kill -9 → the API server answers again.
    pub unavailable: Duration,
    /// Spec patch accepted (the first request once it answers) → its status on a fresh watch.
    pub reaction: Duration,
    /// Spec patch accepted → `Running` at the new generation.
    pub settle: Duration,
}

/// Longest wait for the API server to answer after the restart command returned.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

fn kill_apiserver(pid_file: &PathBuf) -> Result<(), String> {
    let pid =
        std::fs::read_to_string(pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let status = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    if !status.success() {
        return Err(format!("kill -9 {} failed", pid.trim()));
    }
    Ok(())
}

async fn answers(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        if client.apiserver_version().await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the API server did not answer within {ANSWER_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the outages against instance `name` in `namespace`, which the running operator manages and which is
/// `Running`.
pub async fn measure(
    client: &Client,
    namespace: &str,
    name: &str,
    outage: &Outage,
) -> Result<Vec<OutageTrial>, String> {
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), namespace);
    let mut trials = Vec::new();
    for i in 0..outage.trials {
        eprintln!(
            "[bench] API server outage {}/{}: kill -9, {} s down",
            i + 1,
            outage.trials,
            outage.down.as_secs()
        );
        let killed = Instant::now();
        kill_apiserver(&outage.pid_file)?;
        // The outage itself: the API server stays down for this long, whatever anyone waits for.
        tokio::time::sleep(outage.down).await;
        let status = Command::new("sh")
            .args(["-c", &outage.restart])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", outage.restart))?;
        if !status.success() {
            return Err(format!("{} failed: {status}", outage.restart));
        }
        answers(client).await?;
        let unavailable = killed.elapsed();
        let mut watch = Watch::start(instances.clone()).await;
        let generation = patch_maxmemory(&instances, name, 200 + i).await?;
        let accepted = Instant::now();
        let reflected = wait_observed(&mut watch, name, generation).await?;
        let running = crate::latency::wait_for(&mut watch, name, "Running", |ri| {
            is_running_at(ri, generation)
        })
        .await?;
        trials.push(OutageTrial {
            unavailable,
            reaction: reflected.saturating_duration_since(accepted),
            settle: running.saturating_duration_since(accepted),
        });
        eprintln!(
            "[bench] outage {}: API server back after {:.1} s, patch reflected after {:.2} s",
            i + 1,
            unavailable.as_secs_f64(),
            reflected.saturating_duration_since(accepted).as_secs_f64()
        );
    }
    Ok(trials)
}
