//! Command line: `run` the operator, print the `crd`, or render the phase engine (`fsm`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing_subscriber::EnvFilter;

use crate::controller;
use crate::reconciler::{RolloutMode, Settings};
use crate::runtime::leader::{self, Election, LeaseSettings};
use crate::runtime::metrics::Metrics;

/// A Kubernetes operator for Redis whose status is driven by an explicit, typed phase state machine.
#[derive(Parser, Debug)]
#[command(name = "redis-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the RedisInstance CustomResourceDefinition as YAML (`--backup`: the RedisBackup one).
    Crd {
        /// Print the RedisBackup CustomResourceDefinition instead.
        #[arg(long)]
        backup: bool,
    },
    /// Print the phase state machine as a diagram or table.
    Fsm {
        /// mermaid, dot, markdown, or doc (the whole docs/fsm.md page).
        #[arg(long, default_value = "mermaid")]
        format: String,
    },
    /// Ask the operator to switch the primary of an instance over to one of its replicas (writes pause
    /// until it caught up, nothing is lost). Writes the
    /// `redis-operator.github.io/switchover-to` annotation; the operator removes it once the switchover is
    /// recorded. Also resumes a rolling update that waits for it (`primaryUpdateStrategy: Supervised`).
    Switchover {
        /// The RedisInstance.
        name: String,
        /// The pod to make primary, e.g. `cache-1`.
        #[arg(long)]
        to: String,
        /// Namespace of the instance (default: the kubeconfig context's namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Kubeconfig context to use.
        #[arg(long, env = "KUBE_CONTEXT")]
        context: Option<String>,
    },
    /// One screen about an instance: phase and reason, the primary, each pod's role, link, lag and server, the
    /// last backup, and the newest Events.
    Status {
        /// The RedisInstance.
        name: String,
        /// Namespace of the instance (default: the kubeconfig context's namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Kubeconfig context to use.
        #[arg(long, env = "KUBE_CONTEXT")]
        context: Option<String>,
    },
    /// Print a `redis-cli` command that connects to an instance (the password in `REDISCLI_AUTH`), or its URI,
    /// from the `NAME-connection` Secret; the host is the `NAME` Service's DNS name (from inside the cluster).
    Connect {
        /// The RedisInstance.
        name: String,
        /// The read-only replicas (`NAME-replicas`) instead of the primary.
        #[arg(long)]
        read: bool,
        /// Print the URI instead of a command.
        #[arg(long)]
        uri: bool,
        /// Namespace of the instance (default: the kubeconfig context's namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Kubeconfig context to use.
        #[arg(long, env = "KUBE_CONTEXT")]
        context: Option<String>,
    },
    /// Take a base backup of an instance now: creates a `RedisBackup` (named `NAME-<UTC time>` unless
    /// `--backup-name` is given) and prints its name; the instance's `spec.backup` says where it goes.
    Backup {
        /// The RedisInstance.
        name: String,
        /// The RedisBackup's name.
        #[arg(long)]
        backup_name: Option<String>,
        /// Namespace of the instance (default: the kubeconfig context's namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Kubeconfig context to use.
        #[arg(long, env = "KUBE_CONTEXT")]
        context: Option<String>,
    },
    /// Print (or with `--apply`, create) a new RedisInstance that starts from a completed backup: the spec of
    /// the instance backed up, named `--to`, with `spec.bootstrap.fromBackup` naming the backup.
    Restore {
        /// The RedisBackup (`Completed`).
        backup: String,
        /// The new instance's name.
        #[arg(long)]
        to: String,
        /// Its number of pods (default: the backed-up instance's).
        #[arg(long)]
        replicas: Option<i32>,
        /// Create it instead of printing it.
        #[arg(long)]
        apply: bool,
        /// Namespace of the backup and of the new instance (default: the kubeconfig context's namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Kubeconfig context to use.
        #[arg(long, env = "KUBE_CONTEXT")]
        context: Option<String>,
    },
    /// Move every RedisInstance and RedisBackup of the API group used before 0.2 (`redis.github.com/v1`) to
    /// `redis-operator.github.io/v1beta1`: copies spec and status, re-points the children's owner references, and
    /// deletes the old objects without deleting anything they owned. Run it with the operator stopped; running it
    /// again resumes or finds nothing to do.
    MigrateApi {
        /// Only this namespace (default: all namespaces).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Read only: print what would change.
        #[arg(long)]
        dry_run: bool,
        /// Kubeconfig context to use.
        #[arg(long, env = "KUBE_CONTEXT")]
        context: Option<String>,
    },
}

