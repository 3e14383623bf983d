//! The claims ledger: what README and the docs say about names, reasons, fields, defaults, ranges, flags,
//! commands and a few numbers, checked against the code — the reason enums, the generated CRD in `crds/`, the
//! CLI's `--help` and the constants the statements are about. Needs no cluster.
//!
//! A failure means the docs or the code changed without the other: fix whichever is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use redis_fsm::{condition_types, replication_reasons, Input, Phase, Reason};
use redis_operator::events::EventReason;
use redis_operator::names;
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every hand-written page that makes claims, and the generated one.
fn pages() -> Vec<(&'static str, String)> {
    [
        "README.md",
        "deploy/README.md",
        "docs/architecture.md",
        "docs/user-guide.md",
        "docs/replication.md",
        "docs/benchmarks.md",
        "docs/fsm.md",
    ]
    .into_iter()
    .map(|path| (path, read(path)))
    .collect()
}

/// The text between pairs of backticks on a line.
fn backticked(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Whether `token` looks like an identifier a reason could be: CamelCase, letters and digits, not all capitals.
fn camel(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_uppercase())
        && token.chars().all(|c| c.is_ascii_alphanumeric())
        && token.chars().any(|c| c.is_ascii_lowercase())
}

/// The lines of the section under `heading` (up to the next heading of the same or a higher level).
fn section<'a>(page: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut lines = page.lines().skip_while(|l| l.trim_end() != heading);
    assert!(lines.next().is_some(), "no section {heading:?}");
    lines
        .take_while(|l| {
            let hashes = l.chars().take_while(|&c| c == '#').count();
            !(hashes > 0 && hashes <= level && l[hashes..].starts_with(' '))
        })
        .collect()
}

/// The body rows of the first table in `lines`, split into trimmed cells.
fn table<'a>(lines: &[&'a str]) -> Vec<Vec<&'a str>> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            // `\|` inside a cell is a literal bar, not a column.
            let cells: Vec<&str> = split_cells(row);
            cells
        })
        .collect()
}

fn split_cells(row: &str) -> Vec<&str> {
    let mut cells = Vec::new();
    let mut start = 1;
    let bytes = row.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'|' && bytes[i - 1] != b'\\' {
            cells.push(row[start..i].trim());
            start = i + 1;
        }
    }
    cells
}

fn status_reasons() -> BTreeSet<&'static str> {
    Reason::ALL.iter().map(|r| r.as_str()).collect()
}

fn event_reasons() -> BTreeSet<&'static str> {
    EventReason::all().map(|r| r.as_str()).collect()
}

/// The reasons the phase engine can write to `status.reason`: those of every input.
fn phase_reasons() -> BTreeSet<&'static str> {
    Input::ALL
        .iter()
        .flat_map(|input| input.reasons())
        .map(|r| r.as_str())
        .collect()
}

/// The generated CRD's schema of `spec`.
fn spec_schema() -> Value {
    let crd: Value = serde_yaml::from_str(&read("crds/redisinstance.yaml")).expect("CRD parses");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// The schema of the spec field at a dotted `path`, if the CRD has it.
fn field<'a>(spec: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(spec, |schema, key| {
        let next = &schema["properties"][key];
        (!next.is_null()).then_some(next)
    })
}

/// The enum values anywhere in a schema (e.g. `Retain`, `Supervised`).
fn enum_values(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Mapping(map) => {
            for (key, value) in map {
                if key.as_str() == Some("enum") {
                    for v in value.as_sequence().into_iter().flatten() {
                        if let Some(s) = v.as_str() {
                            out.insert(s.to_owned());
                        }
                    }
                }
                enum_values(value, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| enum_values(v, out)),
        _ => {}
    }
}

/// A schema value as the docs write it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map_or_else(|| n.to_string(), |f| format!("{f:.0}")),
        Value::Bool(b) => b.to_string(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    }
}

