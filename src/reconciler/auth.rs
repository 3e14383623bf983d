//! The reconcile's authentication steps: resolve the passwords from the Secrets (read by name), create the
//! generated `NAME-auth` and apply `NAME-acl`, then bring running servers to the users (see [`crate::auth`]).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use redis_fsm::{Reason, SpecProblem};
use tracing::{debug, info, warn};

use super::context::{hash_pods, Snapshot, Verified};
use super::owned::apply_unless_held;
use super::{controlled_by, event, Context};
use crate::api::{AuthStatus, RedisInstance};
use crate::auth::{self, Resolved};
use crate::converge::auth::{self as converge, Plan};
use crate::desired::metadata;
use crate::error::{Error, Result};
use crate::events::EventReason;
use crate::names::users_secret_name;
use crate::observe::secrets::Keys;
use crate::redis::Access;

/// The outcome of resolving: the passwords and how the operator reaches the servers.
pub(super) struct Prepared {
    /// The passwords.
    pub resolved: Resolved,
    /// The operator's access to the servers.
    pub access: Access,
}

/// Resolves the passwords; creates `NAME-auth` when the password is to be generated, applies `NAME-acl`.
/// A Secret problem is returned as the spec problem to report (nothing is changed then).
pub(super) async fn prepare(
    ri: &RedisInstance,
    ctx: &Context,
) -> Result<std::result::Result<Prepared, SpecProblem>> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let spec = &ri.spec.auth;
    let (app_name, app_key) = auth::application_secret(&name, spec);
    let app_keys = [app_key.as_str(), auth::PREVIOUS_PASSWORD_KEY];
    let users_name = users_secret_name(&name);
    let (app_secret, users_secret) = futures::try_join!(
        ctx.secrets
            .get(&namespace, &app_name, Keys::Only(&app_keys)),
        ctx.secrets.get(&namespace, &users_name, Keys::All),
    )
    .inspect_err(|e| ctx.metrics.record_api_error("get", e))?;
    if let Some(users) = users_secret.as_deref().filter(|s| !controlled_by(*s, ri)) {
        return Ok(Err(SpecProblem {
            reason: Reason::ChildConflict,
            message: format!(
                "Secret {} already exists and does not belong to this instance; the operator leaves it \
                 untouched. Delete or rename it, or give the instance another name.",
                users.name_any()
            ),
        }));
    }
    // The generated password's place: a Secret someone else put there holds a password they know, so it is
    // never used (nor taken over).
    let generated = spec.enabled && spec.secret_ref.is_none();
    if let Some(app) = app_secret
        .as_deref()
        .filter(|s| generated && !controlled_by(*s, ri))
    {
        return Ok(Err(SpecProblem {
            reason: Reason::ChildConflict,
            message: format!(
                "Secret {} already exists and does not belong to this instance (the operator generates the \
                 password into it); the operator neither uses nor touches it. Delete or rename it, give the \
                 instance another name, or name your own password Secret in spec.auth.secretRef.",
                app.name_any()
            ),
        }));
    }
    // Generated only when `resolve` asks (a converged instance needs none); the random source can fail, which
    // is reported after `resolve` returns, before anything generated is used.
    let mut random_failure = None;
    let resolved = auth::resolve(
        &name,
        spec,
        app_secret.as_deref(),
        users_secret.as_deref(),
        &mut || {
            auth::random_password().unwrap_or_else(|e| {
                random_failure = Some(e);
                String::new()
            })
        },
    );
    if let Some(e) = random_failure {
        return Err(Error::Random(e.to_string()));
    }
    let resolved = match resolved {
        Ok(resolved) => resolved,
        Err(problem) => {
            return Ok(Err(SpecProblem {
                reason: Reason::AuthSecretInvalid,
                message: format!(
                    "{problem}; the operator changes nothing until it is fixed (spec.auth)"
                ),
            }))
        }
    };
    let owner = ri
        .controller_owner_ref(&())
        .expect("instances read from the API have a name and uid");
    // The generated password's Secret is created before the users' Secret is applied, never beside it: a
    // reconcile whose cache has not seen the Secrets it created a moment ago gets a conflict here and stops, instead
    // of overwriting `NAME-acl` with passwords generated anew (which the servers already started with do not hold).
    if let Some(password) = &resolved.create_application_secret {
        let secret = Secret {
            metadata: metadata::metadata(ri, app_name.clone(), &owner),
            type_: Some("Opaque".into()),
            string_data: Some([(auth::PASSWORD_KEY.to_string(), password.clone())].into()),
            ..Default::default()
        };
        create_secret(ctx, &namespace, &secret).await?;
        info!(secret = %app_name, "generated the application password");
    }
    if let Some(data) = auth::users_secret_data(spec, &resolved) {
        // Without `NAME-acl` in the cache the internal passwords were generated just now. The cache may only lag
        // (it can hold `NAME-auth`, created first, and not yet `NAME-acl`): the API server is asked, and a
        // `NAME-acl` it holds is never overwritten with new passwords.
        if users_secret.is_none() {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            let live = api
                .get_metadata_opt(&users_name)
                .await
                .inspect_err(|e| ctx.metrics.record_api_error("get", e))?;
            if live.is_some() {
                return Err(Error::CacheStale(format!("Secret {users_name}")));
            }
        }
        let secret = Secret {
            metadata: metadata::metadata(ri, users_name.clone(), &owner),
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        apply_secret(ctx, &namespace, &secret, users_secret.as_deref()).await?;
    }
    let access = Access {
        timeouts: ctx.redis_timeouts,
        login: auth::operator_login(&resolved),
        // Set by the TLS step (`reconciler::tls`).
        tls: Default::default(),
    };
    Ok(Ok(Prepared { resolved, access }))
}

