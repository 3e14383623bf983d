//! `redis-operator-bench`: measures the operator (a separate process) on a running cluster — reaction latency
//! against the watch floor, convergence of N instances, API cost from the audit log, and footprint — and prints
//! a markdown report. `scripts/bench.sh` brings up a private cluster and runs it; see `docs/benchmarks.md`.
//! `redis-operator-bench failover ...` measures failover time against Redis Sentinel instead
//! (`scripts/bench-failover.sh`), `redis-operator-bench rollout ...` the write gap and lost writes of a rolling
//! image update, primary-last against the plain StatefulSet rolling update (`scripts/bench-rollout.sh`).

mod archive;
mod audit;
mod backup;
mod converge;
mod failover;
mod instance;
mod latency;
mod operator;
mod outage;
mod report;
mod resp;
mod rollout;
mod sentinel;
mod watch;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::audit::AuditLog;
use crate::converge::{create_namespace, Setup};
use crate::operator::Launch;
use crate::report::Report;

/// Benchmark of the redis-operator against a running cluster.
#[derive(Parser, Debug)]
#[command(
    name = "redis-operator-bench",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    args: Args,
    #[command(subcommand)]
    command: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Failover time (kill -9 of the primary → first confirmed write on another server) of the operator in
    /// process pod mode, against Redis Sentinel on loopback.
    Failover(FailoverArgs),
    /// Longest write gap and lost confirmed writes during a rolling image update of 3 replicas (process pod
    /// mode): the operator's primary-last rollout against the plain StatefulSet rolling update.
    Rollout(RolloutArgs),
    /// The primary's GET latency while base backups are taken, from a replica and from the primary, against
    /// quiet windows.
    Backup(BackupArgs),
}

/// The backup benchmark.
#[derive(clap::Args, Debug)]
struct BackupArgs {
    /// Kubeconfig with an admin context and the operator's context.
    #[arg(long, required = true)]
    kubeconfig: PathBuf,
    /// Context the benchmark itself uses.
    #[arg(long, default_value = "admin")]
    context: String,
    /// Context the operator uses.
    #[arg(long, default_value = "redis-operator")]
    operator_context: String,
    /// The operator binary.
    #[arg(long, required = true)]
    operator: PathBuf,
    /// The S3 endpoint, access key id and secret (the local cluster's `s3/env`).
    #[arg(long, required = true)]
    s3_endpoint: String,
    /// The access key id.
    #[arg(long, required = true)]
    s3_key: String,
    /// The secret access key.
    #[arg(long, required = true)]
    s3_secret: String,
    /// Keys loaded.
    #[arg(long, default_value_t = 200_000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Backups (and quiet windows) per source; 0 skips the base backups (only the archive is measured).
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Seconds of steady writes measured per segment length for the archive's lag; 0 skips it.
    #[arg(long, default_value_t = 0)]
    archive_seconds: u64,
    /// `segmentSeconds` values the archive's lag is measured at.
    #[arg(long, value_delimiter = ',', default_value = "10,60")]
    segment_seconds: Vec<i32>,
    /// Writes per second during the archive's measurement.
    #[arg(long, default_value_t = 200)]
    archive_rate: u32,
    /// Seconds of each quiet window.
    #[arg(long, default_value_t = 5)]
    window: u64,
    /// Prefix of the namespaces (and the bucket).
    #[arg(long, default_value = "bench-backup")]
    namespace_prefix: String,
    /// Where operator logs go.
    #[arg(long, default_value = "target/bench-backup-logs")]
    log_dir: PathBuf,
    /// Write the markdown report here as well as to stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// More lines for the report's environment, `key=value`.
    #[arg(long = "describe", value_parser = parse_key_value)]
    describe: Vec<(String, String)>,
}

