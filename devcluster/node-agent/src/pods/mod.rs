//! Plays the kubelet for the pods bound to this node: one [`supervisor`] task per pod, fed by a watch.

pub mod env;
pub mod process;
pub mod refresh;
pub mod sidecar;
pub mod status;
pub mod supervisor;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::Result;
use crate::ip_pool::IpPool;

/// What every pod supervisor shares.
pub struct Context {
    pub client: Client,
    pub config: Config,
    /// Where pods reach the API server (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_host: String,
    pub api_port: u16,
    ips: Mutex<IpPool>,
}

impl Context {
    pub fn new(client: Client, config: Config, api_host: String, api_port: u16) -> Result<Self> {
        let ips = Mutex::new(IpPool::new(&config.pod_cidr_prefix)?);
        Ok(Self {
            client,
            config,
            api_host,
            api_port,
            ips,
        })
    }

    /// The pod's address: the one it had before when still free, else a new one.
    pub fn pod_ip(&self, uid: &str, previous: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = previous {
            if ips.reserve(uid, ip) {
                return Ok(ip);
            }
        }
        Ok(ips.allocate(uid)?)
    }

    pub fn release_ip(&self, uid: &str) {
        self.ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(uid);
    }
}

/// Watches the pods bound to this node and keeps one supervisor per pod until `shutdown` turns true; then
/// waits (bounded) for the supervisors to stop their processes. Call [`process::kill_leftovers`] first.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    let mut supervised: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Init)) => relisted = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.uid()) {
                        seen.insert(uid);
                    }
                    update(&ctx, &mut supervised, &mut tasks, &shutdown, pod);
                }
                Some(Ok(Event::InitDone)) => {
                    // Pods that vanished while the watch was down.
                    let seen = relisted.take().unwrap_or_default();
                    supervised.retain(|uid, sender| {
                        let keep = seen.contains(uid);
                        if !keep {
                            sender.send_replace(None);
                        }
                        keep
                    });
                    remove_orphan_dirs(&ctx.config.state_dir.join("pods"), &supervised);
                }
                Some(Ok(Event::Apply(pod))) => update(&ctx, &mut supervised, &mut tasks, &shutdown, pod),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(sender) = pod.uid().and_then(|uid| supervised.remove(&uid)) {
                        sender.send_replace(None);
                    }
                }
                Some(Err(e)) => warn!(error = %e, "pod watch failed; retrying"),
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    info!(pods = tasks.len(), "stopping pod processes");
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(20), drain)
        .await
        .is_err()
    {
        warn!("some pods did not stop in time");
    }
}

/// Pod directories of pods that no longer exist (deleted while the agent was down).
fn remove_orphan_dirs(
    pods_dir: &std::path::Path,
    supervised: &HashMap<String, watch::Sender<Option<Pod>>>,
) {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if !supervised.contains_key(&uid) {
            info!(%uid, "removing the directory of a pod that no longer exists");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                warn!(%uid, error = %e, "cannot remove the pod directory");
            }
        }
    }
}

fn update(
    ctx: &Arc<Context>,
    supervised: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    tasks: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
    pod: Pod,
) {
    let Some(uid) = pod.uid() else {
        warn!(pod = %pod.name_any(), "pod without uid; skipped");
        return;
    };
    if let Some(sender) = supervised.get(&uid) {
        sender.send_replace(Some(pod));
        return;
    }
    let (sender, receiver) = watch::channel(Some(pod));
    supervised.insert(uid, sender);
    tasks.spawn(supervisor::supervise(
        ctx.clone(),
        receiver,
        shutdown.clone(),
    ));
}
