//! The PrometheusRule in `deploy/monitoring/rules` is valid: it parses, every rule is a named alert with a
//! severity, a summary and a runbook line that the user guide has, and every expression names only metrics the
//! operator (`redis_operator::runtime::metrics::EXPORTED`) or redis_exporter (`tests/data/redis-exporter-metrics.txt`,
//! from a real scrape) export. The Grafana dashboard in `deploy/monitoring/dashboards` likewise: every panel's query
//! names only exported metrics (histogram series by their family's `_bucket`).

use std::collections::BTreeSet;

#[path = "shared/doc_anchors.rs"]
mod doc_anchors;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/monitoring/rules/prometheusrule.yaml"
);
const EXPORTER_METRICS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/redis-exporter-metrics.txt"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/monitoring/dashboards/redis-operator.json"
);
const USER_GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/user-guide.md");

/// PromQL words that are not metric names: binary operators, modifiers and aggregations (which may be
/// followed by `by (...)` rather than by their parenthesis).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
];

/// The metric names an expression selects: identifiers that are not functions (followed by `(`), keywords,
/// label names (inside `{}` or the `by (...)`-style groupings), string contents or range durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Depth of `{...}` and `[...]`; and whether the next `(...)` lists labels (after by/without/on/ignoring/
    // group_left/group_right).
    let (mut braces, mut brackets) = (0usize, 0usize);
    let mut label_list = false;
    let mut in_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // Skip a string literal (escapes included).
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            '(' if label_list => {
                in_label_list = true;
                label_list = false;
            }
            ')' if in_label_list => in_label_list = false,
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if braces == 0 && brackets == 0 && !in_label_list {
                    if matches!(
                        word.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    ) {
                        label_list = true;
                    } else if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                        names.insert(word);
                    }
                }
                continue;
            }
            c if c.is_ascii_digit() => {
                // A number (1e3, 0.9) or duration: skip its letters too.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

fn known_metrics() -> BTreeSet<String> {
    let exporter = std::fs::read_to_string(EXPORTER_METRICS).expect("the exporter's metric list");
    exporter
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .chain(
            redis_operator::runtime::metrics::EXPORTED
                .iter()
                .map(|s| s.to_string()),
        )
        .collect()
}

#[test]
fn metric_names_are_found_and_labels_functions_and_keywords_are_not() {
    let names = metric_names(
        r#"count by (namespace, name) (redis_up == 1) unless count by (namespace, name) (redis_instance_info{role="master", x=~"a|b"})"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["redis_instance_info", "redis_up"]
    );
    let names = metric_names("increase(redis_evicted_keys_total[5m]) > 0 and on(pod) x:y 1e3");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["redis_evicted_keys_total", "x:y"]
    );
}

#[test]
fn every_alert_is_well_formed_and_names_only_exported_metrics() {
    let text = std::fs::read_to_string(RULES).expect("the PrometheusRule");
    let rule: serde_yaml::Value = serde_yaml::from_str(&text).expect("the PrometheusRule parses");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    let guide = std::fs::read_to_string(USER_GUIDE).expect("the user guide");
    let anchors = doc_anchors::anchors(&guide);
    let known = known_metrics();
    let mut alerts = BTreeSet::new();
    let groups = rule["spec"]["groups"].as_sequence().expect("groups");
    for group in groups {
        let rules = group["rules"].as_sequence().expect("rules of a group");
        assert!(!rules.is_empty());
        for rule in rules {
            let alert = rule["alert"].as_str().expect("every rule is an alert");
            assert!(alerts.insert(alert.to_string()), "{alert} is defined twice");
            let expr = rule["expr"].as_str().expect("an expression");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{alert}: names no metric: {expr}");
            for name in &names {
                assert!(
                    known.contains(name),
                    "{alert}: {name} is exported by neither the operator nor redis_exporter"
                );
            }
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning" | "info")
                ),
                "{alert}: severity"
            );
            assert!(rule["annotations"]["summary"].is_string(), "{alert}");
            let runbook = rule["annotations"]["runbook"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: runbook"));
            // runbook_url: the section the runbook text names, in the user guide of the published repository.
            let anchor = runbook
                .strip_prefix("docs/user-guide.md#")
                .and_then(|rest| rest.split(':').next())
                .unwrap_or_else(|| panic!("{alert}: the runbook text names no section: {runbook}"));
            assert!(
                anchors.iter().any(|a| a == anchor),
                "{alert}: no section #{anchor} in docs/user-guide.md"
            );
            assert_eq!(
                rule["annotations"]["runbook_url"].as_str(),
                Some(
                    format!(
                        "{}/blob/main/docs/user-guide.md#{anchor}",
                        env!("CARGO_PKG_REPOSITORY")
                    )
                    .as_str()
                ),
                "{alert}: runbook_url"
            );
            assert!(
                guide.contains(&format!("`{alert}`")),
                "{alert} has no runbook line in docs/user-guide.md"
            );
        }
    }
    for wanted in [
        "RedisInstanceFailed",
        "RedisPrimaryMissing",
        "RedisReplicationLinkDown",
        "RedisReplicationLagHigh",
        "RedisMemoryNearMax",
        "RedisEvictingKeys",
        "RedisRejectedConnections",
    ] {
        assert!(alerts.contains(wanted), "missing {wanted}");
    }
}

#[test]
fn every_dashboard_query_names_only_exported_metrics() {
    let text = std::fs::read_to_string(DASHBOARD).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "redis-operator");
    // A histogram family is exported by its name and queried by its series.
    let known: BTreeSet<String> = known_metrics()
        .into_iter()
        .flat_map(|m| {
            [
                format!("{m}_bucket"),
                format!("{m}_count"),
                format!("{m}_sum"),
                m,
            ]
        })
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut queried = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expression");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: names no metric: {expr}");
            for name in names {
                assert!(
                    known.contains(&name),
                    "{title}: {name} is exported by neither the operator nor redis_exporter"
                );
                queried.insert(name);
            }
        }
    }
    // The operator's health and the instances' phases are on it.
    for wanted in [
        "redis_operator_leader",
        "redis_operator_instance_phase",
        "redis_up",
    ] {
        assert!(queried.contains(wanted), "the dashboard shows no {wanted}");
    }
}