/// The rolling-update benchmark.
#[derive(clap::Args, Debug)]
struct RolloutArgs {
    /// Kubeconfig with an admin context and the operator's context (process pod mode).
    #[arg(long, required = true)]
    kubeconfig: PathBuf,
    /// Context the benchmark itself uses.
    #[arg(long, default_value = "admin")]
    context: String,
    /// Context the operator uses.
    #[arg(long, default_value = "redis-operator")]
    operator_context: String,
    /// The operator binary.
    #[arg(long, required = true)]
    operator: PathBuf,
    /// `--log-level` of the operator.
    #[arg(long, default_value = "info")]
    operator_log_level: String,
    /// How the writer reaches the primary: `pod-ip`, or `service` (the ClusterIP through kube-proxy, a real
    /// node only).
    #[arg(long, value_enum, default_value = "pod-ip")]
    via: instance::Via,
    /// Rolling updates per configuration; the configurations take turns.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// The configurations, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "primary-last,statefulset"
    )]
    rollouts: Vec<rollout::Rollout>,
    /// The image each trial's instance is created with.
    #[arg(long, default_value = "redis:7.0.1")]
    image_from: String,
    /// The image it is updated to.
    #[arg(long, default_value = "redis:7.0.2")]
    image_to: String,
    /// Failovers tried to move the primary to the middle ordinal before a trial takes it where it is.
    #[arg(long, default_value_t = 3)]
    placement_attempts: usize,
    /// Pause of the writer after each confirmed write, ms.
    #[arg(long, default_value_t = 10)]
    write_interval_ms: u64,
    /// Longest wait for the instance to settle (created, after a placement failover), seconds.
    #[arg(long, default_value_t = 180)]
    settle_timeout: u64,
    /// Longest wait from the image change to the instance settled at the new image, seconds.
    #[arg(long, default_value_t = 300)]
    rollout_timeout: u64,
    /// The target for the write gap p99, ms.
    #[arg(long, default_value_t = 500)]
    gap_target_ms: u64,
    /// Prefix of the trials' namespaces.
    #[arg(long, default_value = "bench-rollout")]
    namespace_prefix: String,
    /// Where operator logs go.
    #[arg(long, default_value = "target/bench-rollout-logs")]
    log_dir: PathBuf,
    /// Write the markdown report here as well as to stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Replace the generated block of this document (between `<!-- bench-rollout:begin -->` and
    /// `<!-- bench-rollout:end -->`) with the run's title, environment and summary.
    #[arg(long)]
    docs: Option<PathBuf>,
    /// Heading of the run in the document, e.g. `Run of 2026-11-26`.
    #[arg(long, default_value = "Latest run")]
    run_title: String,
    /// Extra `key=value` lines for the environment table.
    #[arg(long = "describe", value_parser = parse_key_value)]
    describe: Vec<(String, String)>,
}

