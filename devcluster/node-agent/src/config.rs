//! Command-line flags (with environment fallbacks) of the node agent.

use std::path::PathBuf;
use std::time::Duration;

/// How pods are "run".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodMode {
    /// Start the pod's first container as a real process.
    Process,
    /// Report pods Running and Ready at once without starting anything (large-N benchmarks).
    Simulated,
    /// Serve no node and run no pod: only the StorageClasses, provisioning and expansion, beside a real
    /// kubelet and scheduler (the devcluster's real node).
    StorageOnly,
}

/// Settings of one agent run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Name of the Node object the agent registers and serves.
    pub node_name: String,
    /// Where pod directories (`pods/<uid>`) and provisioned volumes (`volumes/<pv>`) live.
    pub state_dir: PathBuf,
    /// `127.N`: pods get addresses from `127.N.0.0/16`.
    pub pod_cidr_prefix: String,
    /// First crash-loop restart delay; doubles up to five minutes.
    pub restart_backoff: Duration,
    /// Real processes or simulated pods.
    pub pod_mode: PodMode,
    /// How often a running pod's configMap, secret, downwardAPI and projected volumes are brought up to date.
    pub volume_refresh: Duration,
    /// Run a pod's `exec` readiness probe (the default), or check it with an in-process `PING` at the probe's
    /// period instead (`--readiness ping`: a large-N benchmark, where forking a thousand probes saturates the
    /// host).
    pub exec_probes: bool,
}

const USAGE: &str =
    "usage: node-agent [--node-name NAME] [--state-dir DIR] [--pod-cidr-prefix 127.N] \
[--restart-backoff-seconds SECS] [--pod-mode process|simulated|storage-only] [--volume-refresh-seconds SECS] \
[--readiness exec|ping]
  The API server comes from $KUBECONFIG (or in-cluster config). Environment fallbacks:
  NODE_AGENT_NODE_NAME, NODE_AGENT_STATE_DIR, NODE_AGENT_POD_CIDR_PREFIX,
  NODE_AGENT_RESTART_BACKOFF_SECONDS, NODE_AGENT_POD_MODE, NODE_AGENT_VOLUME_REFRESH_SECONDS.";

/// A flag problem (or a request for help), with the usage text attached.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_help() {
            f.write_str(USAGE)
        } else {
            write!(f, "{}\n{USAGE}", self.message)
        }
    }
}

impl std::error::Error for UsageError {}

impl UsageError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Whether the user asked for help rather than made a mistake.
    pub fn is_help(&self) -> bool {
        self.message == "help"
    }
}

impl Config {
    /// Parses `args` (without the program name); `env` looks up environment fallbacks.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, UsageError> {
        let mut node_name = env("NODE_AGENT_NODE_NAME");
        let mut state_dir = env("NODE_AGENT_STATE_DIR");
        let mut prefix = env("NODE_AGENT_POD_CIDR_PREFIX");
        let mut backoff = env("NODE_AGENT_RESTART_BACKOFF_SECONDS");
        let mut mode = env("NODE_AGENT_POD_MODE");
        let mut refresh = env("NODE_AGENT_VOLUME_REFRESH_SECONDS");
        let mut readiness = env("NODE_AGENT_READINESS");
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Err(UsageError::new("help"));
            }
            let slot = match flag.as_str() {
                "--node-name" => &mut node_name,
                "--state-dir" => &mut state_dir,
                "--pod-cidr-prefix" => &mut prefix,
                "--restart-backoff-seconds" => &mut backoff,
                "--pod-mode" => &mut mode,
                "--volume-refresh-seconds" => &mut refresh,
                "--readiness" => &mut readiness,
                _ => return Err(UsageError::new(format!("unknown argument {arg:?}"))),
            };
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| UsageError::new(format!("{flag} needs a value")))?,
            };
            *slot = Some(value);
        }
        let restart_backoff = seconds(backoff, "--restart-backoff-seconds", 10)?;
        // Shorter than the kubelet's sync period (about a minute), so tests see a rotation within seconds.
        let volume_refresh = seconds(refresh, "--volume-refresh-seconds", 2)?;
        let pod_mode = match mode.as_deref() {
            None | Some("process") => PodMode::Process,
            Some("simulated") => PodMode::Simulated,
            Some("storage-only") => PodMode::StorageOnly,
            Some(other) => return Err(UsageError::new(format!("bad --pod-mode {other:?}"))),
        };
        let exec_probes = match readiness.as_deref() {
            None | Some("exec") => true,
            Some("ping") => false,
            Some(other) => return Err(UsageError::new(format!("bad --readiness {other:?}"))),
        };
        Ok(Self {
            node_name: node_name.unwrap_or_else(|| "devcluster".to_string()),
            state_dir: PathBuf::from(state_dir.unwrap_or_else(|| ".devcluster".to_string())),
            pod_cidr_prefix: prefix.unwrap_or_else(|| "127.1".to_string()),
            restart_backoff,
            pod_mode,
            volume_refresh,
            exec_probes,
        })
    }
}

/// A positive number of seconds (fractions allowed), or `default` when unset.
fn seconds(text: Option<String>, flag: &str, default: u64) -> Result<Duration, UsageError> {
    match text {
        None => Ok(Duration::from_secs(default)),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| UsageError::new(format!("bad {flag} {text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, UsageError> {
        Config::parse(args.iter().map(|s| s.to_string()), |_| None)
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.node_name, "devcluster");
        assert_eq!(config.restart_backoff, Duration::from_secs(10));
        assert_eq!(config.pod_mode, PodMode::Process);
        assert_eq!(config.pod_cidr_prefix, "127.1");
        assert_eq!(config.volume_refresh, Duration::from_secs(2));
        assert!(config.exec_probes);
    }

    #[test]
    fn flags_in_both_spellings() {
        let config = parse(&[
            "--node-name",
            "n2",
            "--pod-mode=simulated",
            "--restart-backoff-seconds",
            "0.5",
            "--volume-refresh-seconds=0.25",
            "--readiness=ping",
        ])
        .unwrap();
        assert!(!config.exec_probes);
        assert_eq!(config.node_name, "n2");
        assert_eq!(config.pod_mode, PodMode::Simulated);
        assert_eq!(config.restart_backoff, Duration::from_millis(500));
        assert_eq!(config.volume_refresh, Duration::from_millis(250));
        assert_eq!(
            parse(&["--pod-mode", "storage-only"]).unwrap().pod_mode,
            PodMode::StorageOnly
        );
        assert!(parse(&["--pod-mode", "kubelet"]).is_err());
    }

    #[test]
    fn flags_override_environment() {
        let env = |name: &str| (name == "NODE_AGENT_NODE_NAME").then(|| "from-env".to_string());
        let config = Config::parse(Vec::new(), env).unwrap();
        assert_eq!(config.node_name, "from-env");
        let config = Config::parse(vec!["--node-name=flag".to_string()], env).unwrap();
        assert_eq!(config.node_name, "flag");
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(parse(&["--pod-mode", "container"]).is_err());
        assert!(parse(&["--restart-backoff-seconds", "-1"]).is_err());
        assert!(parse(&["--volume-refresh-seconds", "0"]).is_err());
        assert!(parse(&["--volume-refresh-seconds", "soon"]).is_err());
        assert!(parse(&["--readiness", "tcp"]).is_err());
        assert!(parse(&["--node-name"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--help"]).unwrap_err().is_help());
    }
}