/// Identifiers the docs may name on a line about reasons that are not reasons: other names the code defines
/// (phases, inputs, conditions, CRD enum values), the alerts of the monitoring rules, and a few more.
fn other_names() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
    names.extend(Input::ALL.iter().map(|i| i.to_string()));
    names.extend(condition_types::ALL.iter().map(|t| t.to_string()));
    names.extend(condition_types::REPLICATION.iter().map(|t| t.to_string()));
    enum_values(&spec_schema(), &mut names);
    for line in read("deploy/monitoring/rules/prometheusrule.yaml").lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert: ") {
            names.insert(alert.trim().to_owned());
        }
    }
    // A backup's reasons and Events, and its kind.
    names.extend(
        redis_operator::backup::controller::REASONS
            .iter()
            .chain(&redis_operator::backup::controller::EVENT_REASONS)
            .map(|r| r.to_string()),
    );
    names.insert("RedisBackup".to_owned());
    // Condition statuses, Event types, the Rust types that hold reasons, topology steps, the StatefulSet
    // controller's Event reason the operator reads, and the kubelet's and scheduler's reasons it quotes.
    for name in [
        "True",
        "False",
        "Normal",
        "Warning",
        "Observation",
        "Reason",
        "EventReason",
        "WaitReason",
        "Stop",
        "Wait",
        "FailedCreate",
        // Kubernetes' own container and scheduling reasons, which the operator's messages quote.
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "OOMKilled",
        "Unschedulable",
    ] {
        names.insert(name.to_owned());
    }
    names
}