/// The failover benchmark.
#[derive(clap::Args, Debug)]
struct FailoverArgs {
    /// Kubeconfig with an admin context and the operator's context (process pod mode).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Context the benchmark itself uses.
    #[arg(long, default_value = "admin")]
    context: String,
    /// Context the operator uses.
    #[arg(long, default_value = "redis-operator")]
    operator_context: String,
    /// The operator binary.
    #[arg(long)]
    operator: Option<PathBuf>,
    /// `--log-level` of the operator.
    #[arg(long, default_value = "info")]
    operator_log_level: String,
    /// How the writer reaches the primary: `pod-ip`, or `service` (the ClusterIP through kube-proxy, a real
    /// node only).
    #[arg(long, value_enum, default_value = "pod-ip")]
    via: instance::Via,
    /// `failoverDelaySeconds` values to measure, comma-separated (the operator's default is 10).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    delays: Vec<u32>,
    /// Sentinel `down-after-milliseconds` values, comma-separated; default: Sentinel's default 30000 and each
    /// delay in ms.
    #[arg(long, value_delimiter = ',')]
    sentinel_down_after: Vec<u64>,
    /// Sentinel `failover-timeout`, ms (also: a failed election is retried after twice this).
    #[arg(long, default_value_t = 60000)]
    sentinel_failover_timeout: u64,
    /// Kills per configuration.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Stall trials of the operator per delay after its kills: the primary's server stopped for 80 % of the delay
    /// on a busy host, then continued; a failover then is a false one.
    #[arg(long, default_value_t = 5)]
    stalls: usize,
    /// Pause of the writer after each confirmed write, ms.
    #[arg(long, default_value_t = 10)]
    write_interval_ms: u64,
    /// Longest wait from a kill to the first confirmed write on another server, seconds.
    #[arg(long, default_value_t = 120)]
    failover_timeout: u64,
    /// Longest wait for a topology to converge (before the first trial, and after each), seconds.
    #[arg(long, default_value_t = 180)]
    converge_timeout: u64,
    /// How the killed pod comes back (the operator's run).
    #[arg(long, value_enum, default_value = "delete")]
    rejoin: failover::Rejoin,
    /// Skip the operator's runs.
    #[arg(long)]
    no_operator: bool,
    /// Skip the Sentinel runs.
    #[arg(long)]
    no_sentinel: bool,
    /// `redis-server` binary of the Sentinel anchor.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// `redis-sentinel` binary.
    #[arg(long, default_value = "redis-sentinel")]
    redis_sentinel: PathBuf,
    /// State directory of the Sentinel anchor.
    #[arg(long, default_value = "/tmp/redis-operator-failover-bench-sentinel")]
    sentinel_dir: PathBuf,
    /// Port of the first of the anchor's three servers.
    #[arg(long, default_value_t = 26500)]
    server_port: u16,
    /// Port of the first of the three sentinels.
    #[arg(long, default_value_t = 26600)]
    sentinel_port: u16,
    /// Prefix of the namespaces of the operator's runs.
    #[arg(long, default_value = "bench-failover")]
    namespace_prefix: String,
    /// Where operator logs go.
    #[arg(long, default_value = "target/bench-failover-logs")]
    log_dir: PathBuf,
    /// Write the markdown report here as well as to stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Extra `key=value` lines for the environment table.
    #[arg(long = "describe", value_parser = parse_key_value)]
    describe: Vec<(String, String)>,
}

/// The default mode: latency, convergence, API cost, footprint.
#[derive(clap::Args, Debug)]
struct Args {
    /// Kubeconfig with an admin context and the operator's context.
    #[arg(long, required = true)]
    kubeconfig: Option<PathBuf>,
    /// Context the benchmark itself uses.
    #[arg(long, default_value = "admin")]
    context: String,
    /// Context the operator uses; its user must be the one audited as `redis-operator`.
    #[arg(long, default_value = "redis-operator")]
    operator_context: String,
    /// The API server's audit log (JSON lines).
    #[arg(long, required = true)]
    audit_log: Option<PathBuf>,
    /// The operator binary.
    #[arg(long, required = true)]
    operator: Option<PathBuf>,
    /// Instance counts of the convergence runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    sizes: Vec<usize>,
    /// Pods per instance (`spec.replicas`) of those runs.
    #[arg(long, default_value_t = 1)]
    pods: i32,
    /// Instance counts of the replicated runs (after the others), comma-separated; empty for none.
    #[arg(long, value_delimiter = ',')]
    replicated_sizes: Vec<usize>,
    /// Pods per instance of the replicated runs.
    #[arg(long, default_value_t = 3)]
    replicated_pods: i32,
    /// `spec.config` entries of every instance, `key=value` (e.g. `hz=1` for a crowded host).
    #[arg(long = "config", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Seconds a converged operator is watched idle (at least one timer resync of every instance).
    #[arg(long, default_value_t = 300)]
    idle_seconds: u64,
    /// Pid file of kube-apiserver: with `--outage-restart`, API server outages are measured after the latency
    /// run.
    #[arg(long)]
    outage_pid_file: Option<PathBuf>,
    /// Shell command that restarts kube-apiserver and returns once it is ready.
    #[arg(long)]
    outage_restart: Option<String>,
    /// Seconds the API server stays down in each outage.
    #[arg(long, default_value_t = 15)]
    outage_seconds: u64,
    /// Outages to measure.
    #[arg(long, default_value_t = 3)]
    outage_trials: usize,
    /// Spec changes (and floor samples) of the latency run; 0 skips it.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// `--resync-seconds` of the operator: the idle resync is measured by waiting for it.
    #[arg(long, default_value_t = 20)]
    resync_seconds: u64,
    /// Creates in flight at once when creating N instances.
    #[arg(long, default_value_t = 50)]
    create_concurrency: usize,
    /// Longest wait for one convergence, seconds.
    #[arg(long, default_value_t = 600)]
    converge_timeout: u64,
    /// Prefix of the namespaces the benchmark creates (`<prefix>-latency`, `<prefix>-floor`, `<prefix>-n<N>`).
    #[arg(long, default_value = "bench")]
    namespace_prefix: String,
    /// Where operator logs go.
    #[arg(long, default_value = "target/bench-logs")]
    log_dir: PathBuf,
    /// Write the markdown report here as well as to stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Extra `key=value` lines for the environment table (pod mode, build profile, ...).
    #[arg(long = "describe", value_parser = parse_key_value)]
    describe: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s}"))
}

