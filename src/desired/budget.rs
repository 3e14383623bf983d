//! Pure builders of an instance's PodDisruptionBudgets: a drain never evicts the primary, and keeps
//! enough replicas.
//!
//! `NAME-primary` selects the pod labelled primary with `minAvailable: 1`: its eviction is refused
//! for as long as it is the primary. When its node is cordoned the operator switches over first
//! (see `docs/replication.md`), the label moves, and the drain evicts the old primary as a replica.
//! `NAME-replicas` selects the in-sync replicas and lets one go at a time, or keeps
//! `minReplicasToWrite` of them when that is set (fewer would stop writes). Without replicas there
//! is nobody to hand over to: both budgets then allow the eviction, which a drain needs.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use redis_fsm::RoleLabel;

use crate::api::RedisInstance;
use crate::desired::metadata::{metadata, selector_labels};
use crate::names::{primary_budget_name, replicas_budget_name, ROLE_LABEL};

/// The two budgets of `ri`: the primary's, then the replicas'.
pub fn budgets(ri: &RedisInstance, owner: &OwnerReference) -> [PodDisruptionBudget; 2] {
    let name = ri.name_any();
    let replicated = ri.spec.replicas >= 2;
    let budget = |budget_name: String, role: RoleLabel, spec: PodDisruptionBudgetSpec| {
        let mut labels = selector_labels(&name);
        labels.insert(ROLE_LABEL.to_string(), role.as_str().to_string());
        PodDisruptionBudget {
            metadata: metadata(ri, budget_name, owner),
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some(labels),
                    ..Default::default()
                }),
                ..spec
            }),
            ..Default::default()
        }
    };
    let one_may_go = PodDisruptionBudgetSpec {
        max_unavailable: Some(IntOrString::Int(1)),
        ..Default::default()
    };
    let primary = if replicated {
        PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            ..Default::default()
        }
    } else {
        one_may_go.clone()
    };
    let replicas = match ri.spec.replication.min_replicas_to_write {
        Some(keep) if replicated && keep > 0 => PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(keep)),
            ..Default::default()
        },
        _ => one_may_go,
    };
    [
        budget(primary_budget_name(&name), RoleLabel::Primary, primary),
        budget(replicas_budget_name(&name), RoleLabel::Replica, replicas),
    ]
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;
    use crate::desired::children::tests::instance;

    fn spec(pdb: &PodDisruptionBudget) -> &PodDisruptionBudgetSpec {
        pdb.spec.as_ref().unwrap()
    }

    fn role(pdb: &PodDisruptionBudget) -> &str {
        &spec(pdb)
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[ROLE_LABEL]
    }

    #[test]
    fn the_primary_is_kept_and_replicas_go_one_at_a_time() {
        let mut ri = instance("cache");
        ri.spec.replicas = 3;
        let owner = ri.controller_owner_ref(&()).unwrap();
        let [primary, replicas] = budgets(&ri, &owner);
        assert_eq!(primary.name_any(), "cache-primary");
        assert_eq!(role(&primary), "primary");
        assert_eq!(spec(&primary).min_available, Some(IntOrString::Int(1)));
        assert_eq!(replicas.name_any(), "cache-replicas");
        assert_eq!(role(&replicas), "replica");
        assert_eq!(spec(&replicas).max_unavailable, Some(IntOrString::Int(1)));
        let selector = spec(&primary)
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(selector["app.kubernetes.io/instance"], "cache");
        assert_eq!(primary.owner_references(), [owner]);
    }

    #[test]
    fn min_replicas_to_write_are_kept_and_a_lone_pod_may_be_evicted() {
        let mut ri = instance("cache");
        ri.spec.replicas = 3;
        ri.spec.replication.min_replicas_to_write = Some(2);
        let owner = ri.controller_owner_ref(&()).unwrap();
        let [_, replicas] = budgets(&ri, &owner);
        assert_eq!(spec(&replicas).min_available, Some(IntOrString::Int(2)));
        ri.spec.replicas = 1;
        for pdb in budgets(&ri, &owner) {
            assert_eq!(spec(&pdb).max_unavailable, Some(IntOrString::Int(1)));
            assert_eq!(spec(&pdb).min_available, None);
        }
    }
}