#[test]
fn every_reason_the_docs_name_is_one_the_code_can_emit() {
    let reasons: BTreeSet<&str> = status_reasons().union(&event_reasons()).copied().collect();
    let others = other_names();
    let phases: Vec<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
    let mut unknown = Vec::new();
    for (path, page) in pages() {
        for (number, line) in page.lines().enumerate() {
            let tokens = backticked(line);
            // A line about reasons or Events: every identifier on it must be one the code defines.
            let lower = line.to_lowercase();
            if lower.contains("reason") || line.contains("Event") {
                for token in tokens.iter().filter(|t| camel(t)) {
                    if !reasons.contains(token) && !others.contains(*token) {
                        unknown.push(format!("{path}:{}: `{token}`", number + 1));
                    }
                }
            }
            // `Phase` / `Reason`, as the troubleshooting table pairs them.
            for pair in line.split("` / `").collect::<Vec<_>>().windows(2) {
                let phase = pair[0].rsplit('`').next().unwrap_or_default();
                let reason = pair[1].split('`').next().unwrap_or_default();
                if phases.iter().any(|p| p == phase) && !reasons.contains(reason) {
                    unknown.push(format!("{path}:{}: `{phase}` / `{reason}`", number + 1));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the docs name reasons the code never emits:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_user_guide_lists_every_phase_and_condition_reason() {
    let guide = read("docs/user-guide.md");
    let listed: BTreeSet<&str> = table(&section(&guide, "### Phases and reasons"))
        .iter()
        .flat_map(|row| backticked(row[1]))
        .collect();
    let expected = phase_reasons();
    assert_eq!(
        listed, expected,
        "the user guide's phase table and the reasons of the phase engine differ"
    );

    let status = section(&guide, "## Status");
    let conditions_table: Vec<&str> = status
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("| condition |"))
        .collect();
    let mut by_condition = BTreeMap::new();
    for row in table(&conditions_table) {
        let type_ = backticked(row[0])[0];
        let reasons: BTreeSet<&str> = backticked(row[0])[1..]
            .iter()
            .chain(backticked(row[2]).iter())
            .copied()
            .filter(|t| camel(t))
            .collect();
        by_condition.insert(type_, reasons);
    }
    for type_ in condition_types::REPLICATION {
        let expected: BTreeSet<&str> = replication_reasons(type_)
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            by_condition.get(type_),
            Some(&expected),
            "the user guide's reasons of condition {type_}"
        );
    }
}

#[test]
fn every_reason_the_code_can_emit_is_documented() {
    let fsm = read("docs/fsm.md");
    for reason in EventReason::all() {
        assert!(
            fsm.contains(&format!("`{reason}`")),
            "docs/fsm.md does not name {reason}: regenerate it"
        );
    }
    let guide = read("docs/user-guide.md");
    for reason in EventReason::EVENT_ONLY {
        assert!(
            guide.contains(&format!("`{reason}`")),
            "the user guide does not name the Event reason {reason}"
        );
    }
}

/// The example at the top of the user guide: every field exists in the CRD, and what its comments say about
/// defaults and ranges is what the schema says.
#[test]
fn the_user_guide_example_matches_the_crd() {
    let spec = spec_schema();
    let guide = read("docs/user-guide.md");
    let example = section(&guide, "## The resource");
    let lines: Vec<&str> = example
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("spec:"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut checked = 0;
    for line in lines {
        let (code, comment) = line.split_once('#').unwrap_or((line, ""));
        let indent = line.len() - line.trim_start().len();
        let Some((key, value)) = code.trim().split_once(':') else {
            continue;
        };
        if code.trim().is_empty() || key.contains(' ') {
            continue;
        }
        stack.retain(|(i, _)| *i < indent);
        let path = stack
            .iter()
            .map(|(_, k)| k.as_str())
            .chain([key])
            .collect::<Vec<_>>()
            .join(".");
        stack.push((indent, key.to_owned()));
        // Keys of a map (`config`, labels) or of a Kubernetes type the CRD keeps as given are not fields.
        let parent = path.rsplit_once('.').map(|(p, _)| p);
        if parent.is_some_and(|p| field(&spec, p).is_some_and(|s| s["properties"].is_null())) {
            continue;
        }
        let schema = field(&spec, &path).unwrap_or_else(|| panic!("spec.{path} is not in the CRD"));
        let value = value.trim().trim_matches('"');
        let comment = comment.trim();
        let default = text(&schema["default"]);
        if let Some(rest) = comment.strip_prefix("default ") {
            let claimed = rest.split([',', ' ']).next().unwrap_or_default();
            let claimed = claimed.trim_end_matches(':');
            assert_eq!(claimed, default, "default of spec.{path}");
            checked += 1;
        }
        if let Some((claimed, _)) = comment.split_once(" (default)") {
            let claimed = claimed.rsplit(' ').next().unwrap_or_default();
            assert_eq!(claimed, default, "default of spec.{path}");
            checked += 1;
        }
        if comment.starts_with("the default") {
            assert_eq!(value, default, "default of spec.{path}");
            checked += 1;
        }
        let range = comment
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .and_then(|(r, _)| r.split_once(".."))
            .or_else(|| {
                comment
                    .split(", ")
                    .find_map(|part| part.split(':').next()?.split_once(" to "))
            });
        if let Some((min, max)) = range {
            assert_eq!(
                (min, max),
                (
                    text(&schema["minimum"]).as_str(),
                    text(&schema["maximum"]).as_str()
                ),
                "range of spec.{path}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "only {checked} claims found: did the example change shape?"
    );
}

/// The spec fields table names fields the CRD has, and every field of the CRD's spec.
#[test]
fn the_spec_fields_table_matches_the_crd() {
    let spec = spec_schema();
    let guide = read("docs/user-guide.md");
    let mut documented = BTreeSet::new();
    for row in table(&section(&guide, "### Spec fields")) {
        let mut previous = String::new();
        for token in backticked(row[0]) {
            // `monitoring.exporter.image`, `.resources` and `replication.minReplicasToWrite`, `minReplicasMaxLag`
            // name siblings of the field before them.
            let parent = previous.rsplit_once('.').map_or("", |(p, _)| p);
            let path = match token.strip_prefix('.') {
                Some(rest) => format!("{parent}.{rest}"),
                None if !token.contains('.') && !parent.is_empty() => format!("{parent}.{token}"),
                None => token.to_owned(),
            };
            assert!(
                field(&spec, &path).is_some(),
                "the user guide documents spec.{path}, which the CRD does not have"
            );
            documented.insert(path.clone());
            previous = path;
        }
        // A default the meaning states is the schema's.
        let meaning = row[1];
        let claimed = meaning
            .split_once(" (default)")
            .map(|(before, _)| before.rsplit('`').nth(1).unwrap_or_default().to_owned())
            .or_else(|| {
                let rest = meaning.split_once("(default ")?.1;
                let value = rest.split([';', ')']).next()?;
                Some(value.trim_matches('`').to_owned())
            });
        if let Some(claimed) = claimed {
            let path = documented.last().cloned().unwrap_or_default();
            let first = backticked(row[0])[0];
            let path = if field(&spec, first).is_some() {
                first.to_owned()
            } else {
                path
            };
            let schema = field(&spec, &path).expect("documented field exists");
            assert_eq!(claimed, text(&schema["default"]), "default of spec.{path}");
        }
    }
    let top_level: Vec<String> = spec["properties"]
        .as_mapping()
        .expect("spec has properties")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for key in top_level {
        assert!(
            documented
                .iter()
                .any(|p| p == &key || p.starts_with(&format!("{key}."))),
            "spec.{key} is not in the user guide's spec fields table"
        );
    }
}

/// The refusal table's numeric ranges are the schema's bounds.
#[test]
fn the_refusal_table_ranges_match_the_crd() {
    let spec = spec_schema();
    let guide = read("docs/user-guide.md");
    let mut checked = 0;
    for row in table(&section(&guide, "### What is refused, and where")) {
        let Some((min, rest)) = row[1].split_once(" to ") else {
            continue;
        };
        let Some(max) = rest.split([':', ' ', ',']).next() else {
            continue;
        };
        if min.parse::<i64>().is_err() {
            continue;
        }
        let path = backticked(row[0])[0];
        let schema = field(&spec, path).unwrap_or_else(|| panic!("spec.{path} is not in the CRD"));
        assert_eq!(
            (min.to_owned(), max.to_owned()),
            (text(&schema["minimum"]), text(&schema["maximum"])),
            "range of spec.{path}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "no range found in the refusal table");
}

fn cli(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_redis-operator"))
        .args(args)
        .output()
        .expect("run redis-operator");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The subcommands `--help` lists (without `help`).
fn commands() -> BTreeSet<String> {
    let (_, help) = cli(&["--help"]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

/// Every long flag of a subcommand, with its environment variable and default as `--help` shows them.
fn flags(command: &str) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let (_, help) = cli(&[command, "--help"]);
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag = trimmed
            .strip_prefix("-n, ")
            .unwrap_or(trimmed)
            .strip_prefix("--")
            .filter(|_| line.starts_with("  ") && trimmed.starts_with('-'))
            .map(|rest| format!("--{}", rest.split([' ', '=']).next().unwrap_or_default()));
        if let Some(flag) = flag {
            if flag != "--help" {
                flags.insert(flag.clone(), (None, None));
                current = Some(flag);
            } else {
                current = None;
            }
            continue;
        }
        let Some(flag) = &current else { continue };
        let entry = flags.get_mut(flag).expect("inserted");
        for (prefix, slot) in [("[env: ", &mut entry.0), ("[default: ", &mut entry.1)] {
            if let Some(rest) = trimmed.strip_prefix(prefix) {
                *slot = rest.split([']', '=']).next().map(str::to_owned);
            }
        }
    }
    flags
}

#[test]
fn the_readme_commands_are_the_cli_commands() {
    let readme = read("README.md");
    let rows = table(&section(&readme, "## Commands"));
    let documented: BTreeMap<String, &str> = rows
        .iter()
        .map(|row| {
            let usage = backticked(row[0])[0];
            let name = usage
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            (name, usage)
        })
        .collect();
    assert_eq!(
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        commands(),
        "README's command table and `redis-operator --help` differ"
    );
    for (command, usage) in &documented {
        if command == "run" {
            continue; // its flags have their own table
        }
        for flag in flags(command).keys() {
            assert!(
                usage.contains(flag.as_str()),
                "README does not show {command} {flag}"
            );
        }
    }
    // Every format the fsm row lists is one the command accepts.
    let formats = documented["fsm"]
        .split("--format ")
        .nth(1)
        .expect("fsm row lists formats");
    for format in formats.split("\\|") {
        assert!(
            cli(&["fsm", "--format", format]).0,
            "fsm --format {format} fails"
        );
    }
    assert!(!cli(&["fsm", "--format", "nonsense"]).0);
}

#[test]
fn the_readme_flags_are_the_run_flags() {
    let readme = read("README.md");
    let rows = table(&section(&readme, "### `redis-operator run` flags"));
    let code = flags("run");
    let mut documented = BTreeSet::new();
    for row in rows {
        let flag = backticked(row[0])[0].to_owned();
        let Some((env, default)) = code.get(&flag) else {
            panic!("README documents {flag}, which `run --help` does not have");
        };
        assert_eq!(
            Some(backticked(row[1])[0]),
            env.as_deref(),
            "environment variable of {flag}"
        );
        if let Some(default) = default {
            assert_eq!(
                backticked(row[2]).first().copied(),
                Some(default.as_str()),
                "default of {flag}"
            );
        }
        documented.insert(flag);
    }
    let all: BTreeSet<String> = code.keys().cloned().collect();
    assert_eq!(
        documented, all,
        "README's flag table and `run --help` differ"
    );
}

/// The operator's labels, annotations and children as the docs name them are the ones `src/names.rs` has.
#[test]
fn the_docs_name_the_operators_own_names() {
    let keys: BTreeSet<&str> = [
        names::FINALIZER,
        names::ROLE_LABEL,
        names::CONFIG_HASH_ANNOTATION,
        names::SETTINGS_HASH_ANNOTATION,
        names::AUTH_ANNOTATION,
        names::TLS_ANNOTATION,
        names::REPLACE_ANNOTATION,
        names::SWITCHOVER_ANNOTATION,
        names::BOOTSTRAP_PRIMARY_ANNOTATION,
        names::PRIMARY_EPOCH_ANNOTATION,
        names::SCHEDULED_FOR_ANNOTATION,
        names::MIGRATED_FROM_ANNOTATION,
        names::NAME_LABEL,
        names::INSTANCE_LABEL,
        names::MANAGED_BY_LABEL,
        names::COMPONENT_LABEL,
    ]
    .into_iter()
    .collect();
    let children: BTreeSet<String> = [
        names::config_map_name("NAME"),
        names::headless_name("NAME"),
        names::replicas_service_name("NAME"),
        names::metrics_service_name("NAME"),
        names::primary_budget_name("NAME"),
        names::replicas_budget_name("NAME"),
        names::generated_secret_name("NAME"),
        names::users_secret_name("NAME"),
        names::connection_secret_name("NAME"),
    ]
    .into_iter()
    .collect();
    let mut wrong = Vec::new();
    for (path, page) in pages() {
        for token in page.lines().flat_map(backticked) {
            let key = token.split(['=', ':', ' ']).next().unwrap_or_default();
            let ours = key.starts_with(names::RESERVED_PREFIX)
                && ![names::RESERVED_PREFIX, "redis-operator.github.io/v1beta1"].contains(&key);
            if (ours || key.starts_with("app.kubernetes.io/")) && !keys.contains(key) {
                wrong.push(format!("{path}: `{token}`"));
            }
            if token.starts_with("NAME-")
                && token[5..].chars().all(|c| c.is_ascii_lowercase())
                && !children.contains(token)
            {
                wrong.push(format!("{path}: `{token}`"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "names the code does not use:\n{}",
        wrong.join("\n")
    );
    assert!(
        read("README.md").contains(&format!("`{}`", names::MANAGED_SELECTOR)) || {
            read("docs/architecture.md").contains(&format!("`{}`", names::MANAGED_SELECTOR))
        }
    );
}

/// Numbers the prose states, next to the constant they are about.
#[test]
fn the_numbers_in_the_prose_are_the_codes() {
    use redis_operator::cli::SHUTDOWN_DEADLINE;
    use redis_operator::reconciler::{BACKOFF_CAP, REPLACE_WAIT};
    use redis_operator::runtime::http::METRICS_CONTENT_TYPE;

    let deployment: Value =
        serde_yaml::from_str(&read("deploy/base/deployment.yaml")).expect("deployment parses");
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("the Deployment sets a grace period");
    assert!(
        SHUTDOWN_DEADLINE.as_secs() < grace,
        "the process must exit before the kubelet kills it"
    );
    let media_type = METRICS_CONTENT_TYPE
        .rsplit_once("; charset")
        .map_or(METRICS_CONTENT_TYPE, |(t, _)| t);
    let spec = spec_schema();
    let failover_delay =
        text(&field(&spec, "replication.failoverDelaySeconds").expect("field")["default"]);
    assert_eq!(
        failover_delay,
        redis_fsm::DEFAULT_FAILOVER_DELAY_SECONDS.to_string()
    );
    let ledger = [
        (
            "README.md",
            format!(
                "The process exits at most {} s after SIGTERM",
                SHUTDOWN_DEADLINE.as_secs()
            ),
        ),
        (
            "README.md",
            format!("`terminationGracePeriodSeconds: {grace}`"),
        ),
        (
            "README.md",
            format!("waits up to {} s", REPLACE_WAIT.as_secs()),
        ),
        ("README.md", format!("`{media_type}`")),
        (
            "docs/architecture.md",
            format!("`SHUTDOWN_DEADLINE` ({} s)", SHUTDOWN_DEADLINE.as_secs()),
        ),
        (
            "docs/architecture.md",
            format!(
                "1 s doubling to {} s (`BACKOFF_CAP`)",
                BACKOFF_CAP.as_secs()
            ),
        ),
        (
            "docs/architecture.md",
            format!("`HISTORY_LIMIT = {}`", redis_fsm::HISTORY_LIMIT),
        ),
        (
            "docs/user-guide.md",
            format!("the newest {} phase transitions", redis_fsm::HISTORY_LIMIT),
        ),
        ("docs/user-guide.md", format!("(default {failover_delay};")),
        (
            "docs/replication.md",
            format!("## `failoverDelaySeconds`: default {failover_delay}"),
        ),
    ];
    let missing: Vec<String> = ledger
        .iter()
        .filter(|(path, claim)| !read(path).contains(claim.as_str()))
        .map(|(path, claim)| format!("{path}: {claim:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "the docs no longer state:\n{}",
        missing.join("\n")
    );
}

/// One version everywhere (`scripts/release.sh VERSION` sets them together): the crate, the chart's version and
/// appVersion (the image tag the chart defaults to), and the kustomize install's image tag; and one home.
#[test]
fn the_crate_the_chart_and_the_install_carry_one_version() {
    let read = |path: &str| {
        std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let version = env!("CARGO_PKG_VERSION");
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/helm/redis-operator/Chart.yaml")).unwrap();
    assert_eq!(
        chart["version"].as_str(),
        Some(version),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version),
        "Chart.yaml appVersion"
    );
    assert_eq!(
        chart["home"].as_str(),
        Some(env!("CARGO_PKG_REPOSITORY")),
        "Chart.yaml home: the crate's repository"
    );
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/base/kustomization.yaml")).unwrap();
    assert_eq!(
        kustomization["images"][0]["newTag"].as_str(),
        Some(version),
        "deploy/base image tag"
    );
    assert!(
        read("CHANGELOG.md").contains(&format!("## {version}")),
        "CHANGELOG.md has no section {version}"
    );
}