async fn client(path: &std::path::Path, context: &str) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

fn machine() -> Vec<(String, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("?".to_string(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or(String::new(), |(_, m)| m.trim().to_string());
    vec![
        ("CPUs (nproc)".into(), format!("{cpus} ({model})")),
        ("memory".into(), memory),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_string(),
        ),
    ]
}

async fn run(args: Args) -> Result<String, String> {
    let (Some(kubeconfig), Some(audit_log), Some(binary)) = (
        args.kubeconfig.clone(),
        args.audit_log.clone(),
        args.operator.clone(),
    ) else {
        return Err("--kubeconfig, --audit-log and --operator are required".into());
    };
    let client = client(&kubeconfig, &args.context).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| e.to_string())?;
    let audit = AuditLog::new(audit_log);
    let launch = Launch {
        binary: binary.clone(),
        kubeconfig,
        context: args.operator_context.clone(),
        resync_seconds: args.resync_seconds,
        log_dir: args.log_dir.clone(),
        log_level: "warn".into(),
        env: Vec::new(),
    };

    let mut problems = Vec::new();
    let mut outages = Vec::new();
    let latency = if args.samples > 0 {
        let ns = format!("{}-latency", args.namespace_prefix);
        let floor_ns = format!("{}-floor", args.namespace_prefix);
        create_namespace(&client, &ns).await?;
        create_namespace(&client, &floor_ns).await?;
        let operator = operator::Operator::start(&launch, &ns).await?;
        eprintln!(
            "[bench] latency: {} spec changes (operator pid {})",
            args.samples,
            operator.pid()
        );
        let from = audit.mark();
        let result = latency::measure(&client, &ns, &floor_ns, args.samples)
            .await
            .and_then(|mut result| {
                let requests = audit.requests(from, audit.mark(), &ns)?;
                result.traces = latency::traces(&requests, converge::OPERATOR_USER, "latency");
                Ok(result)
            });
        operator.stop().await;
        result
            .map_err(|e| problems.push(format!("latency run failed: {e}")))
            .ok()
    } else {
        None
    };

    let setup = Setup {
        client: &client,
        launch: &launch,
        audit: &audit,
        create_concurrency: args.create_concurrency,
        timeout: Duration::from_secs(args.converge_timeout),
        namespace_prefix: &args.namespace_prefix,
        config: args.config.iter().cloned().collect(),
        idle: Duration::from_secs(args.idle_seconds),
    };
    let mut sizes = Vec::new();
    let runs = args.sizes.iter().map(|&n| (n, args.pods)).chain(
        args.replicated_sizes
            .iter()
            .map(|&n| (n, args.replicated_pods)),
    );
    for (n, pods) in runs {
        // A failed size ends the run, but everything measured so far is still reported.
        match converge::measure(&setup, n, pods).await {
            Ok(result) => sizes.push(result),
            Err(e) => {
                eprintln!("[bench] N={n} failed: {e}");
                problems.push(format!("N={n} failed: {e}"));
                break;
            }
        }
    }

    // Last: an API server outage disturbs the controllers (kube-controller-manager loses its lease and restarts),
    // which would slow any convergence measured after it.
    if let (Some(_), Some(pid_file), Some(restart)) =
        (&latency, &args.outage_pid_file, &args.outage_restart)
    {
        let ns = format!("{}-latency", args.namespace_prefix);
        let plan = outage::Outage {
            pid_file: pid_file.clone(),
            restart: restart.clone(),
            down: Duration::from_secs(args.outage_seconds),
            trials: args.outage_trials,
        };
        let operator = operator::Operator::start(&launch, &ns).await?;
        match outage::measure(&client, &ns, "latency", &plan).await {
            Ok(trials) => outages = trials,
            Err(e) => problems.push(format!("API server outage run failed: {e}")),
        }
        operator.stop().await;
    }

    let mut environment = machine();
    environment.push(("Kubernetes".into(), version.git_version.clone()));
    environment.extend(args.describe.iter().cloned());
    let config = args
        .config
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    environment.push((
        "instances".into(),
        format!(
            "spec.replicas {} (sizes {:?}){}; spec.config {{{config}}}; auth on (the default); {} creates in flight; idle window {} s",
            args.pods,
            args.sizes,
            if args.replicated_sizes.is_empty() {
                String::new()
            } else {
                format!(", {} (sizes {:?})", args.replicated_pods, args.replicated_sizes)
            },
            args.create_concurrency,
            args.idle_seconds
        ),
    ));
    environment.push((
        "operator".into(),
        format!(
            "{} (--leader-election=false --resync-seconds {})",
            binary.display(),
            args.resync_seconds
        ),
    ));
    let report = Report {
        environment,
        latency: latency.as_ref(),
        outages: &outages,
        sizes: &sizes,
    };
    let mut markdown = report.markdown();
    if !problems.is_empty() {
        markdown.push_str("### Incomplete run\n\n");
        for problem in &problems {
            markdown.push_str(&format!("- {problem}\n"));
        }
    }
    Ok(markdown)
}

