//! Tests of `live_config`.

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
    let new = "# header\nport 6379\nmaxmemory 200mb\nsave 900 1\ndatabases 32\nappendonly yes\n";
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

#[test]
fn unreachable_pods_are_left_out_of_what_is_unapplied() {
    let missing = Unapplied {
        pod: "cache-2".into(),
        directive: "maxmemory".into(),
        why: "refused".into(),
    };
    let outcome = Outcome {
        done: vec![("cache-0".into(), vec!["maxmemory".into()])],
        pending: vec![
            (
                "cache-1".into(),
                Pending::Unreachable("no address yet".into()),
            ),
            ("cache-2".into(), Pending::NotYet(vec![missing.clone()])),
        ],
    };
    assert_eq!(unapplied(&outcome), vec![missing]);
}
