//! Configuration changes without restarts: which `redis.conf` directives Redis changes at runtime
//! (`CONFIG SET`), what each pod must be sent to hold what `spec.config` says, and the pass that sends it.
//!
//! A directive is *live* when it is on the list of [`crate::desired::live_directives`] and its value is one
//! Redis parses the same way from the file and from `CONFIG SET` (checked by [`live_value`]). Live values are left out of the pod
//! template's config hash ([`crate::desired::redis_conf::restart_view`]), so changing them does not roll the pods:
//! the ConfigMap is updated (a restarted pod reads the new file) and [`converge`] sets them on every pod.
//! Adding or removing a live directive changes the hash (its *name* is part of it) and restarts the pods:
//! Redis has no "back to the default" command, and the defaults differ between images.
//!
//! Everything that decides is pure ([`live_value`], [`desired`], [`plan`], [`classify_config_change`],
//! [`pending_message`]); [`converge`] is the edge that asks every pod and sends what [`plan`] says.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use redis_fsm::Reason;

use crate::classify::change::template_config_hash;
use crate::converge::each_live_pod;
use crate::converge::topology::endpoint;
use crate::desired::children::{config_text, Desired};
use crate::desired::live_directives::{kind, live_value, unquoted, Kind};
use crate::desired::redis_conf::config_hash;
use crate::events::EventReason;
use crate::names::CONFIG_HASH_ANNOTATION;
use crate::redis::{Access, RedisNode};

/// One directive to hold at runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSetting {
    /// The directive, lower case (as `CONFIG GET` and `CONFIG SET` take it).
    pub directive: String,
    /// The value to send: as the file has it (`save` single-spaced).
    pub value: String,
    /// The value as `CONFIG GET` reports it.
    pub normalized: String,
}

/// The live settings among the rendered `(directive, value)` pairs of `redis.conf`.
pub fn desired(settings: &[(String, String)]) -> Vec<LiveSetting> {
    settings
        .iter()
        .filter_map(|(directive, value)| {
            let normalized = live_value(directive, value)?;
            // `CONFIG SET save` splits on single spaces (the file parser on any run of them): send it
            // single-spaced. Every other kind is sent as written.
            let value = if kind(directive) == Some(Kind::Save) {
                normalized.clone()
            } else {
                unquoted(value).to_string()
            };
            Some(LiveSetting {
                directive: directive.to_ascii_lowercase(),
                value,
                normalized,
            })
        })
        .collect()
}

/// What one pod's server reported for `directive`: its `CONFIG GET` value, `None` when it knows no such
/// parameter.
pub type Observed = BTreeMap<String, Option<String>>;

/// Whether `observed` (a `CONFIG GET` value) is what `setting` asks for.
pub fn holds(setting: &LiveSetting, observed: Option<&str>) -> bool {
    observed
        .and_then(|value| live_value(&setting.directive, value))
        .is_some_and(|value| value == setting.normalized)
}

/// The `CONFIG SET`s a pod needs: every desired setting it does not hold. A pod that holds everything needs
/// nothing, so a converged instance sends no command.
pub fn plan<'a>(desired: &'a [LiveSetting], observed: &Observed) -> Vec<&'a LiveSetting> {
    desired
        .iter()
        .filter(|setting| {
            !holds(
                setting,
                observed
                    .get(&setting.directive)
                    .cloned()
                    .flatten()
                    .as_deref(),
            )
        })
        .collect()
}

/// What changed between two rendered `redis.conf` files, by directive name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Directives whose new value is set at runtime.
    pub live: Vec<String>,
    /// Directives added, removed, or changed in a way that needs a restart.
    pub restart: Vec<String>,
}

impl ConfigChange {
    /// The Event reason and message that say which path the change took (`restarting`: the config hash of the
    /// pod template changed with it); `None` when no directive changed.
    pub fn event(&self, restarting: bool) -> Option<(EventReason, String)> {
        let also_live = if self.live.is_empty() {
            String::new()
        } else {
            format!("; {} also set at runtime", self.live.join(", "))
        };
        if restarting && !self.restart.is_empty() {
            Some((
                EventReason::ConfigNeedsRestart,
                format!(
                    "Pods restart for the configuration change: {} cannot be set at runtime{also_live}",
                    self.restart.join(", ")
                ),
            ))
        } else if restarting && !self.live.is_empty() {
            // The pods were started by a release that hashed the whole file (see `carry_legacy_hash`).
            Some((
                EventReason::ConfigNeedsRestart,
                format!(
                    "Pods restart once to take up the config hash of this operator release{also_live}"
                ),
            ))
        } else if !self.live.is_empty() {
            Some((
                EventReason::Status(Reason::ConfigAppliedLive),
                format!(
                    "Set at runtime on every pod, no restart: {}",
                    self.live.join(", ")
                ),
            ))
        } else {
            None
        }
    }
}