/// The failover benchmark: the operator at each delay, then Sentinel at each `down-after-milliseconds`.
async fn run_failover(args: FailoverArgs) -> Result<String, String> {
    instance::set_via(args.via);
    let settings = failover::TrialSettings {
        trials: args.trials,
        write_interval: Duration::from_millis(args.write_interval_ms),
        failover_timeout: Duration::from_secs(args.failover_timeout),
        converge_timeout: Duration::from_secs(args.converge_timeout),
        stalls: args.stalls,
    };
    let mut environment = machine();
    let mut results = Vec::new();
    if !args.no_operator {
        let (Some(kubeconfig), Some(binary)) = (args.kubeconfig.clone(), args.operator.clone())
        else {
            return Err("the operator's runs need --kubeconfig and --operator".into());
        };
        let client = client(&kubeconfig, &args.context).await?;
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| e.to_string())?;
        environment.push(("Kubernetes".into(), version.git_version.clone()));
        environment.push((
            "operator".into(),
            format!(
                "{} (--leader-election=false --resync-seconds 20 --log-level {}), logs in {}",
                binary.display(),
                args.operator_log_level,
                args.log_dir.display()
            ),
        ));
        let launch = Launch {
            binary,
            kubeconfig,
            context: args.operator_context.clone(),
            resync_seconds: 20,
            log_dir: args.log_dir.clone(),
            log_level: args.operator_log_level.clone(),
            env: Vec::new(),
        };
        let setup = failover::OperatorSetup {
            client: &client,
            launch: &launch,
            namespace_prefix: &args.namespace_prefix,
            settings: &settings,
            rejoin: args.rejoin,
        };
        for &delay in &args.delays {
            results.push(failover::measure_operator(&setup, delay).await);
        }
    }
    if !args.no_sentinel {
        let mut down_after = args.sentinel_down_after.clone();
        if down_after.is_empty() {
            down_after.push(30_000);
            down_after.extend(args.delays.iter().map(|d| u64::from(*d) * 1000));
            down_after.dedup();
        }
        let version = std::process::Command::new(&args.redis_sentinel)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("cannot run {}: {e}", args.redis_sentinel.display()));
        environment.push((
            "Sentinel".into(),
            format!(
                "{} ({version}); 3 sentinels, quorum 2, failover-timeout {} ms, parallel-syncs 1",
                args.redis_sentinel.display(),
                args.sentinel_failover_timeout
            ),
        ));
        let setup = sentinel::SentinelSetup {
            redis_server: args.redis_server.clone(),
            redis_sentinel: args.redis_sentinel.clone(),
            dir: args.sentinel_dir.clone(),
            server_port: args.server_port,
            sentinel_port: args.sentinel_port,
            failover_timeout_ms: args.sentinel_failover_timeout,
            settings: settings.clone(),
        };
        for ms in down_after {
            results.push(sentinel::measure(&setup, ms).await);
        }
    }
    environment.push((
        "writer".into(),
        format!(
            "SET k<n> <n> + WAIT 1 1000 pipelined on one connection, {} ms pause after each confirmed write; re-resolves the primary after any error or unconfirmed write",
            args.write_interval_ms
        ),
    ));
    if !args.no_operator {
        environment.push((
            "rejoin of the killed pod (operator)".into(),
            match args.rejoin {
                failover::Rejoin::Delete => "the pod is deleted once the failover is measured (the StatefulSet re-creates it at once)".into(),
                failover::Rejoin::Restart => "the node agent restarts the killed server after its crash-loop back-off".to_string(),
            },
        ));
    }
    environment.extend(args.describe.iter().cloned());
    Ok(failover::markdown(&environment, &results))
}

