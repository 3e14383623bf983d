//! Keeps the configMap, secret, downwardAPI and projected volumes of a running pod in step with their sources,
//! as the kubelet does: a rotated password or a renewed certificate reaches the running process as new file
//! content in the same place, without a container restart.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::pods::volumes::{self, Tokens};

/// Refreshes one pod's volumes; remembers which ones failed so a lasting problem is logged once.
#[derive(Debug, Default)]
pub struct VolumeRefresh {
    failing: HashSet<String>,
}

impl VolumeRefresh {
    /// Rewrites the files of every volume under `pod_dir/volumes` whose wanted content differs from what is on
    /// disk. One GET per referenced ConfigMap or Secret; a ServiceAccount token already written is kept. A
    /// missing source or an API error leaves the volume as it is (the kubelet keeps the old files too).
    pub async fn run(&mut self, client: &Client, pod: &Pod, pod_dir: &Path, pod_ip: Ipv4Addr) {
        let namespace = pod.namespace().unwrap_or_default();
        let name = format!("{namespace}/{}", pod.name_any());
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let dir = volumes::own_dir(pod_dir, &volume.name);
            if !dir.is_dir() {
                // Not materialised by the agent (claim, hostPath) or not yet.
                continue;
            }
            let tokens = Tokens::Keep(&dir);
            let outcome =
                match volumes::projection(client, &namespace, pod, pod_ip, volume, tokens).await {
                    Ok(Some(files)) => files.sync(&dir),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                };
            match outcome {
                Ok(changes) => {
                    if self.failing.remove(&volume.name) {
                        info!(pod = %name, volume = %volume.name, "volume refresh works again");
                    }
                    if !changes.is_empty() {
                        info!(
                            pod = %name,
                            volume = %volume.name,
                            written = changes.written,
                            removed = changes.removed,
                            "volume content refreshed"
                        );
                    }
                }
                Err(e) if self.failing.insert(volume.name.clone()) => {
                    warn!(pod = %name, volume = %volume.name, error = %e, "volume refresh failed; keeping the old files");
                }
                Err(e) => {
                    debug!(pod = %name, volume = %volume.name, error = %e, "volume refresh still failing");
                }
            }
        }
    }
}
