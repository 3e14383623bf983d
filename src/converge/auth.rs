//! Brings running servers to the instance's users and replication credentials without restarting them: a
//! rotated password, authentication turned on or off. Pods read the same state from `NAME-acl` when they
//! start; this covers the ones already running.
//!
//! [`steps`] is the pure decision for one server; [`converge`] observes (`ACL GETUSER`, `CONFIG GET`) and sends
//! the steps, only while leading.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::auth::{pod_started_with_auth, DesiredUser, REPLICATION_USER};
use redis_fsm::Endpoint;

use crate::converge::{address_of, each_live_pod, login, login_fresh, PassOutcome, Pending};
use crate::redis::{Access, AclUser, RedisError, RedisNode};

/// What every server of the instance should hold. `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct Plan {
    /// Users, `default` first when authentication is on; empty when it is off.
    pub users: Vec<DesiredUser>,
    /// The replication user's password (`masterauth`), when authentication is on.
    pub replication_password: Option<String>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("users", &self.users)
            .field("masterauth", &self.replication_password.is_some())
            .finish()
    }
}

/// What one server holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `ACL GETUSER` of `default` and each of the operator's users (`None`: no such user).
    pub users: BTreeMap<String, Option<AclUser>>,
    /// `masteruser`.
    pub masteruser: String,
    /// `masterauth`.
    pub masterauth: String,
    /// `protected-mode` (`yes`/`no`).
    pub protected_mode: String,
}

/// Per user: the words the operator last set it with on one server, and what that server reported for it right
/// after. Redis spells some rules its own way (it expands overlapping categories into single commands), so a
/// later report equal to this one holds those words even where [`crate::auth::rules::holds`] cannot tell.
pub type Reported = BTreeMap<String, (Vec<String>, AclUser)>;

/// One command to send.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// `ACL SETUSER name words...`.
    SetUser {
        /// The user.
        name: String,
        /// The rule words.
        words: Vec<String>,
    },
    /// `CONFIG SET protected-mode no`: before `default` loses its password, or Redis 7 would refuse every
    /// client that is not on loopback (replicas and the operator included).
    ProtectedModeOff,
    /// `CONFIG SET masteruser/masterauth`: how this server authenticates to its primary.
    MasterAuth {
        /// The user (empty: none).
        user: String,
        /// The password (empty: none).
        password: String,
    },
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Step {
    /// For logs and Events: names, never passwords or hashes.
    pub fn describe(&self) -> String {
        match self {
            Step::SetUser { name, .. } => format!("user {name}"),
            Step::ProtectedModeOff => "protected-mode no".into(),
            Step::MasterAuth { user, .. } if user.is_empty() => "masteruser (cleared)".into(),
            Step::MasterAuth { user, .. } => format!("masteruser {user}"),
        }
    }
}