/// Start and end markers of the generated block in `docs/benchmarks.md`.
const ROLLOUT_DOCS_MARKERS: (&str, &str) =
    ("<!-- bench-rollout:begin -->", "<!-- bench-rollout:end -->");

/// The rolling-update benchmark: both configurations, trial by trial in turn.
async fn run_rollout(args: RolloutArgs) -> Result<String, String> {
    instance::set_via(args.via);
    let client = client(&args.kubeconfig, &args.context).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| e.to_string())?;
    let mut environment = machine();
    environment.push(("Kubernetes".into(), version.git_version.clone()));
    environment.push((
        "operator".into(),
        format!(
            "{} (--leader-election=false --resync-seconds 20 --log-level {}), one per trial, logs in {}",
            args.operator.display(),
            args.operator_log_level,
            args.log_dir.display()
        ),
    ));
    environment.push((
        "writer".into(),
        format!(
            "SET k<n> <n> + WAIT 1 1000 pipelined on one connection, {} ms pause after each confirmed write; re-resolves the pod labelled primary after any error or unconfirmed write",
            args.write_interval_ms
        ),
    ));
    environment.push((
        "trial".into(),
        format!(
            "fresh namespace and instance (replicas 3, {}); primary moved to ordinal 1 by kill -9 failovers (at most {}); writer started; image → {}; settled = Running, every pod at the StatefulSet's update revision and new image, one primary and two in-sync replicas, {} writes confirmed on the primary",
            args.image_from, args.placement_attempts, args.image_to, failover::WRITES_TO_CONVERGE
        ),
    ));
    environment.extend(args.describe.iter().cloned());
    let settings = rollout::Settings {
        client,
        launch: Launch {
            binary: args.operator.clone(),
            kubeconfig: args.kubeconfig.clone(),
            context: args.operator_context.clone(),
            resync_seconds: 20,
            log_dir: args.log_dir.clone(),
            log_level: args.operator_log_level.clone(),
            env: Vec::new(),
        },
        namespace_prefix: args.namespace_prefix.clone(),
        image_from: args.image_from.clone(),
        image_to: args.image_to.clone(),
        placement_attempts: args.placement_attempts,
        write_interval: Duration::from_millis(args.write_interval_ms),
        settle_timeout: Duration::from_secs(args.settle_timeout),
        rollout_timeout: Duration::from_secs(args.rollout_timeout),
    };
    let results = rollout::measure(&settings, &args.rollouts, args.trials).await;
    let gap_target = Duration::from_millis(args.gap_target_ms);
    if let Some(path) = &args.docs {
        let mut block = format!(
            "#### {}

| | |
|---|---|
",
            args.run_title
        );
        for (key, value) in &environment {
            block.push_str(&format!("| {key} | {value} |\n"));
        }
        block.push('\n');
        block.push_str(&rollout::summary(&results, gap_target));
        let doc = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (begin, end) = ROLLOUT_DOCS_MARKERS;
        let updated = rollout::replace_section(&doc, begin, end, &block)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(path, updated).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(rollout::markdown(&environment, &results, gap_target))
}

