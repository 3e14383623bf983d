//! Plays the storage provisioner and resizer for the devcluster StorageClasses: hostPath volumes under
//! `<state dir>/volumes`.

pub mod classes;
pub mod expander;
pub mod provisioner;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::level;

/// The provisioner name the StorageClasses carry.
pub const PROVISIONER: &str = "devcluster.local/hostpath";

/// Provisions and expands claims of the served classes until the task is dropped.
pub async fn run(client: Client, volumes_dir: PathBuf) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    level::run(
        claims,
        watcher::Config::default(),
        Duration::from_secs(5),
        |pvc| {
            let client = client.clone();
            let volumes_dir = volumes_dir.clone();
            async move {
                provisioner::provision(&client, &volumes_dir, &pvc).await;
                expander::expand(&client, &pvc).await;
            }
        },
    )
    .await;
}