/// The rule words of an open `default` user (authentication off).
fn open_default() -> Vec<String> {
    ["on", "nopass", "allkeys", "allchannels", "allcommands"]
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// What to send one server, given the plan, whether the pod was started with authentication on (only such a
/// pod's `default` user gets passwords: a pod started without it keeps serving unauthenticated clients, its
/// probe among them, until it is replaced), what it holds, and what it [`Reported`] after the operator's last
/// `ACL SETUSER`. The operator's users come first, so the operator can still log in after `default` changes;
/// `default` last.
pub fn steps(
    plan: &Plan,
    started_with_auth: bool,
    observed: &Observed,
    reported: &Reported,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let Some(replication) = &plan.replication_password else {
        // Off: `default` open again, replicas authenticate as nobody. The operator's users stay until restart.
        let open = observed.users.get("default").cloned().flatten();
        let is_open = open.is_some_and(|u| {
            u.flags.iter().any(|f| f == "on")
                && u.flags.iter().any(|f| f == "nopass")
                && u.commands == "+@all"
        });
        if observed.protected_mode != "no" {
            steps.push(Step::ProtectedModeOff);
        }
        if !is_open {
            steps.push(Step::SetUser {
                name: "default".into(),
                words: open_default(),
            });
        }
        if !observed.masteruser.is_empty() || !observed.masterauth.is_empty() {
            steps.push(Step::MasterAuth {
                user: String::new(),
                password: String::new(),
            });
        }
        return steps;
    };
    // The whole rule set as the server reports it, so rules widened through an administrative connection
    // (`ACL SETUSER exporter +@all`) are put back, not only passwords.
    let live = |user: &DesiredUser| observed.users.get(user.name).cloned().flatten();
    let holds = |user: &DesiredUser| {
        live(user).is_some_and(|u| {
            crate::auth::rules::holds(&user.rules, &user.hashes, &u)
                || reported
                    .get(user.name)
                    .is_some_and(|(words, after)| *words == user.rules && *after == u)
        })
    };
    let set = |user: &DesiredUser| {
        let mut words = user.rules.clone();
        // Only where the server has selectors: `clearselectors` is Redis 7's, and a new rule set keeps them.
        if live(user).is_some_and(|u| !u.selectors.is_empty()) {
            let at = words
                .iter()
                .position(|w| w == "-@all")
                .unwrap_or(words.len());
            words.insert(at, "clearselectors".into());
        }
        Step::SetUser {
            name: user.name.into(),
            words,
        }
    };
    for user in plan.users.iter().filter(|u| u.name != "default") {
        if !holds(user) {
            steps.push(set(user));
        }
    }
    if observed.masteruser != REPLICATION_USER || &observed.masterauth != replication {
        steps.push(Step::MasterAuth {
            user: REPLICATION_USER.into(),
            password: replication.clone(),
        });
    }
    if started_with_auth {
        if let Some(default) = plan.users.iter().find(|u| u.name == "default") {
            if !holds(default) {
                steps.push(set(default));
            }
        }
    }
    steps
}

/// The outcome of one pass.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per pod: holding the plan (checked or set in this pass) with what was set, or why not.
    pub pass: PassOutcome<Vec<String>>,
    /// Per pod, what its server reported after the operator's `ACL SETUSER`s (the input's, plus this pass's).
    pub reported: BTreeMap<String, Reported>,
}

async fn observe(node: &RedisNode, plan: &Plan) -> Result<Observed, RedisError> {
    let mut observed = Observed::default();
    let mut names: Vec<&str> = plan.users.iter().map(|u| u.name).collect();
    if !names.contains(&"default") {
        names.push("default");
    }
    for name in names {
        observed
            .users
            .insert(name.to_string(), node.acl_user(name).await?);
    }
    observed.masteruser = node.config_get("masteruser").await?.unwrap_or_default();
    observed.masterauth = node.config_get("masterauth").await?.unwrap_or_default();
    observed.protected_mode = node.config_get("protected-mode").await?.unwrap_or_default();
    Ok(observed)
}

async fn send(node: &RedisNode, step: &Step) -> Result<(), RedisError> {
    match step {
        Step::SetUser { name, words } => node.acl_setuser(name, words).await,
        Step::ProtectedModeOff => node.config_set("protected-mode", "no").await,
        Step::MasterAuth { user, password } => {
            // The password first: a replica reconnecting in between offers the new one as the old user,
            // which only fails that attempt.
            node.config_set("masterauth", password).await?;
            node.config_set("masteruser", user).await
        }
    }
}

/// Brings every pod's server to `plan`: observes it, sends [`steps`] (only while `leading()`, asked before each
/// server), and observes again. `reported` is the previous pass's [`Outcome::reported`]. Pods being deleted are
/// left out.
pub async fn converge(
    pods: &[Arc<Pod>],
    plan: &Plan,
    access: &Access,
    leading: impl Fn() -> bool,
    reported: &BTreeMap<String, Reported>,
) -> Outcome {
    let leading = &leading;
    let known = Mutex::new(BTreeMap::new());
    let known = &known;
    let pass = each_live_pod(pods, |pod| async move {
        let name = pod.name_any();
        let mut reported_here = reported.get(&name).cloned().unwrap_or_default();
        let result = match address_of(pod) {
            Ok(at) => {
                let started_with_auth = pod_started_with_auth(pod.annotations());
                converge_server(
                    &at.host,
                    at.port,
                    plan,
                    started_with_auth,
                    access,
                    leading,
                    &mut reported_here,
                )
                .await
            }
            Err(why) => Err(why),
        };
        if !reported_here.is_empty() {
            if let Ok(mut known) = known.lock() {
                known.insert(name, reported_here);
            }
        }
        result
    })
    .await;
    let reported = known.lock().map(|k| k.clone()).unwrap_or_default();
    Outcome { pass, reported }
}

