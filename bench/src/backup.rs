//! The backup benchmark (`redis-operator-bench backup`): the primary's command latency while base backups are
//! taken, against the same primary without one. Per source — a replica (the default of an instance with
//! replicas) and the primary itself (an instance of one pod) — a fresh namespace, operator and instance are
//! loaded with `--keys` keys of random text; a probe sends `GET` to the primary one at a time, back to back with a 1 ms pause,
//! for the whole run; trials alternate a quiet window and a `RedisBackup` (from its creation until `Completed`).
//! Samples are sorted into the windows they started in. Then an instance of one pod is created from the last
//! backup (`spec.bootstrap.fromBackup`): the time until its status records the restore, and until it is Running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use redis_operator::api::{
    ArchiveSpec, BackupSpec, BootstrapSpec, FromBackup, RedisBackup, RedisBackupSpec,
    RedisInstance, RedisInstanceSpec, S3Target,
};

use crate::converge::create_namespace;
use crate::instance::{primary_target, wait_topology, INSTANCE};
use crate::operator::{Launch, Operator};
use crate::report::percentile;
use crate::resp::Connection;

/// Where the backups go.
#[derive(Clone, Debug)]
pub struct S3 {
    /// The endpoint.
    pub endpoint: String,
    /// The access key id.
    pub key: String,
    /// The secret.
    pub secret: String,
}

/// What the benchmark needs.
pub struct Settings {
    /// Admin client.
    pub client: Client,
    /// How to start the operator.
    pub launch: Launch,
    /// The bucket server.
    pub s3: S3,
    /// Keys loaded into the instance.
    pub keys: usize,
    /// Bytes of each value.
    pub value_bytes: usize,
    /// Quiet windows and backups per source.
    pub trials: usize,
    /// Length of a quiet window.
    pub window: Duration,
    /// Prefix of the namespaces.
    pub namespace_prefix: String,
}

/// What one source measured.
pub struct SourceResult {
    /// `replica` or `primary`.
    pub source: &'static str,
    /// Latencies of the GETs started in quiet windows.
    pub quiet: Vec<Duration>,
    /// Latencies of the GETs started while a backup ran.
    pub during: Vec<Duration>,
    /// How long each backup took (creation to `Completed`).
    pub backups: Vec<Duration>,
    /// Bytes of the snapshot and stored, of the last backup.
    pub sizes: (i64, i64),
    /// The pods the backups were read from.
    pub read_from: Vec<String>,
    /// From the creation of an instance bootstrapped from the last backup until its status records the restore.
    pub restored: Duration,
    /// Until it is `Running`.
    pub running: Duration,
}

/// Runs both sources.
pub async fn measure(settings: &Settings) -> Result<Vec<SourceResult>, String> {
    let mut results = Vec::new();
    for (source, replicas) in [("replica", 2), ("primary", 1)] {
        results.push(measure_source(settings, source, replicas).await?);
    }
    Ok(results)
}

async fn measure_source(
    settings: &Settings,
    source: &'static str,
    replicas: usize,
) -> Result<SourceResult, String> {
    let ns = format!("{}-{source}", settings.namespace_prefix);
    create_namespace(&settings.client, &ns).await?;
    let operator = Operator::start(&settings.launch, &ns).await?;
    let outcome = run_source(settings, &ns, source, replicas).await;
    operator.stop().await;
    outcome
}

