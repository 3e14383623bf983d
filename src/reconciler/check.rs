//! The first steps: the spec ([`check_spec`]); then, once no foreign object holds a child's name, the TLS and
//! password Secrets ([`check_secrets`]). A problem refuses the change before anything is applied.

use redis_fsm::{Reason, SpecProblem};

use super::auth;
use super::context::{Context, Snapshot};
use super::report::{refuse, Next, Report};
use super::tls;
use crate::api::RedisInstance;
use crate::error::Result;
use crate::validate::validate;

/// The spec: a problem refuses the change before anything is built or applied.
pub(super) fn check_spec(ri: &RedisInstance, snapshot: &Snapshot, report: &mut Report) -> Next<()> {
    let errors = validate(&ri.spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let problem = SpecProblem {
            reason: Reason::InvalidSpec,
            message,
        };
        // Nothing to retry until the user changes the object.
        return refuse(snapshot, problem, report);
    }
    if let Some(message) = server_problem(ri, snapshot) {
        let problem = SpecProblem {
            reason: Reason::UnsupportedServer,
            message,
        };
        return refuse(snapshot, problem, report);
    }
    Next::Go(())
}

/// The image's server: one the operator does not run, judged from the tag ([`redis_fsm::image_problem`]), or a
/// change of image the running servers' replicas could not follow ([`redis_fsm::image_change_problem`], judged
/// against the confirmed primary's server as the status recorded it, or every pod's before one is confirmed).
fn server_problem(ri: &RedisInstance, snapshot: &Snapshot) -> Option<String> {
    let image = &ri.spec.image;
    if let Some(problem) = redis_fsm::image_problem(image) {
        return Some(format!("spec.image: {problem}"));
    }
    let applied = snapshot
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| {
            p.containers
                .iter()
                .find(|c| c.name == crate::desired::container::CONTAINER)
        })
        .and_then(|c| c.image.as_deref());
    if applied.is_none_or(|applied| applied == image) {
        return None;
    }
    let status = ri.status.as_ref()?;
    let recorded = |pod: &crate::api::PodStatus| redis_fsm::parse_recorded(&pod.server);
    let primary = status
        .pods
        .iter()
        .filter(|p| Some(&p.name) == status.current_primary.as_ref())
        .find_map(recorded);
    let running: Vec<_> = match primary {
        Some(primary) => vec![primary],
        None => status.pods.iter().filter_map(recorded).collect(),
    };
    redis_fsm::image_change_problem(&running, image).map(|problem| format!("spec.image: {problem}"))
}

/// The TLS and password Secrets (the generated ones are created here): a problem refuses the change before
/// any other child is applied.
pub(super) async fn check_secrets(
    ri: &RedisInstance,
    ctx: &Context,
    snapshot: &Snapshot,
    report: &mut Report,
) -> Result<Next<(tls::Prepared, auth::Prepared)>> {
    // Before anything is applied: a bad TLS Secret leaves everything as it is.
    let tls = match tls::prepare(ri, ctx, snapshot).await? {
        Ok(tls) => tls,
        // The Secret's watch event brings the next reconcile.
        Err(problem) => return Ok(refuse(snapshot, problem, report)),
    };
    let mut prepared = match auth::prepare(ri, ctx).await? {
        Ok(prepared) => prepared,
        // The Secret's watch event brings the next reconcile.
        Err(problem) => return Ok(refuse(snapshot, problem, report)),
    };
    prepared.access.tls = tls.trust.clone();
    Ok(Next::Go((tls, prepared)))
}