/// One server's pass of [`converge`]: observe, send [`steps`] while `leading()`, observe again through a new
/// login, and record in `reported` what the server now reports for each user it set. Returns what was set.
pub async fn converge_server(
    host: &str,
    port: u16,
    plan: &Plan,
    started_with_auth: bool,
    access: &Access,
    leading: impl Fn() -> bool,
    reported: &mut Reported,
) -> Result<Vec<String>, Pending> {
    let at = Endpoint {
        host: host.to_string(),
        port,
    };
    let node = login(&at, access).await?;
    let todo = steps(
        plan,
        started_with_auth,
        &observe(&node, plan).await?,
        reported,
    );
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    if !leading() {
        return Err(Pending::NotYet(
            "not sent: leadership of the operator is not proven".into(),
        ));
    }
    for step in &todo {
        send(&node, step).await?;
    }
    // Look again through a new login: the operator's user may have just been created. One connection at a
    // time (the client bounds how many are open at once).
    drop(node);
    let node = login_fresh(&at, access).await?;
    let observed = observe(&node, plan).await?;
    for step in &todo {
        let Step::SetUser { name, .. } = step else {
            continue;
        };
        let desired = plan.users.iter().find(|u| u.name == name.as_str());
        let after = observed.users.get(name).cloned().flatten();
        if let (Some(desired), Some(after)) = (desired, after) {
            reported.insert(name.clone(), (desired.rules.clone(), after));
        }
    }
    let again = steps(plan, started_with_auth, &observed, reported);
    if again.is_empty() {
        Ok(todo.iter().map(Step::describe).collect())
    } else {
        Err(Pending::NotYet(format!(
            "still differs after setting: {again:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{desired_users, resolve};

    fn plan(enabled: bool) -> Plan {
        let spec = crate::api::AuthSpec {
            enabled,
            ..Default::default()
        };
        let mut n = 0;
        let resolved = resolve("cache", &spec, None, None, &mut || {
            n += 1;
            format!("pw{n}")
        })
        .unwrap();
        Plan {
            users: if enabled {
                desired_users(&spec, &resolved)
            } else {
                Vec::new()
            },
            replication_password: enabled.then(|| resolved.internal[REPLICATION_USER].clone()),
        }
    }

    fn holding(plan: &Plan) -> Observed {
        Observed {
            users: plan
                .users
                .iter()
                .map(|u| {
                    let mut reported = crate::auth::rules::as_reported(&u.rules, &u.hashes);
                    reported.passwords.reverse();
                    (u.name.to_string(), Some(reported))
                })
                .collect(),
            masteruser: REPLICATION_USER.into(),
            masterauth: plan.replication_password.clone().unwrap(),
            protected_mode: "yes".into(),
        }
    }

    fn fresh_server() -> Observed {
        Observed {
            users: [(
                "default".to_string(),
                Some(AclUser {
                    flags: vec!["on".into(), "nopass".into()],
                    commands: "+@all".into(),
                    keys: "~*".into(),
                    channels: "&*".into(),
                    ..Default::default()
                }),
            )]
            .into(),
            // Started with authentication off: `--protected-mode no` on its command line.
            protected_mode: "no".into(),
            ..Default::default()
        }
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::describe).collect()
    }

    #[test]
    fn a_server_that_holds_the_plan_gets_nothing() {
        let on = plan(true);
        assert!(steps(&on, true, &holding(&on), &Reported::default()).is_empty());
        assert!(steps(&plan(false), false, &fresh_server(), &Reported::default()).is_empty());
    }

    #[test]
    fn turning_auth_on_creates_the_operators_users_first_and_default_only_on_pods_started_with_it()
    {
        let plan = plan(true);
        let old_pod = steps(&plan, false, &fresh_server(), &Reported::default());
        assert_eq!(
            names(&old_pod),
            [
                "user redis-operator",
                "user replication",
                "user probe",
                "user exporter",
                "masteruser replication"
            ]
        );
        let new_pod = steps(&plan, true, &fresh_server(), &Reported::default());
        assert_eq!(new_pod.last().unwrap().describe(), "user default");
    }

    #[test]
    fn a_rotated_password_resets_only_the_default_users_passwords() {
        let plan = plan(true);
        let mut observed = holding(&plan);
        observed
            .users
            .get_mut("default")
            .unwrap()
            .as_mut()
            .unwrap()
            .passwords = vec!["0000".into()];
        let todo = steps(&plan, true, &observed, &Reported::default());
        assert_eq!(names(&todo), ["user default"]);
        let Step::SetUser { words, .. } = &todo[0] else {
            panic!()
        };
        assert!(words.contains(&"resetpass".to_string()));
        assert!(!words.contains(&"reset".to_string()), "connections stay");
    }

    #[test]
    fn widened_rules_are_set_again_and_selectors_cleared() {
        let plan = plan(true);
        let mut observed = holding(&plan);
        let user = |observed: &mut Observed, name: &str| {
            observed
                .users
                .get_mut(name)
                .unwrap()
                .as_mut()
                .unwrap()
                .clone()
        };
        let mut exporter = user(&mut observed, "exporter");
        exporter.commands = "+@all".into();
        let mut default = user(&mut observed, "default");
        default.commands.push_str(" +@admin");
        let mut probe = user(&mut observed, "probe");
        probe.flags.push("skip-sanitize-payload".into());
        let mut replication = user(&mut observed, "replication");
        replication.selectors.push(crate::redis::AclSelector {
            commands: "+@all".into(),
            keys: "~*".into(),
            channels: String::new(),
        });
        for (name, widened) in [
            ("exporter", exporter),
            ("default", default),
            ("probe", probe),
            ("replication", replication),
        ] {
            observed.users.insert(name.into(), Some(widened));
        }
        let todo = steps(&plan, true, &observed, &Reported::default());
        assert_eq!(
            names(&todo),
            [
                "user replication",
                "user probe",
                "user exporter",
                "user default"
            ]
        );
        let words = |name: &str| match todo.iter().find(|s| s.describe() == format!("user {name}"))
        {
            Some(Step::SetUser { words, .. }) => words.clone(),
            _ => panic!("no step for {name}"),
        };
        assert!(words("replication").contains(&"clearselectors".to_string()));
        assert!(!words("exporter").contains(&"clearselectors".to_string()));
        assert!(words("probe").contains(&"sanitize-payload".to_string()));
    }

    #[test]
    fn a_spelling_the_rules_cannot_recognise_holds_once_reported_after_setting() {
        let plan = plan(true);
        let mut observed = holding(&plan);
        // Redis expands overlapping categories into single commands: not recognisable as the words.
        let expanded = "-@all +@string +@hash -flushall +lolwut";
        observed
            .users
            .get_mut("default")
            .unwrap()
            .as_mut()
            .unwrap()
            .commands = expanded.into();
        assert_eq!(
            names(&steps(&plan, true, &observed, &Reported::default())),
            ["user default"]
        );
        let default = plan.users.iter().find(|u| u.name == "default").unwrap();
        let after = observed.users["default"].clone().unwrap();
        let reported = Reported::from([("default".to_string(), (default.rules.clone(), after))]);
        assert!(steps(&plan, true, &observed, &reported).is_empty());
        // Reported for other words, or changed since: set again.
        let stale = Reported::from([(
            "default".to_string(),
            (
                vec!["on".to_string()],
                observed.users["default"].clone().unwrap(),
            ),
        )]);
        assert_eq!(
            names(&steps(&plan, true, &observed, &stale)),
            ["user default"]
        );
        let mut widened = observed.clone();
        widened
            .users
            .get_mut("default")
            .unwrap()
            .as_mut()
            .unwrap()
            .commands
            .push_str(" +@admin");
        assert_eq!(
            names(&steps(&plan, true, &widened, &reported)),
            ["user default"]
        );
    }

    #[test]
    fn turning_auth_off_opens_default_and_clears_masterauth() {
        let on = plan(true);
        let todo = steps(&plan(false), true, &holding(&on), &Reported::default());
        assert_eq!(
            names(&todo),
            ["protected-mode no", "user default", "masteruser (cleared)"]
        );
        // A pod started with authentication off runs with protected mode off already.
        let started_off = Observed {
            protected_mode: "no".into(),
            ..holding(&on)
        };
        let todo = steps(&plan(false), true, &started_off, &Reported::default());
        assert_eq!(names(&todo), ["user default", "masteruser (cleared)"]);
    }

    #[test]
    fn steps_and_plans_never_show_a_password_or_hash() {
        let plan = plan(true);
        for text in [
            format!(
                "{:?}",
                steps(&plan, true, &fresh_server(), &Reported::default())
            ),
            format!("{plan:?}"),
        ] {
            assert!(!text.contains(plan.replication_password.as_deref().unwrap()));
            assert!(!text.contains('#'));
            assert!(!text.contains(&plan.users[0].hashes[0]), "{text}");
        }
    }
}