/// The `(directive, value)` pairs of a rendered `redis.conf` (comments skipped), directives lower case.
fn parse_rendered(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (directive, value) = line.split_once(' ').unwrap_or((line, ""));
            (directive.to_ascii_lowercase(), value.to_string())
        })
        .collect()
}

/// Compares the rendered file before and after a change: a directive present in both with live values on both
/// sides is a live change; every other difference needs a restart (this is what the config hash says too).
pub fn classify_config_change(old: &str, new: &str) -> ConfigChange {
    let (old, new) = (parse_rendered(old), parse_rendered(new));
    let mut change = ConfigChange::default();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let (before, after) = (old.get(name), new.get(name));
        if before == after {
            continue;
        }
        let live = matches!((before, after), (Some(b), Some(a))
            if live_value(name, b).is_some() && live_value(name, a).is_some());
        if live {
            change.live.push(name.clone());
        } else {
            change.restart.push(name.clone());
        }
    }
    change
}

/// Keeps the config hash of an older release on the desired pod template while it still describes the desired
/// file. Releases before live configuration hashed the whole rendered file; switching such a StatefulSet to the
/// restart hash would restart every pod of every instance on upgrade for nothing. While the live template
/// carries exactly the old-style hash of the file the spec renders, the pods run that file: the hash is kept
/// and nothing rolls. The first configuration change after the upgrade then moves to the new hash, which
/// restarts the pods once, even for a live-only change.
pub fn carry_legacy_hash(desired: &mut Desired, live: Option<&StatefulSet>) {
    let legacy = config_hash(config_text(&desired.config_map));
    if live.and_then(template_config_hash) != Some(legacy.as_str()) {
        return;
    }
    let annotations = desired
        .statefulset
        .spec
        .as_mut()
        .and_then(|spec| spec.template.metadata.as_mut())
        .and_then(|meta| meta.annotations.as_mut());
    if let Some(annotations) = annotations {
        annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), legacy.clone());
        desired.config_hash = legacy;
    }
}

/// A live setting a pod does not hold yet, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unapplied {
    /// The pod.
    pub pod: String,
    /// The directive.
    pub directive: String,
    /// Why it is not applied, e.g. the server's refusal.
    pub why: String,
}

/// The phase engine's `config_pending` sentence: the first pod and directive that do not hold their live
/// value yet, and how many more; `None` when every reachable pod holds every one.
pub fn pending_message(unapplied: &[Unapplied]) -> Option<String> {
    let first = unapplied.first()?;
    let more = match unapplied.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    Some(format!(
        "config: {} does not have {} yet: {}{more}",
        first.pod, first.directive, first.why
    ))
}

/// Brings every pod's server to the live settings: reads each with `CONFIG GET`, sends the `CONFIG SET`s that
/// [`plan`] asks for (only while `leading()`, asked before each), and reads them back. Pods without an address,
/// being deleted or not answering are skipped (readiness covers them; they are set once they answer, and a
/// restarted pod reads the file anyway). Returns what is still not applied, and what was set (pod, directives).
pub async fn converge(
    pods: &[Arc<Pod>],
    desired: &[LiveSetting],
    access: &Access,
    leading: impl Fn() -> bool,
) -> (Vec<Unapplied>, Vec<(String, Vec<String>)>) {
    if desired.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let leading = &leading;
    let passes = each_live_pod(pods, |pod| async move {
        let at = endpoint(pod)?;
        let node = RedisNode::open(&at.host, at.port, access).await.ok()?;
        Some(converge_pod(&pod.name_any(), &node, desired, leading).await)
    });
    let mut unapplied = Vec::new();
    let mut set = Vec::new();
    for (missing, sent) in passes.await.into_iter().filter_map(|(_, done)| done) {
        unapplied.extend(missing);
        set.extend(sent);
    }
    unapplied.sort_by(|a, b| (&a.pod, &a.directive).cmp(&(&b.pod, &b.directive)));
    set.sort();
    (unapplied, set)
}