/// Creates `secret`; one that exists already (the cache has not seen it yet) is [`Error::CacheStale`]: its watch
/// event brings the next reconcile.
async fn create_secret(ctx: &Context, namespace: &str, secret: &Secret) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.create(&PostParams::default(), secret).await {
        Ok(created) => {
            ctx.secrets.remember(created);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Err(Error::CacheStale(format!("Secret {}", secret.name_any())))
        }
        Err(e) => {
            ctx.metrics.record_api_error("create", &e);
            Err(e.into())
        }
    }
}

/// Brings running servers to the users and replication credentials, unless nothing changed since every pod
/// was last found holding them, less than [`super::context::CONVERGED_RECHECK`] ago (a converged instance sends no
/// command, only reads its users back that often). Returns the status to record.
pub(super) async fn converge_pass(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    prepared: &Prepared,
) -> AuthStatus {
    let spec = &ri.spec.auth;
    let resolved = &prepared.resolved;
    let plan = Plan {
        users: if resolved.application.is_some() {
            auth::desired_users(spec, resolved)
        } else {
            Vec::new()
        },
        replication_password: resolved
            .application
            .as_ref()
            .and(resolved.internal.get(auth::REPLICATION_USER).cloned()),
    };
    let previous = ri.status.as_ref().and_then(|s| s.auth.clone());
    let app = resolved.application.as_ref();
    let mut status = AuthStatus {
        enabled: app.is_some(),
        secret: app.map(|a| a.secret.clone()),
        applied_secret_version: previous
            .as_ref()
            .and_then(|p| p.applied_secret_version.clone())
            .filter(|_| app.is_some()),
        message: auth::status_message(app),
    };
    let pods = &snapshot.pods;
    let key = ObjectRef::from_obj(ri);
    let fingerprint = fingerprint(&plan, pods);
    if !ctx.verified(ri, Verified::Auth, fingerprint) {
        let leadership = ctx.leadership.clone();
        let reported = ctx
            .acl_reported
            .lock()
            .map(|r| r.get(&key).cloned().unwrap_or_default())
            .unwrap_or_default();
        let outcome = converge::converge(
            pods,
            &plan,
            &prepared.access,
            || leadership.is_held(),
            &reported,
        )
        .await;
        if let Ok(mut r) = ctx.acl_reported.lock() {
            r.insert(key.clone(), outcome.reported.clone());
        }
        for (pod, set) in outcome.pass.done.iter().filter(|(_, set)| !set.is_empty()) {
            info!(%pod, set = %set.join(", "), "authentication set at runtime");
        }
        let all = outcome.pass.everywhere()
            && pods.len() >= usize::try_from(ri.spec.replicas).unwrap_or(0);
        if all {
            ctx.record_verified(ri, Verified::Auth, fingerprint);
        } else {
            let pending: Vec<String> = outcome
                .pass
                .pending
                .iter()
                .map(|(pod, why)| format!("{pod}: {}", why.why()))
                .collect();
            debug!(pending = %pending.join("; "), "authentication not in force everywhere");
            if app.is_some() && !pending.is_empty() {
                status.message = format!(
                    "{}; not yet in force on {}",
                    status.message,
                    outcome.pass.pending_pods().join(", ")
                );
            }
            return status;
        }
    }
    if let Some(app) = app {
        if app.version.is_some() && status.applied_secret_version != app.version {
            let before = status
                .applied_secret_version
                .replace(app.version.clone().unwrap_or_default());
            if before.is_some() {
                let previous_note = if app.previous {
                    format!(
                        "; {} is still accepted until it is removed",
                        auth::PREVIOUS_PASSWORD_KEY
                    )
                } else {
                    String::new()
                };
                event(
                    ctx,
                    ri,
                    EventType::Normal,
                    EventReason::PasswordInForce,
                    "Authentication",
                    format!(
                        "the passwords of Secret {} (resourceVersion {}) are in force on every pod, without \
                         restarts{previous_note}",
                        app.secret,
                        app.version.as_deref().unwrap_or_default()
                    ),
                )
                .await;
            }
        }
    }
    if let Err(error) = apply_connection(ri, ctx, app).await {
        // Retried at the next pass (the auth pass runs on every reconcile).
        warn!(%error, "NAME-connection not applied");
    }
    status
}

