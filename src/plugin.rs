//! What `kubectl redis status` and `kubectl redis connect` print (the operator's binary installed as
//! `kubectl-redis` is a kubectl plugin): pure functions of what they read, so the output is tested without a
//! cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;

use crate::api::RedisInstance;

/// How many of the newest Events `status` shows.
pub const EVENTS_SHOWN: usize = 8;

/// One screen about an instance: phase and why, the primary, each pod (role, label, link, lag, server), the
/// last backup when there are backups, and the newest Events.
pub fn status_report(ri: &RedisInstance, events: &[Event]) -> String {
    let mut out = String::new();
    let status = ri.status.clone().unwrap_or_default();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "{}/{}: {} ({}), ready {}/{}",
            ri.namespace().unwrap_or_default(),
            ri.name_any(),
            status.status.as_str(),
            status.reason,
            status.ready_replicas,
            ri.spec.replicas
        ),
    );
    if !status.last_condition_message.is_empty() {
        line(&mut out, format!("  {}", status.last_condition_message));
    }
    line(
        &mut out,
        format!(
            "image {}; primary {}",
            ri.spec.image,
            status.current_primary.as_deref().unwrap_or("none")
        ),
    );
    if !status.pods.is_empty() {
        let rows: Vec<[String; 6]> = status
            .pods
            .iter()
            .map(|p| {
                [
                    p.name.clone(),
                    p.role.clone(),
                    p.label.clone(),
                    p.link.clone(),
                    p.lag_bytes.map(|l| l.to_string()).unwrap_or_default(),
                    if p.message.is_empty() {
                        p.server.clone()
                    } else {
                        format!("{} ({})", p.server, p.message)
                    },
                ]
            })
            .collect();
        let header = ["POD", "ROLE", "LABEL", "LINK", "LAG", "SERVER"].map(String::from);
        table(&mut out, &header, &rows);
    }
    if let Some(backup) = &status.backup {
        let last = match (&backup.last_completed, &backup.last_completed_at) {
            (Some(name), Some(at)) => format!("{name} at {at}"),
            (Some(name), None) => name.clone(),
            _ => "none completed".to_string(),
        };
        line(&mut out, format!("last backup: {last}"));
        if let Some(archive) = &backup.archive {
            line(
                &mut out,
                format!(
                    "archive: up to {}{}",
                    archive.archived_up_to.as_deref().unwrap_or("nothing yet"),
                    if archive.message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", archive.message)
                    }
                ),
            );
        }
    }
    let mut newest: Vec<&Event> = events.iter().collect();
    newest.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    newest.truncate(EVENTS_SHOWN);
    if !newest.is_empty() {
        line(&mut out, "events (newest first):".into());
        let rows: Vec<[String; 4]> = newest
            .iter()
            .map(|e| {
                [
                    event_time(e),
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let header = ["TIME", "TYPE", "REASON", "NOTE"].map(String::from);
        table(&mut out, &header, &rows);
    }
    out
}

fn event_time(event: &Event) -> String {
    event
        .event_time
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| {
            event
                .deprecated_last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default()
}

/// Rows under a header, columns padded to their widest cell (the last column is not padded).
fn table<const N: usize>(out: &mut String, header: &[String; N], rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i + 1 == N {
                    cell.clone()
                } else {
                    format!("{cell:width$}")
                }
            })
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
}

/// What `connect` prints from `NAME-connection`'s entries: a `redis-cli` command for the `NAME` Service (or the
/// read Service), the password passed in `REDISCLI_AUTH` (not on the command line, where `ps` shows it), or with
/// `uri` the URI alone. `None` when an entry it needs is missing.
pub fn connect_command(
    entries: &BTreeMap<String, Vec<u8>>,
    read: bool,
    uri: bool,
) -> Option<String> {
    let text = |key: &str| {
        entries
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    if uri {
        return text(if read { "readUri" } else { "uri" });
    }
    let host = text(if read { "readHost" } else { "host" })?;
    let port = text("port")?;
    let mut command = String::new();
    if let Some(password) = text("password") {
        command.push_str(&format!("REDISCLI_AUTH={} ", shell_quote(&password)));
    }
    command.push_str(&format!("redis-cli -h {host} -p {port}"));
    if let Some(user) = text("username") {
        command.push_str(&format!(" --user {user}"));
    }
    if text("ssl").as_deref() == Some("true") {
        command.push_str(" --tls --cacert ca.crt");
    }
    Some(command)
}

/// `text` in single quotes for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PodStatus, RedisInstanceStatus};
    use crate::desired::children::tests::instance;

    #[test]
    fn status_shows_the_phase_the_pods_and_the_newest_events() {
        let mut ri = instance("cache");
        ri.status = Some(RedisInstanceStatus {
            status: redis_fsm::Phase::Running,
            reason: "AllReplicasReady".into(),
            ready_replicas: 3,
            current_primary: Some("cache-0".into()),
            pods: vec![
                PodStatus {
                    name: "cache-0".into(),
                    role: "master".into(),
                    label: "primary".into(),
                    server: "redis 7.0.15".into(),
                    ..Default::default()
                },
                PodStatus {
                    name: "cache-1".into(),
                    role: "replica".into(),
                    label: "replica".into(),
                    link: "up".into(),
                    lag_bytes: Some(0),
                    server: "redis 7.0.15".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let event = |n: i64, reason: &str| Event {
            reason: Some(reason.into()),
            type_: Some("Normal".into()),
            note: Some(format!("note {n}")),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + n).unwrap(),
            )),
            ..Default::default()
        };
        let events: Vec<Event> = (0..10).map(|n| event(n, &format!("R{n}"))).collect();
        let report = status_report(&ri, &events);
        assert!(
            report.starts_with("ns/cache: Running (AllReplicasReady), ready 3/3\n"),
            "{report}"
        );
        assert!(
            report.contains("image redis:7.2; primary cache-0"),
            "{report}"
        );
        assert!(
            report.contains("  cache-1  replica  replica  up    0    redis 7.0.15"),
            "{report}"
        );
        // The newest eight, newest first.
        assert!(
            report.find("R9").unwrap() < report.find("R2").unwrap(),
            "{report}"
        );
        assert!(
            !report.contains("R1 ") && !report.contains("note 1\n"),
            "{report}"
        );
    }

    #[test]
    fn connect_prints_a_redis_cli_command_without_the_password_on_its_command_line() {
        let ri = instance("cache");
        let entries = crate::desired::connection::entries(&ri, Some(b"it's"));
        assert_eq!(
            connect_command(&entries, false, false).unwrap(),
            r"REDISCLI_AUTH='it'\''s' redis-cli -h cache.ns.svc -p 6379 --user default"
        );
        assert_eq!(
            connect_command(&entries, true, true).unwrap(),
            "redis://default:it%27s@cache-replicas.ns.svc:6379"
        );
        let open = crate::desired::connection::entries(&ri, None);
        assert_eq!(
            connect_command(&open, true, false).unwrap(),
            "redis-cli -h cache-replicas.ns.svc -p 6379"
        );
        assert_eq!(connect_command(&BTreeMap::new(), false, false), None);
    }
}