async fn converge_pod(
    pod: &str,
    node: &RedisNode,
    desired: &[LiveSetting],
    leading: &impl Fn() -> bool,
) -> (Vec<Unapplied>, Option<(String, Vec<String>)>) {
    let unapplied = |setting: &LiveSetting, why: String| Unapplied {
        pod: pod.to_string(),
        directive: setting.directive.clone(),
        why,
    };
    let mut observed = Observed::new();
    let mut missing = Vec::new();
    for setting in desired {
        match node.config_get(&setting.directive).await {
            Ok(value) => {
                observed.insert(setting.directive.clone(), value);
            }
            Err(error) => missing.push(unapplied(setting, error.to_string())),
        }
    }
    if !missing.is_empty() {
        return (missing, None);
    }
    let mut sent = Vec::new();
    for setting in plan(desired, &observed) {
        if !leading() {
            missing.push(unapplied(
                setting,
                "waiting for the operator's leadership".into(),
            ));
            continue;
        }
        if let Err(error) = node.config_set(&setting.directive, &setting.value).await {
            missing.push(unapplied(setting, error.to_string()));
            continue;
        }
        sent.push(setting.directive.clone());
        // Verified, not assumed: Redis may accept a value and hold another.
        match node.config_get(&setting.directive).await {
            Ok(value) if holds(setting, value.as_deref()) => {}
            // The value comes from the server (the tenant's image): bounded before it reaches the status.
            Ok(value) => missing.push(unapplied(
                setting,
                format!(
                    "it reads back {:?}",
                    crate::redis::client::bounded_text(
                        &value.unwrap_or_default(),
                        crate::redis::client::MAX_ERROR_TEXT
                    )
                ),
            )),
            Err(error) => missing.push(unapplied(setting, error.to_string())),
        }
    }
    let sent = (!sent.is_empty()).then(|| (pod.to_string(), sent));
    (missing, sent)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::desired::live_directives::MAXMEMORY_POLICIES;

    fn setting(directive: &str, value: &str) -> LiveSetting {
        desired(&[(directive.to_string(), value.to_string())])
            .pop()
            .unwrap_or_else(|| panic!("{directive} {value} must be live"))
    }

    fn observed(pairs: &[(&str, Option<&str>)]) -> Observed {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn memory_units_are_read_as_redis_reads_them() {
        for (value, bytes) in [
            ("0", "0"),
            ("100", "100"),
            ("1b", "1"),
            ("1k", "1000"),
            ("1kb", "1024"),
            ("1K", "1000"),
            ("2m", "2000000"),
            ("100mb", "104857600"),
            ("100MB", "104857600"),
            ("1g", "1000000000"),
            ("1gb", "1073741824"),
            ("1Gb", "1073741824"),
        ] {
            assert_eq!(
                live_value("maxmemory", value).as_deref(),
                Some(bytes),
                "{value}"
            );
        }
        for value in [
            "",
            "1.5gb",
            "-1",
            "lots",
            "1tb",
            "mb",
            "1 mb",
            "99999999999999999gb",
        ] {
            assert_eq!(live_value("maxmemory", value), None, "{value}");
        }
    }

    #[test]
    fn enums_booleans_and_integers_compare_as_redis_reports_them() {
        assert_eq!(
            live_value("MAXMEMORY-POLICY", "AllKeys-LRU").as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(live_value("maxmemory-policy", "sometimes"), None);
        assert_eq!(live_value("appendonly", "YES").as_deref(), Some("yes"));
        assert_eq!(live_value("appendonly", "true"), None);
        assert_eq!(
            live_value("slowlog-log-slower-than", "-1").as_deref(),
            Some("-1")
        );
        // Redis' string2ll refuses these, so they are left to the file (and its error) at a restart.
        for odd in ["+5", "010", "1e3", " 5", ""] {
            assert_eq!(live_value("timeout", odd), None, "{odd:?}");
        }
        assert_eq!(
            live_value("hz", "1000").as_deref(),
            Some("500"),
            "clamped like Redis"
        );
        assert_eq!(live_value("hz", "0").as_deref(), Some("1"));
    }

    #[test]
    fn save_and_keyspace_events_are_compared_as_redis_reports_them() {
        assert_eq!(
            live_value("save", "900  1 300 10").as_deref(),
            Some("900 1 300 10")
        );
        assert_eq!(live_value("save", "\"\"").as_deref(), Some(""));
        assert_eq!(live_value("save", "").as_deref(), Some(""));
        assert_eq!(
            live_value("save", "900"),
            None,
            "an odd number of arguments"
        );
        assert!(holds(
            &setting("notify-keyspace-events", "KEA"),
            Some("AKE")
        ));
        assert!(holds(&setting("notify-keyspace-events", "Ex"), Some("xE")));
        assert!(!holds(
            &setting("notify-keyspace-events", "Ex"),
            Some("xKE")
        ));
        assert_eq!(live_value("notify-keyspace-events", "Q"), None);
    }

    #[test]
    fn directives_off_the_list_are_not_live() {
        for directive in [
            "maxclients",
            "databases",
            "port",
            "slave-lazy-flush",
            "bind",
        ] {
            assert_eq!(live_value(directive, "1"), None, "{directive}");
        }
    }

    #[test]
    fn a_pod_that_holds_everything_needs_no_command() {
        let want = desired(&[
            ("maxmemory".into(), "100mb".into()),
            ("maxmemory-policy".into(), "allkeys-lru".into()),
            ("databases".into(), "32".into()),
        ]);
        assert_eq!(want.len(), 2, "databases is not live");
        let converged = observed(&[
            ("maxmemory", Some("104857600")),
            ("maxmemory-policy", Some("allkeys-lru")),
        ]);
        assert!(plan(&want, &converged).is_empty());
        let behind = observed(&[
            ("maxmemory", Some("0")),
            ("maxmemory-policy", Some("allkeys-lru")),
        ]);
        let sets: Vec<(&str, &str)> = plan(&want, &behind)
            .iter()
            .map(|s| (s.directive.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(sets, [("maxmemory", "100mb")]);
        // Unknown to the server, or not asked: sent (and a refusal is reported).
        let unknown = observed(&[("maxmemory", None)]);
        assert_eq!(plan(&want, &unknown).len(), 2);
    }

    #[test]
    fn config_changes_are_split_into_live_and_restart() {
        let old = "# header\nport 6379\nmaxmemory 100mb\nsave \"\"\ndatabases 16\nhz 10\n";
        let new =
            "# header\nport 6379\nmaxmemory 200mb\nsave 900 1\ndatabases 32\nappendonly yes\n";
        let change = classify_config_change(old, new);
        assert_eq!(change.live, ["maxmemory", "save"]);
        assert_eq!(
            change.restart,
            ["appendonly", "databases", "hz"],
            "added, changed, removed"
        );
        let (reason, note) = change.event(true).unwrap();
        assert_eq!(reason, EventReason::ConfigNeedsRestart);
        assert!(
            note.contains("appendonly, databases, hz cannot be set at runtime"),
            "{note}"
        );
        let live_only = classify_config_change(old, &old.replace("100mb", "1gb"));
        assert_eq!(live_only.restart, [] as [String; 0]);
        let (reason, note) = live_only.event(false).unwrap();
        assert_eq!(
            (reason, note.as_str()),
            (
                EventReason::Status(Reason::ConfigAppliedLive),
                "Set at runtime on every pod, no restart: maxmemory"
            )
        );
        let (reason, note) = live_only.event(true).unwrap();
        assert_eq!(
            reason,
            EventReason::ConfigNeedsRestart,
            "a legacy hash rolls even a live change: {note}"
        );
        assert_eq!(classify_config_change(old, old).event(true), None);
    }

    #[test]
    fn an_old_style_hash_is_kept_while_it_describes_the_file() {
        use crate::classify::change::{classify_change, StatefulSetChange};
        use crate::desired::children::{build, tests::instance};

        let ri = instance("cache");
        let mut old = build(&ri).statefulset;
        let legacy = config_hash(config_text(&build(&ri).config_map));
        old.spec
            .as_mut()
            .unwrap()
            .template
            .metadata
            .as_mut()
            .unwrap()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(CONFIG_HASH_ANNOTATION.to_string(), legacy.clone());
        let mut desired = build(&ri);
        carry_legacy_hash(&mut desired, Some(&old));
        assert_eq!(desired.config_hash, legacy);
        assert_eq!(
            classify_change(&desired.statefulset, Some(&old)),
            StatefulSetChange::None,
            "no restart on upgrade"
        );

        // The first change moves to the restart hash, even a live one.
        let mut changed = ri.clone();
        changed
            .spec
            .config
            .insert("maxmemory".into(), "200mb".into());
        let mut desired = build(&changed);
        carry_legacy_hash(&mut desired, Some(&old));
        assert_ne!(desired.config_hash, legacy);
        assert_eq!(
            classify_change(&desired.statefulset, Some(&old)),
            StatefulSetChange::Restart
        );

        // A StatefulSet already on the restart hash is left to it.
        let current = build(&ri);
        let mut desired = build(&changed);
        carry_legacy_hash(&mut desired, Some(&current.statefulset));
        assert_eq!(
            desired.statefulset, current.statefulset,
            "a live change does not roll"
        );
    }

    #[test]
    fn pending_names_the_first_pod_and_directive() {
        assert_eq!(pending_message(&[]), None);
        let one = Unapplied {
            pod: "cache-1".into(),
            directive: "maxmemory".into(),
            why: "CONFIG SET refused".into(),
        };
        assert_eq!(
            pending_message(std::slice::from_ref(&one)).as_deref(),
            Some("config: cache-1 does not have maxmemory yet: CONFIG SET refused")
        );
        let two = [one.clone(), one];
        assert!(pending_message(&two).unwrap().ends_with("(and 1 more)"));
    }

    fn memory_value() -> impl Strategy<Value = (String, u64)> {
        (
            0u64..100_000,
            prop::sample::select(vec![
                ("", 1u64),
                ("b", 1),
                ("k", 1000),
                ("kb", 1024),
                ("m", 1_000_000),
                ("mb", 1 << 20),
                ("g", 1_000_000_000),
                ("gb", 1 << 30),
                ("MB", 1 << 20),
                ("Gb", 1 << 30),
            ]),
        )
            .prop_map(|(n, (unit, factor))| (format!("{n}{unit}"), n * factor))
    }

    proptest! {
        /// After the planned `CONFIG SET`s, a server that stores what it is sent (in Redis' reported form)
        /// needs nothing more: planning is idempotent and a converged pod costs no command.
        #[test]
        fn applying_the_plan_converges(
            (memory, bytes) in memory_value(),
            policy in prop::sample::select(MAXMEMORY_POLICIES.to_vec()),
            upper in any::<bool>(),
            already in prop::collection::vec(any::<bool>(), 3),
        ) {
            let policy = if upper { policy.to_ascii_uppercase() } else { policy.to_string() };
            let want = desired(&[
                ("maxmemory".into(), memory.clone()),
                ("maxmemory-policy".into(), policy),
                ("save".into(), "900 1  300 10".into()),
            ]);
            prop_assert_eq!(want.len(), 3);
            prop_assert_eq!(&want[0].normalized, &bytes.to_string());
            let mut server = Observed::new();
            for (setting, held) in want.iter().zip(&already) {
                let value = if *held { setting.normalized.clone() } else { "7".into() };
                server.insert(setting.directive.clone(), Some(value));
            }
            let sets = plan(&want, &server);
            prop_assert_eq!(sets.len(), already.iter().filter(|held| !**held).count());
            for setting in sets {
                let reported = live_value(&setting.directive, &setting.value).unwrap();
                server.insert(setting.directive.clone(), Some(reported));
            }
            prop_assert!(plan(&want, &server).is_empty());
        }

        /// Any change of live values leaves the pod template alone; any change of a restart-only value rolls it.
        #[test]
        fn only_restart_relevant_changes_move_the_config_hash(
            (a, _) in memory_value(),
            (b, _) in memory_value(),
            policy in prop::sample::select(MAXMEMORY_POLICIES.to_vec()),
            databases in 1u32..64,
        ) {
            use crate::api::ReplicationSpec;
            use crate::desired::redis_conf::restart_view;

            let spec = |memory: &str, policy: &str, databases: u32| -> BTreeMap<String, String> {
                [("maxmemory", memory.to_string()), ("maxmemory-policy", policy.to_string()), ("databases", databases.to_string())]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            };
            let hash = |config: &BTreeMap<String, String>| config_hash(&restart_view(config, &ReplicationSpec::default()));
            let before = spec(&a, "noeviction", databases);
            prop_assert_eq!(hash(&before), hash(&spec(&b, policy, databases)));
            prop_assert_ne!(hash(&before), hash(&spec(&a, "noeviction", databases + 1)));
        }
    }
}
