//! The devcluster node agent: registers a Node and plays kubelet, scheduler and storage provisioner for it,
//! running each pod's first container as a real process on its own loopback address.
//!
//! Module map:
//! - [`node`]: Node registration and heartbeat; [`binder`]: binds unscheduled pods to the node.
//! - [`pods`]: one supervisor per pod (volumes and their refresh, env, process, readiness, status, deletion).
//! - [`storage`]: StorageClasses, hostPath provisioning and expansion.
//! - Pure helpers: [`expand`], [`ip_pool`], [`resp`], [`backoff`], [`quantity`], [`config`].

pub mod backoff;
pub mod binder;
pub mod config;
pub mod error;
pub mod expand;
pub mod ip_pool;
mod level;
pub mod node;
pub mod pods;
pub mod quantity;
pub mod resp;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, PodMode};

/// Written into the state directory (with the agent's pid) once the node is registered and served.
pub const READY_FILE: &str = "node-agent.ready";

/// Serves the node until SIGTERM or SIGINT, then stops every pod process it started.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let kube_config = kube::Config::infer()
        .await
        .context("loading the kubeconfig")?;
    let api_host = kube_config
        .cluster_url
        .host()
        .unwrap_or("127.0.0.1")
        .to_string();
    let api_port = kube_config.cluster_url.port_u16().unwrap_or(443);
    let client = Client::try_from(kube_config).context("building the API client")?;
    for dir in ["pods", "volumes"] {
        let path = config.state_dir.join(dir);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    retry("creating the StorageClasses", || {
        storage::classes::ensure(&client)
    })
    .await;
    info!(node = %config.node_name, mode = ?config.pod_mode, "serving the node");
    let storage = tokio::spawn(storage::run(
        client.clone(),
        config.state_dir.join("volumes"),
    ));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (background, pods) = if config.pod_mode == PodMode::StorageOnly {
        // A real kubelet and scheduler serve the node: only storage is ours.
        (vec![storage], None)
    } else {
        retry("registering the node", || {
            node::register(&client, &config.node_name)
        })
        .await;
        pods::process::kill_leftovers(&config.state_dir.join("pods"));
        let ctx = Arc::new(pods::Context::new(
            client.clone(),
            config.clone(),
            api_host,
            api_port,
        )?);
        let background = vec![
            storage,
            tokio::spawn(node::heartbeat(client.clone(), config.node_name.clone())),
            tokio::spawn(binder::run(client.clone(), config.node_name.clone())),
        ];
        (background, Some(tokio::spawn(pods::run(ctx, shutdown_rx))))
    };
    // Tells whoever started the agent that the node is served and no earlier process is left.
    let ready_file = config.state_dir.join(READY_FILE);
    std::fs::write(&ready_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", ready_file.display()))?;

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => info!("SIGINT: shutting down"),
    }
    for task in &background {
        task.abort();
    }
    shutdown.send_replace(true);
    if let Some(pods) = pods {
        if let Err(e) = pods.await {
            warn!(error = %e, "pod manager ended abnormally");
        }
    }
    Ok(())
}

/// Retries a start-up step every two seconds until it succeeds (the API server may still be starting).
async fn retry<F, Fut>(what: &str, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = error::Result<()>>,
{
    loop {
        match step().await {
            Ok(()) => return,
            Err(e) => warn!(error = %e, "{what} failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
