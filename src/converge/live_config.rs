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
use crate::converge::{address_of, each_live_pod, login, PassOutcome, Pending};
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

/// What one pass of [`converge`] found: per pod holding every live setting, the directives this pass set
/// there; per pod that does not, the settings it lacks and why (or that it could not be reached).
pub type Outcome = PassOutcome<Vec<String>, Vec<Unapplied>>;

/// Brings every pod's server to the live settings: reads each with `CONFIG GET`, sends the `CONFIG SET`s that
/// [`plan`] asks for (only while `leading()`, asked before each), and reads them back. Pods being deleted are
/// left out; pods without an address or not answering are [`Pending::Unreachable`], which [`unapplied`] leaves
/// out (readiness covers them; they are set once they answer, and a restarted pod reads the file anyway).
pub async fn converge(
    pods: &[Arc<Pod>],
    desired: &[LiveSetting],
    access: &Access,
    leading: impl Fn() -> bool,
) -> Outcome {
    if desired.is_empty() {
        return Outcome::default();
    }
    let leading = &leading;
    each_live_pod(pods, |pod| async move {
        let node = login(&address_of(pod)?, access).await?;
        converge_pod(&pod.name_any(), &node, desired, leading).await
    })
    .await
}

/// What the reachable pods lack, by pod and directive, for [`pending_message`].
pub fn unapplied(outcome: &Outcome) -> Vec<Unapplied> {
    let mut unapplied: Vec<Unapplied> = outcome
        .pending
        .iter()
        .filter_map(|(_, pending)| match pending {
            Pending::NotYet(missing) => Some(missing.iter().cloned()),
            Pending::Unreachable(_) => None,
        })
        .flatten()
        .collect();
    unapplied.sort_by(|a, b| (&a.pod, &a.directive).cmp(&(&b.pod, &b.directive)));
    unapplied
}

/// One pod's pass: the directives it was sent, or what it still lacks (it may have been sent some).
async fn converge_pod(
    pod: &str,
    node: &RedisNode,
    desired: &[LiveSetting],
    leading: &impl Fn() -> bool,
) -> Result<Vec<String>, Pending<Vec<Unapplied>>> {
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
        return Err(Pending::NotYet(missing));
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
    if !sent.is_empty() {
        tracing::info!(%pod, directives = %sent.join(","), "configuration set at runtime");
    }
    if missing.is_empty() {
        Ok(sent)
    } else {
        Err(Pending::NotYet(missing))
    }
}

#[cfg(test)]
mod tests;
