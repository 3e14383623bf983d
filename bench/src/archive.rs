//! Archive lag under a steady write load (`redis-operator-bench backup --archive-seconds N`): per segment length,
//! a fresh namespace, operator and instance of two pods with `spec.backup.archive`, a writer sending `SET`s at a
//! fixed rate to the primary, and a sampler reading the primary's `INFO replication` every 250 ms.
//!
//! The archiver is a replica of the primary that acknowledges (`REPLCONF ACK`) only the offsets the bucket holds,
//! so the primary itself tells how far the archive is: at each sample, the archive's lag is the time since the
//! primary's own offset was where the archiver's acknowledged offset is now — the age of the newest write the
//! bucket is known to hold (the RPO, to the sampling's 250 ms). This reads the server, not the operator's account
//! of itself; the operator's gauge (`redis_operator_archive_caught_up_timestamp_seconds`, what the alert watches)
//! is sampled beside it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use redis_operator::api::ArchiveSpec;

use crate::backup::{create_instance, Settings};
use crate::converge::create_namespace;
use crate::instance::INSTANCE;
use crate::operator::Operator;
use crate::report::percentile;
use crate::resp::Connection;

/// What one segment length measured.
pub struct ArchiveResult {
    /// `spec.backup.archive.segmentSeconds`.
    pub segment_seconds: i32,
    /// Writes sent (and answered) during the measured window.
    pub writes: u64,
    /// The window measured (after the first segment was stored).
    pub window: Duration,
    /// The archive's lag per sample, read from the primary.
    pub lag: Vec<Duration>,
    /// `now - redis_operator_archive_caught_up_timestamp_seconds` per sample.
    pub gauge_lag: Vec<Duration>,
}

/// Runs each segment length in turn, `seconds` of writes at `rate` per second each.
pub async fn measure(
    settings: &Settings,
    segments: &[i32],
    seconds: u64,
    rate: u32,
) -> Result<Vec<ArchiveResult>, String> {
    create_bucket(settings)?;
    let mut results = Vec::new();
    for &segment in segments {
        let ns = format!("{}-archive-{segment}", settings.namespace_prefix);
        create_namespace(&settings.client, &ns).await?;
        let operator = Operator::start(&settings.launch, &ns).await?;
        let outcome = run(settings, &operator, &ns, segment, seconds, rate).await;
        operator.stop().await;
        results.push(outcome?);
    }
    Ok(results)
}

/// Creates the bucket (a base backup's upload creates it on the local server; listing the archive does not).
/// The credentials go to curl on its standard input, not its command line.
fn create_bucket(settings: &Settings) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let s3 = &settings.s3;
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-K",
            "-",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "-X",
            "PUT",
        ])
        .arg(format!("{}/{}", s3.endpoint, settings.namespace_prefix))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("curl: {e}"))?;
    if let Some(mut stdin) = curl.stdin.take() {
        writeln!(stdin, "user = \"{}:{}\"", s3.key, s3.secret).map_err(|e| format!("curl: {e}"))?;
    }
    let out = curl.wait_with_output().map_err(|e| format!("curl: {e}"))?;
    let body = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || (body.contains("<Error>") && !body.contains("BucketAlready")) {
        return Err(format!(
            "creating the bucket {}: {body}",
            settings.namespace_prefix
        ));
    }
    Ok(())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `INFO replication` fields: the primary's offset and each replica's `ip` and `offset`.
fn replication(info: &str) -> (Option<u64>, Vec<(String, u64)>) {
    let mut offset = None;
    let mut replicas = Vec::new();
    for line in info.lines() {
        let line = line.trim();
        if let Some(value) = line.strip_prefix("master_repl_offset:") {
            offset = value.parse().ok();
        } else if line.starts_with("slave") && line.contains(":ip=") {
            let fields = line.split_once(':').map(|(_, f)| f).unwrap_or_default();
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_string)
            };
            if let (Some(ip), Some(Ok(at))) = (field("ip"), field("offset").map(|o| o.parse())) {
                replicas.push((ip, at));
            }
        }
    }
    (offset, replicas)
}

