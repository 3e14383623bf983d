//! What every container of the pod shares: the Redis container's name, the restricted security context, and
//! the readiness probe's script (which authentication and TLS wrap).

use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

use crate::desired::redis_conf::REDIS_PORT;

/// Name of the Redis container.
pub const CONTAINER: &str = "redis";

/// The security context of every container the operator runs: no privilege escalation, a read-only root
/// filesystem, all capabilities dropped.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The readiness probe's shell script, calling Redis with `cli` (`redis-cli` and its authentication options).
///
/// A server that answers `BUSY` (a script runs) or `max number of clients reached` is alive and keeps the
/// readiness it had: the operator decides about it (it kills the script, or shuts a server whose script wrote
/// down before a failover; it never fails over for full connection slots), and a pod that turned not Ready only
/// because its probe was refused would be failed over as not Ready once the script is killed.
pub fn readiness_script(cli: &str) -> String {
    format!(
        "r=$({cli} -h \"$POD_IP\" -p {REDIS_PORT} info replication 2>&1); case \"$r\" in \
         *role:master*) exit 0 ;; *master_sync_in_progress:1*) exit 1 ;; \
         *master_link_status:up*) exit 0 ;; *BUSY*|*\"max number of clients reached\"*) exit 0 ;; \
         esac; exit 1"
    )
}

/// The server's and its client's program names in the image: `redis-server` and `redis-cli`, or for a Valkey
/// image ([`redis_fsm::image_server`]) `valkey-server` and `valkey-cli` (a Valkey image need not carry the
/// `redis-*` names).
pub fn programs(image: &str) -> (&'static str, &'static str) {
    match redis_fsm::image_server(image).0 {
        redis_fsm::ServerName::Redis => ("redis-server", "redis-cli"),
        redis_fsm::ServerName::Valkey => ("valkey-server", "valkey-cli"),
    }
}

/// Runs the Redis container's server and probe with the programs of its image (see [`programs`]), once every
/// other layer (authentication, TLS) shaped them. A Redis image keeps the template as it always was.
pub fn use_image_programs(container: &mut k8s_openapi::api::core::v1::Container) {
    let (server, cli) = programs(container.image.as_deref().unwrap_or_default());
    if server == "redis-server" {
        return;
    }
    container.command = Some(vec![server.to_string()]);
    let script = container
        .readiness_probe
        .as_mut()
        .and_then(|p| p.exec.as_mut())
        .and_then(|e| e.command.as_mut())
        .and_then(|c| c.last_mut());
    if let Some(script) = script {
        *script = script.replace("redis-cli ", &format!("{cli} "));
    }
}