async fn run_source(
    settings: &Settings,
    ns: &str,
    source: &'static str,
    replicas: usize,
) -> Result<SourceResult, String> {
    let client = &settings.client;
    let (instances, target) = create_instance(settings, ns, replicas, None).await?;
    let timeout = Duration::from_secs(30);
    let mut loader = Connection::connect_as(
        &target.host,
        target.port,
        target.password.as_deref(),
        timeout,
    )
    .await
    .map_err(|e| format!("connect to the primary: {e}"))?;
    // Values that do not compress (RDB's LZF, the backup's zstd), so the snapshot is as large as the data.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut value = || {
        let mut text = String::with_capacity(settings.value_bytes + 16);
        while text.len() < settings.value_bytes {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(&format!("{state:016x}"));
        }
        text.truncate(settings.value_bytes);
        text
    };
    let keys: Vec<(String, String)> = (0..settings.keys)
        .map(|n| (format!("key:{n}"), value()))
        .collect();
    for chunk in keys.chunks(1000) {
        let commands: Vec<Vec<&str>> = chunk
            .iter()
            .map(|(k, v)| vec!["SET", k.as_str(), v.as_str()])
            .collect();
        loader
            .pipeline(&commands, timeout)
            .await
            .map_err(|e| format!("loading: {e}"))?;
    }
    if replicas > 1 {
        loader
            .command(&["WAIT", "1", "60000"], Duration::from_secs(70))
            .await
            .map_err(|e| format!("WAIT: {e}"))?;
    }

    // The probe: one GET at a time on the primary, for the whole run.
    let samples: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut probe = Connection::connect_as(
        &target.host,
        target.port,
        target.password.as_deref(),
        timeout,
    )
    .await
    .map_err(|e| format!("connect the probe: {e}"))?;
    let probe_task = {
        let (samples, stop) = (samples.clone(), stop.clone());
        let keys = settings.keys.max(1);
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("key:{}", n % keys);
                n = n.wrapping_add(7919);
                let started = Instant::now();
                if probe
                    .command(&["GET", &key], Duration::from_secs(10))
                    .await
                    .is_err()
                {
                    break;
                }
                if let Ok(mut s) = samples.lock() {
                    s.push((started, started.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let backups: Api<RedisBackup> = Api::namespaced(client.clone(), ns);
    let (mut quiet_windows, mut backup_windows) = (Vec::new(), Vec::new());
    let (mut sizes, mut read_from, mut durations) = ((0, 0), Vec::new(), Vec::new());
    for trial in 0..settings.trials {
        let quiet_from = Instant::now();
        tokio::time::sleep(settings.window).await;
        quiet_windows.push((quiet_from, Instant::now()));
        let name = format!("bench-{trial}");
        let from = Instant::now();
        backups
            .create(
                &PostParams::default(),
                &RedisBackup::new(
                    &name,
                    RedisBackupSpec {
                        instance: INSTANCE.into(),
                    },
                ),
            )
            .await
            .map_err(|e| format!("create {name}: {e}"))?;
        let status = loop {
            let status = backups
                .get(&name)
                .await
                .map_err(|e| format!("get {name}: {e}"))?
                .status
                .unwrap_or_default();
            if status.phase == "Completed" || status.phase == "Failed" {
                break status;
            }
            if from.elapsed() > Duration::from_secs(600) {
                return Err(format!("{name} not finished within 600 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if status.phase != "Completed" {
            return Err(format!(
                "{name} failed: {} {}",
                status.reason, status.message
            ));
        }
        let until = Instant::now();
        durations.push(until - from);
        backup_windows.push((from, until));
        sizes = (
            status.data_size.unwrap_or_default(),
            status.size.unwrap_or_default(),
        );
        read_from.push(status.pod);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = probe_task.await;

    // Restore: a new instance of one pod from the last backup, from its creation until its status records the
    // restore, and until it is Running.
    let created = Instant::now();
    let mut copy_spec = RedisInstanceSpec {
        replicas: 1,
        backup: instances
            .get(INSTANCE)
            .await
            .map_err(|e| format!("get {INSTANCE}: {e}"))?
            .spec
            .backup,
        ..Default::default()
    };
    copy_spec.bootstrap = Some(BootstrapSpec {
        from_backup: Some(FromBackup {
            name: format!("bench-{}", settings.trials.saturating_sub(1)),
        }),
        from_archive: None,
    });
    instances
        .create(
            &PostParams::default(),
            &RedisInstance::new("copy", copy_spec),
        )
        .await
        .map_err(|e| format!("create copy: {e}"))?;
    let (mut restored, mut running) = (None, None);
    while running.is_none() {
        let status = instances
            .get("copy")
            .await
            .map_err(|e| format!("get copy: {e}"))?
            .status
            .unwrap_or_default();
        if restored.is_none()
            && status
                .restore
                .as_ref()
                .is_some_and(|r| r.completed_at.is_some())
        {
            restored = Some(created.elapsed());
        }
        if restored.is_some() && status.status == redis_fsm::Phase::Running {
            running = Some(created.elapsed());
        }
        if created.elapsed() > Duration::from_secs(900) {
            return Err(format!(
                "the copy was not restored within 900 s: {status:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let within = |windows: &[(Instant, Instant)]| {
        samples
            .iter()
            .filter(|(at, _)| windows.iter().any(|(from, to)| at >= from && at < to))
            .map(|(_, latency)| *latency)
            .collect::<Vec<_>>()
    };
    read_from.sort();
    read_from.dedup();
    Ok(SourceResult {
        source,
        quiet: within(&quiet_windows),
        during: within(&backup_windows),
        backups: durations,
        sizes,
        read_from,
        restored: restored.unwrap_or_default(),
        running: running.unwrap_or_default(),
    })
}

/// Creates the bucket's credentials Secret and the instance `INSTANCE` of `replicas` pods backing up to the
/// bucket named like the namespaces' prefix (with `archive`, archiving too); waits until it has converged and
/// returns its API and the primary.
pub async fn create_instance(
    settings: &Settings,
    ns: &str,
    replicas: usize,
    archive: Option<ArchiveSpec>,
) -> Result<(Api<RedisInstance>, crate::writer::Target), String> {
    let client = &settings.client;
    let data = [
        ("accessKeyId", settings.s3.key.as_str()),
        ("secretAccessKey", settings.s3.secret.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s3".into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("create the S3 Secret: {e}"))?;
    let spec = RedisInstanceSpec {
        replicas: replicas as i32,
        backup: Some(BackupSpec {
            s3: S3Target {
                endpoint: settings.s3.endpoint.clone(),
                // The local server creates a bucket on its admin's first write.
                bucket: settings.namespace_prefix.clone(),
                prefix: None,
                region: None,
                credentials_secret: "s3".into(),
                ca_secret: None,
            },
            schedule: None,
            keep: 7,
            max_age_days: None,
            archive,
        }),
        ..Default::default()
    };
    let instances: Api<RedisInstance> = Api::namespaced(client.clone(), ns);
    instances
        .create(&PostParams::default(), &RedisInstance::new(INSTANCE, spec))
        .await
        .map_err(|e| format!("create {INSTANCE}: {e}"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_topology(&instances, &pods, replicas, Duration::from_secs(180), || {}).await?;
    let target = primary_target(&pods)
        .await
        .ok_or("no pod labelled primary")?;
    Ok((instances, target))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The report's table.
pub fn markdown(results: &[SourceResult], environment: &[(String, String)]) -> String {
    let mut out = String::from("### Primary latency during a backup\n\n");
    for (what, value) in environment {
        out.push_str(&format!("- {what}: {value}\n"));
    }
    if results.is_empty() {
        return out;
    }
    out.push_str(
        "\n| backup read from | window | GETs | p50 ms | p99 ms | p99.9 ms | max ms |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        for (window, samples) in [("quiet", &r.quiet), ("during a backup", &r.during)] {
            out.push_str(&format!(
                "| {} ({}) | {window} | {} | {} | {} | {} | {} |\n",
                r.source,
                r.read_from.join(", "),
                samples.len(),
                ms(percentile(samples, 50.0)),
                ms(percentile(samples, 99.0)),
                ms(percentile(samples, 99.9)),
                ms(samples.iter().max().copied().unwrap_or_default()),
            ));
        }
    }
    let mib = |bytes: i64| bytes as f64 / (1024.0 * 1024.0);
    out.push_str(
        "\n| backup read from | snapshot MiB | stored MiB | backups | backup p50 s | backup MiB/s | restore s (recorded) | restore MiB/s | restored instance Running s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        let backup = percentile(&r.backups, 50.0).as_secs_f64();
        let restore = r.restored.as_secs_f64();
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {} | {:.2} | {:.1} | {:.2} | {:.1} | {:.2} |\n",
            r.source,
            mib(r.sizes.0),
            mib(r.sizes.1),
            r.backups.len(),
            backup,
            if backup > 0.0 {
                mib(r.sizes.0) / backup
            } else {
                0.0
            },
            restore,
            if restore > 0.0 {
                mib(r.sizes.0) / restore
            } else {
                0.0
            },
            r.running.as_secs_f64(),
        ));
    }
    out
}