/// `NAME-connection` with the password in force on every pod (this pass reaches here only then), applied when its
/// cached content differs (see [`crate::desired::connection`]).
async fn apply_connection(
    ri: &RedisInstance,
    ctx: &Context,
    app: Option<&auth::ApplicationPasswords>,
) -> Result<()> {
    let namespace = ri.namespace().unwrap_or_default();
    let name = crate::names::connection_secret_name(&ri.name_any());
    let live = ctx
        .secrets
        .get(&namespace, &name, Keys::All)
        .await
        .inspect_err(|e| ctx.metrics.record_api_error("get", e))?;
    if let Some(foreign) = live.as_deref().filter(|s| !controlled_by(*s, ri)) {
        // Someone else's Secret in its place: left untouched, never overwritten.
        debug!(secret = %foreign.name_any(), "NAME-connection belongs to someone else");
        return Ok(());
    }
    let owner = ri
        .controller_owner_ref(&())
        .expect("instances read from the API have a name and uid");
    let desired = crate::desired::connection::secret(ri, &owner, app.map(|a| a.current.as_slice()));
    apply_secret(ctx, &namespace, &desired, live.as_deref()).await
}

/// Applies one of the instance's own Secrets unless `live` already holds it, and keeps what the API server
/// answered as the content read at its new version: the reconcile its watch event brings does not read it back
/// (one GET per written Secret, three per new instance, before).
async fn apply_secret(
    ctx: &Context,
    namespace: &str,
    desired: &Secret,
    live: Option<&Secret>,
) -> Result<()> {
    if let Some(applied) = apply_unless_held(ctx, namespace, desired, live).await? {
        ctx.secrets.remember(applied);
    }
    Ok(())
}

/// What the pass depends on: the plan and the pods (see [`hash_pods`]).
fn fingerprint(plan: &Plan, pods: &[Arc<k8s_openapi::api::core::v1::Pod>]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for user in &plan.users {
        user.name.hash(&mut hasher);
        user.rules.hash(&mut hasher);
    }
    plan.replication_password.hash(&mut hasher);
    hash_pods(pods, &mut hasher);
    hasher.finish()
}