async fn run_backup(args: BackupArgs) -> Result<String, String> {
    let client = client(&args.kubeconfig, &args.context).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| e.to_string())?;
    let mut environment = machine();
    environment.push(("Kubernetes".into(), version.git_version.clone()));
    environment.push((
        "data".into(),
        format!(
            "{} keys of {} bytes of random hex text (compressible only to half by zstd)",
            args.keys, args.value_bytes
        ),
    ));
    environment.push((
        "probe".into(),
        "GET of a loaded key on the primary, one at a time on one connection, 1 ms pause after each reply; \
         samples sorted by the window they started in"
            .into(),
    ));
    environment.push((
        "trial".into(),
        format!(
            "{} s quiet, then a RedisBackup from its creation until Completed; {} trials per source, each source \
             a fresh namespace, operator and instance (2 pods: read from the replica; 1 pod: from the primary)",
            args.window, args.trials
        ),
    ));
    environment.extend(args.describe.iter().cloned());
    let settings = backup::Settings {
        client,
        launch: Launch {
            binary: args.operator.clone(),
            kubeconfig: args.kubeconfig.clone(),
            context: args.operator_context.clone(),
            resync_seconds: 20,
            log_dir: args.log_dir.clone(),
            log_level: "info".into(),
            env: Vec::new(),
        },
        s3: backup::S3 {
            endpoint: args.s3_endpoint.clone(),
            key: args.s3_key.clone(),
            secret: args.s3_secret.clone(),
        },
        keys: args.keys,
        value_bytes: args.value_bytes,
        trials: args.trials,
        window: Duration::from_secs(args.window),
        namespace_prefix: args.namespace_prefix.clone(),
    };
    let results = if args.trials > 0 {
        backup::measure(&settings).await?
    } else {
        Vec::new()
    };
    let mut report = backup::markdown(&results, &environment);
    if args.archive_seconds > 0 {
        let archived = archive::measure(
            &settings,
            &args.segment_seconds,
            args.archive_seconds,
            args.archive_rate,
        )
        .await?;
        report.push_str(&archive::markdown(&archived, args.archive_rate));
    }
    Ok(report)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let (output, outcome) = match cli.command {
        Some(Mode::Failover(args)) => (args.output.clone(), run_failover(args).await),
        Some(Mode::Rollout(args)) => (args.output.clone(), run_rollout(args).await),
        Some(Mode::Backup(args)) => (args.output.clone(), run_backup(args).await),
        None => (cli.args.output.clone(), run(cli.args).await),
    };
    match outcome {
        Ok(markdown) => {
            print!("{markdown}");
            if let Some(path) = output {
                if let Err(e) = std::fs::write(&path, &markdown) {
                    eprintln!("[bench] cannot write {}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("[bench] error: {e}");
            std::process::exit(1);
        }
    }
}
