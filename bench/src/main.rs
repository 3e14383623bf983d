//! `redis-operator-bench`: measures the operator (a separate process) on a running cluster — reaction latency
//! against the watch floor, convergence of N instances, API cost from the audit log, and footprint — and prints
//! a markdown report. `scripts/bench.sh` brings up a private cluster and runs it; see `docs/benchmarks.md`.

mod audit;
mod converge;
mod latency;
mod operator;
mod report;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::audit::AuditLog;
use crate::converge::{create_namespace, Setup};
use crate::operator::Launch;
use crate::report::Report;

/// Benchmark of the redis-operator against a running cluster.
#[derive(Parser, Debug)]
#[command(name = "redis-operator-bench")]
struct Args {
    /// Kubeconfig with an admin context and the operator's context.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Context the benchmark itself uses.
    #[arg(long, default_value = "admin")]
    context: String,
    /// Context the operator uses; its user must be the one audited as `redis-operator`.
    #[arg(long, default_value = "redis-operator")]
    operator_context: String,
    /// The API server's audit log (JSON lines).
    #[arg(long)]
    audit_log: PathBuf,
    /// The operator binary.
    #[arg(long)]
    operator: PathBuf,
    /// Instance counts of the convergence runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,500")]
    sizes: Vec<usize>,
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

async fn client(args: &Args) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig).map_err(|e| e.to_string())?;
    let options = KubeConfigOptions {
        context: Some(args.context.clone()),
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
    let client = client(&args).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| e.to_string())?;
    let audit = AuditLog::new(args.audit_log.clone());
    let launch = Launch {
        binary: args.operator.clone(),
        kubeconfig: args.kubeconfig.clone(),
        context: args.operator_context.clone(),
        resync_seconds: args.resync_seconds,
        log_dir: args.log_dir.clone(),
        log_level: "warn".into(),
    };

    let mut problems = Vec::new();
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
        let result = latency::measure(&client, &ns, &floor_ns, args.samples).await;
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
    };
    let mut sizes = Vec::new();
    for &n in &args.sizes {
        // A failed size ends the run, but everything measured so far is still reported.
        match converge::measure(&setup, n).await {
            Ok(result) => sizes.push(result),
            Err(e) => {
                eprintln!("[bench] N={n} failed: {e}");
                problems.push(format!("N={n} failed: {e}"));
                break;
            }
        }
    }

    let mut environment = machine();
    environment.push(("Kubernetes".into(), version.git_version.clone()));
    environment.extend(args.describe.iter().cloned());
    environment.push((
        "operator".into(),
        format!(
            "{} (--leader-election=false --resync-seconds {})",
            args.operator.display(),
            args.resync_seconds
        ),
    ));
    let report = Report {
        environment,
        latency: latency.as_ref(),
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

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let output = args.output.clone();
    match run(args).await {
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