/// The instance `to` that starts from `backup` of `source`: `source`'s spec (`replicas` if given), with
/// `spec.bootstrap.fromBackup`.
pub fn restore_manifest(
    source: &crate::api::RedisInstance,
    backup: &str,
    to: &str,
    replicas: Option<i32>,
) -> crate::api::RedisInstance {
    let mut spec = source.spec.clone();
    spec.bootstrap = Some(crate::api::BootstrapSpec {
        from_backup: Some(crate::api::FromBackup {
            name: backup.to_string(),
        }),
        from_archive: None,
    });
    if let Some(replicas) = replicas {
        spec.replicas = replicas;
    }
    let mut copy = crate::api::RedisInstance::new(to, spec);
    copy.metadata.namespace = source.metadata.namespace.clone();
    copy
}

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of `redis-operator run`; every flag can also be set by its environment variable.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Only manage RedisInstances in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `redis_operator=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Kubeconfig context to use (default: the current context, or the in-cluster config).
    #[arg(long, env = "KUBE_CONTEXT")]
    pub context: Option<String>,
    /// Seconds between periodic resyncs of a healthy instance.
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Reconciles running at once, each of a different instance (1 to 1000). Bounds the operator's memory and
    /// its load on the API server when many instances change at once.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_concurrent_reconciles: u16,
    /// Controller name reported in Events.
    #[arg(long, env = "REPORTER", default_value = "redis-operator")]
    pub reporter: String,
    /// Reconcile only while holding the leader-election Lease; `--leader-election=false` reconciles at once.
    #[arg(
        long,
        env = "LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "redis-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else the watched namespace, else `default`).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds the Lease stays valid after a renewal: how long a standby waits when the leader dies.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    pub lease_duration_seconds: u64,
    /// Holder identity in the Lease, unique per process (default: `<hostname>-<pid>`).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Namespace the operator's pod runs in (downward API); the default namespace of the Lease, and where the
    /// instances' NetworkPolicies let the operator's pods reach Redis from.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Who orders a rolling update's pod replacements (`statefulset` only to compare with the operator's order).
    #[arg(
        long,
        env = "REDIS_OPERATOR_ROLLOUT",
        value_enum,
        default_value = "primary-last"
    )]
    pub rollout: RolloutMode,
    /// Watch Nodes, to switch the primary over before a drain of its cordoned node (default: only when managing
    /// every namespace; a namespaced install has no cluster-wide permission).
    #[arg(long, env = "WATCH_NODES", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub watch_nodes: Option<bool>,
}

impl RunArgs {
    /// The Lease this process competes for.
    pub fn lease_settings(&self) -> LeaseSettings {
        LeaseSettings {
            name: self.lease_name.clone(),
            namespace: leader::lease_namespace(
                self.lease_namespace.as_deref(),
                self.pod_namespace.as_deref(),
                self.namespace.as_deref(),
            ),
            identity: leader::identity(
                self.identity.as_deref(),
                &leader::hostname(),
                std::process::id(),
            ),
            duration_seconds: self.lease_duration_seconds,
        }
    }
}

/// kube's client logs a whole response body at WARN when it cannot decode it (a list of every instance, with
/// their configuration and passwords); its own messages are capped at ERROR whatever the log level asks.
const QUIET_CLIENT: &str = "kube_client::client=error";

/// How long a graceful shutdown may take after SIGTERM before the process exits anyway: well inside the
/// Deployment's 60 s grace period, longer than a lease release (5 s) and most reconciles.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

fn init_tracing(args: &RunArgs) {
    let filter = EnvFilter::try_new(format!("{},{QUIET_CLIENT}", args.log_level))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_CLIENT}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn client(context: Option<&str>) -> Result<Client, Box<dyn std::error::Error>> {
    Ok(Client::try_from(config(context).await?)?)
}

/// The clients of the controller: requests retry as kube's client does (429/503/504, honouring `Retry-After`);
/// watches do not, since each backs off on its own (see `observe::watch`), and an API server that is starting
/// answers `503 Retry-After: 5` for a while, which kept the caches stale for seconds after it served again.
async fn clients(context: Option<&str>) -> Result<controller::Clients, Box<dyn std::error::Error>> {
    let config = config(context).await?;
    let mut watch_config = config.clone();
    watch_config.default_retry = false;
    Ok(controller::Clients {
        requests: Client::try_from(config)?,
        watches: Client::try_from(watch_config)?,
    })
}

async fn config(context: Option<&str>) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(match context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.to_string()),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(Kubeconfig::read()?, &options).await?
        }
        None => Config::infer().await?,
    })
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn termination_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Runs the operator until SIGTERM/SIGINT: the controller runs at once, or with leader election only while this
/// process holds the Lease (see [`leader`]). Ends with an error when leadership is lost.
pub async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    init_tracing(&args);
    // Kept Redis connections are open files (see `redis::pool`): the soft limit is raised to the hard one, as
    // the Go runtime does for every Kubernetes component.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(error) => tracing::warn!(%error, "the open-file limit could not be raised"),
    }
    let clients = clients(args.context.as_deref()).await?;
    let client = clients.requests.clone();
    let metrics = Arc::new(Metrics::default());
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(crate::runtime::http::serve(
        args.metrics_address,
        metrics.clone(),
        ready_rx,
    ));
    let settings = Settings {
        namespace: args.namespace.clone(),
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        reporter: args.reporter.clone(),
        rollout: args.rollout,
        watch_nodes: args.watch_nodes.unwrap_or(args.namespace.is_none()),
        operator_namespace: args.pod_namespace.clone(),
        concurrency: args.max_concurrent_reconciles,
    };
    let operate = async {
        if !args.leader_election {
            controller::run(
                clients,
                settings,
                metrics,
                ready_tx,
                leader::Leadership::unconditional(),
                termination_signal(),
            )
            .await;
            return Ok(());
        }
        let election = Election::new(client.clone(), args.lease_settings());
        leader::run_elected(
            election,
            ready_tx,
            termination_signal(),
            |ready, stop, leadership| {
                controller::run(clients, settings, metrics, ready, leadership, stop.wait())
            },
        )
        .await
    };
    // Whatever state the controller is in (e.g. a cache that never syncs keeps reconciles waiting, and a
    // graceful shutdown waits for them), SIGTERM ends the process within the deadline.
    let deadline = async {
        termination_signal().await;
        tokio::time::sleep(SHUTDOWN_DEADLINE).await;
    };
    tokio::select! {
        operated = operate => operated?,
        served = http => served??,
        () = deadline => {
            tracing::warn!(deadline = ?SHUTDOWN_DEADLINE, "graceful shutdown did not finish in time; exiting");
        }
    }
    Ok(())
}

/// Executes a parsed command line.
pub async fn execute(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Crd { backup } => {
            if backup {
                print!("{}", crate::api::backup_crd_yaml());
            } else {
                print!("{}", crate::api::crd_yaml());
            }
            Ok(())
        }
        Command::Fsm { format } => {
            if format == "doc" {
                print!("{}", crate::events::fsm_docs_page());
            } else {
                print!("{}", redis_fsm::render(format.parse()?));
            }
            Ok(())
        }
        Command::Switchover {
            name,
            to,
            namespace,
            context,
        } => {
            let client = client(context.as_deref()).await?;
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            crate::converge::switchover::request(&client, &namespace, &name, &to).await?;
            println!(
                "switchover of {namespace}/{name} to {to} requested; watch `kubectl get redisinstance {name} -n \
                 {namespace}` (phase Updating, reason Switchover) and its Events"
            );
            Ok(())
        }
        Command::Status {
            name,
            namespace,
            context,
        } => {
            let client = client(context.as_deref()).await?;
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            let instances: kube::Api<crate::api::RedisInstance> =
                kube::Api::namespaced(client.clone(), &namespace);
            let ri = instances.get(&name).await?;
            let events: kube::Api<k8s_openapi::api::events::v1::Event> =
                kube::Api::namespaced(client, &namespace);
            let params = kube::api::ListParams::default().fields(&format!(
                "regarding.kind=RedisInstance,regarding.name={name}"
            ));
            let events = events.list(&params).await?.items;
            print!("{}", crate::plugin::status_report(&ri, &events));
            Ok(())
        }
        Command::Connect {
            name,
            read,
            uri,
            namespace,
            context,
        } => {
            let client = client(context.as_deref()).await?;
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(client, &namespace);
            let secret_name = crate::names::connection_secret_name(&name);
            let secret = secrets.get_opt(&secret_name).await?.ok_or_else(|| {
                format!(
                    "Secret {namespace}/{secret_name} does not exist (yet): the operator writes it once the \
                     instance {name} serves with its password in force"
                )
            })?;
            let entries = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            let line = crate::plugin::connect_command(&entries, read, uri)
                .ok_or_else(|| format!("Secret {namespace}/{secret_name} lacks host or port"))?;
            println!("{line}");
            Ok(())
        }
        Command::Backup {
            name,
            backup_name,
            namespace,
            context,
        } => {
            let client = client(context.as_deref()).await?;
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            let backup_name = backup_name.unwrap_or_else(|| {
                let at = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S");
                format!("{name}-{at}")
            });
            let backups: kube::Api<crate::api::RedisBackup> =
                kube::Api::namespaced(client.clone(), &namespace);
            let instances: kube::Api<crate::api::RedisInstance> =
                kube::Api::namespaced(client, &namespace);
            instances.get(&name).await?;
            backups
                .create(
                    &kube::api::PostParams::default(),
                    &crate::api::RedisBackup::new(
                        &backup_name,
                        crate::api::RedisBackupSpec {
                            instance: name.clone(),
                        },
                    ),
                )
                .await?;
            println!(
                "{backup_name}: backup of {namespace}/{name} requested; watch `kubectl get redisbackup {backup_name} \
                 -n {namespace}`"
            );
            Ok(())
        }
        Command::MigrateApi {
            namespace,
            dry_run,
            context,
        } => {
            let client = client(context.as_deref()).await?;
            let report = crate::migrate::migrate(&client, namespace.as_deref(), dry_run)
                .await
                .map_err(|err| err.to_string())?;
            for line in report.lines {
                println!("{line}");
            }
            Ok(())
        }
        Command::Restore {
            backup,
            to,
            replicas,
            apply,
            namespace,
            context,
        } => {
            let client = client(context.as_deref()).await?;
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            let backups: kube::Api<crate::api::RedisBackup> =
                kube::Api::namespaced(client.clone(), &namespace);
            let found = backups.get(&backup).await?;
            let phase = found
                .status
                .as_ref()
                .map(|s| s.phase.as_str())
                .unwrap_or_default();
            if phase != crate::backup::controller::COMPLETED {
                return Err(format!(
                    "RedisBackup {namespace}/{backup} is not Completed (phase {phase:?}): only a completed backup \
                     can be restored"
                )
                .into());
            }
            let instances: kube::Api<crate::api::RedisInstance> =
                kube::Api::namespaced(client, &namespace);
            let source = instances.get_opt(&found.spec.instance).await?.ok_or_else(|| {
                format!(
                    "RedisInstance {namespace}/{} (the instance backed up) no longer exists: write the new instance's \
                     manifest with spec.bootstrap.fromBackup.name: {backup} and a spec.backup.s3 that reaches the \
                     bucket",
                    found.spec.instance
                )
            })?;
            let copy = restore_manifest(&source, &backup, &to, replicas);
            if apply {
                instances
                    .create(&kube::api::PostParams::default(), &copy)
                    .await?;
                println!(
                    "{to}: created from RedisBackup {backup}; watch `kubectl get redisinstance {to} -n {namespace}` \
                     (status.restore records the restore)"
                );
            } else {
                print!("{}", serde_yaml::to_string(&copy)?);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_manifest_is_the_backed_up_spec_bootstrapped_from_the_backup() {
        let mut spec = crate::api::RedisInstanceSpec {
            replicas: 3,
            ..Default::default()
        };
        spec.config.insert("maxmemory".into(), "64mb".into());
        let mut source = crate::api::RedisInstance::new("cache", spec.clone());
        source.metadata.namespace = Some("apps".into());
        source.metadata.uid = Some("u".into());
        source.metadata.resource_version = Some("9".into());
        let copy = restore_manifest(&source, "cache-nightly", "cache-copy", None);
        assert_eq!(copy.metadata.name.as_deref(), Some("cache-copy"));
        assert_eq!(copy.metadata.namespace.as_deref(), Some("apps"));
        assert!(copy.metadata.uid.is_none() && copy.metadata.resource_version.is_none());
        assert_eq!(copy.spec.config, spec.config);
        assert_eq!(copy.spec.replicas, 3);
        assert_eq!(
            copy.spec
                .bootstrap
                .as_ref()
                .and_then(|b| b.from_backup.as_ref())
                .map(|f| f.name.as_str()),
            Some("cache-nightly")
        );
        assert_eq!(
            restore_manifest(&source, "b", "c", Some(1)).spec.replicas,
            1
        );
        assert!(copy.status.is_none());
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let argv = ["redis-operator", "run"].iter().chain(extra);
        match Cli::try_parse_from(argv).expect("arguments parse").command {
            Command::Run(args) => *args,
            other => panic!("not a run command: {other:?}"),
        }
    }

    #[test]
    fn leader_election_is_on_unless_turned_off() {
        assert!(run_args(&[]).leader_election);
        assert!(run_args(&["--leader-election"]).leader_election);
        assert!(run_args(&["--leader-election=true"]).leader_election);
        assert!(!run_args(&["--leader-election=false"]).leader_election);
    }

    #[test]
    fn lease_settings_follow_the_flags() {
        let args = run_args(&["--namespace", "team-a"]);
        assert_eq!(args.lease_duration_seconds, 15);
        let lease = args.lease_settings();
        assert_eq!(lease.name, "redis-operator");
        assert_eq!(lease.namespace, "team-a");
        assert!(lease
            .identity
            .ends_with(&format!("-{}", std::process::id())));

        let lease = run_args(&[
            "--namespace",
            "team-a",
            "--pod-namespace",
            "redis-operator",
            "--identity",
            "pod-0",
            "--lease-name",
            "other",
            "--lease-duration-seconds",
            "30",
        ])
        .lease_settings();
        assert_eq!(
            lease,
            LeaseSettings {
                name: "other".into(),
                namespace: "redis-operator".into(),
                identity: "pod-0".into(),
                duration_seconds: 30,
            }
        );
    }

    #[test]
    fn lease_duration_must_leave_room_to_renew() {
        let argv = ["redis-operator", "run", "--lease-duration-seconds", "1"];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