async fn run(
    settings: &Settings,
    operator: &Operator,
    ns: &str,
    segment: i32,
    seconds: u64,
    rate: u32,
) -> Result<ArchiveResult, String> {
    let archive = ArchiveSpec {
        segment_seconds: segment,
        new_base_hours: 24,
        retention_days: 7,
    };
    let (_, target) = create_instance(settings, ns, 2, Some(archive)).await?;
    let pods: Api<Pod> = Api::namespaced(settings.client.clone(), ns);
    let pod_ips: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list pods: {e}"))?
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let timeout = Duration::from_secs(10);
    let connect = || {
        Connection::connect_as(
            &target.host,
            target.port,
            target.password.as_deref(),
            timeout,
        )
    };
    let mut writer = connect().await.map_err(|e| format!("connect: {e}"))?;
    let mut sampler = connect().await.map_err(|e| format!("connect: {e}"))?;
    // With a replica, the archiver follows the replica: its acknowledged offset is in the replica's INFO.
    let mut others = Vec::new();
    for ip in pod_ips.iter().filter(|ip| **ip != target.host) {
        others.push(
            Connection::connect_as(ip, target.port, target.password.as_deref(), timeout)
                .await
                .map_err(|e| format!("connect to {ip}: {e}"))?,
        );
    }

    // Offsets the primary was at, with when: the archiver's acknowledged offset is mapped back through them.
    let mut history: Vec<(Instant, u64)> = Vec::new();
    let (mut lag, mut gauge_lag) = (Vec::new(), Vec::new());
    let gauge = format!(
        "redis_operator_archive_caught_up_timestamp_seconds{{namespace=\"{ns}\",name=\"{INSTANCE}\"}}"
    );
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut next_write = Instant::now();
    let mut next_sample = Instant::now();
    let (mut writes, mut n) = (0u64, 0u64);
    // Writes flow from the start; the window is measured from the first acknowledged offset above the start,
    // so that the archiver's base snapshot and first segment are behind it.
    let started = Instant::now();
    let mut window_from: Option<(Instant, u64)> = None;
    let mut last_seen = String::new();
    let deadline_setup = started + Duration::from_secs(300 + 2 * segment.max(1) as u64);
    loop {
        let now = Instant::now();
        if window_from.is_some_and(|(from, _)| now >= from + Duration::from_secs(seconds)) {
            break;
        }
        if window_from.is_none() && now > deadline_setup {
            return Err(format!(
                "the archiver acknowledged no stored write within {:?}; pods {pod_ips:?}; last seen: {last_seen}",
                deadline_setup - started
            ));
        }
        if now >= next_write {
            let key = format!("w:{n}");
            n += 1;
            writer
                .command(&["SET", &key, &n.to_string()], timeout)
                .await
                .map_err(|e| format!("SET: {e}"))?;
            if window_from.is_some() {
                writes += 1;
            }
            next_write += interval;
        }
        if now >= next_sample {
            next_sample += Duration::from_millis(250);
            let info = sampler
                .command(&["INFO", "replication"], timeout)
                .await
                .map_err(|e| format!("INFO: {e}"))?
                .text()
                .unwrap_or_default();
            let (Some(offset), mut replicas) = replication(&info) else {
                continue;
            };
            history.push((now, offset));
            last_seen = format!("primary offset {offset}");
            for other in &mut others {
                let info = other
                    .command(&["INFO", "replication"], timeout)
                    .await
                    .map_err(|e| format!("INFO: {e}"))?
                    .text()
                    .unwrap_or_default();
                replicas.extend(replication(&info).1);
            }
            last_seen.push_str(&format!(", replicas {replicas:?}"));
            let Some(acked) = replicas
                .iter()
                .find(|(ip, _)| !pod_ips.contains(ip))
                .map(|(_, at)| *at)
            else {
                continue;
            };
            // When the primary's offset first reached what the archive holds.
            let Some(reached) = history
                .iter()
                .find(|(_, at)| *at >= acked)
                .map(|(when, _)| *when)
            else {
                continue;
            };
            match window_from {
                None if acked > history[0].1 => window_from = Some((now, acked)),
                None => {}
                Some(_) => {
                    lag.push(now - reached);
                    let metrics = operator.metrics().await;
                    if let Some(at) = metrics.value(&gauge) {
                        gauge_lag.push(unix_now().saturating_sub(Duration::from_secs_f64(at)));
                    }
                }
            }
        }
        let wake = next_write.min(next_sample);
        tokio::time::sleep(wake.saturating_duration_since(Instant::now())).await;
    }
    Ok(ArchiveResult {
        segment_seconds: segment,
        writes,
        window: Duration::from_secs(seconds),
        lag,
        gauge_lag,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// The report's section.
pub fn markdown(results: &[ArchiveResult], rate: u32) -> String {
    let mut out = format!(
        "\n### Archive lag under a steady write load\n\n{rate} `SET`s per second to the primary of a 2-pod instance \
         with `spec.backup.archive` (the archiver follows the replica); the lag is read from the servers' `INFO \
         replication` every 250 ms (the archiver acknowledges only what the bucket holds). The operator's gauge is sampled beside it.\n\n\
         | segmentSeconds | window s | writes | lag p50 s | lag p99 s | lag max s | gauge lag p50 s | gauge lag p99 s | gauge lag max s |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for r in results {
        let (mut lag, mut gauge) = (r.lag.clone(), r.gauge_lag.clone());
        lag.sort();
        gauge.sort();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.segment_seconds,
            r.window.as_secs(),
            r.writes,
            secs(percentile(&lag, 50.0)),
            secs(percentile(&lag, 99.0)),
            secs(lag.last().copied().unwrap_or_default()),
            secs(percentile(&gauge, 50.0)),
            secs(percentile(&gauge, 99.0)),
            secs(gauge.last().copied().unwrap_or_default()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_replication_gives_the_offset_and_each_replica() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=10.244.0.9,port=6379,state=online,offset=5000,lag=0\r\n\
            slave1:ip=10.244.0.1,port=0,state=online,offset=4200,lag=1\r\n\
            master_repl_offset:5012\r\n";
        let (offset, replicas) = replication(info);
        assert_eq!(offset, Some(5012));
        assert_eq!(
            replicas,
            vec![
                ("10.244.0.9".to_string(), 5000),
                ("10.244.0.1".to_string(), 4200)
            ]
        );
    }
}
