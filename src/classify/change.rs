//! Classifying a spec change into the least destructive way to roll it out.

use crate::api::quantity::Quantity;
use crate::classify::diff::is_applied;
use crate::names::CONFIG_HASH_ANNOTATION;
use k8s_openapi::api::apps::v1::StatefulSet;
use redis_fsm::{Change, Reason, SpecProblem};

/// How the StatefulSet must change to match the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatefulSetChange {
    /// Nothing to do: the live StatefulSet already matches.
    None,
    /// There is no StatefulSet yet: create it.
    Create,
    /// Replicas, image, resources or other template fields: update in place, pods roll one at a time.
    Rolling,
    /// The configuration hash changed: update in place, which restarts the pods one at a time.
    Restart,
    /// The claim template changed (immutable in a StatefulSet): expand existing claims when the size grew,
    /// then replace the StatefulSet with an orphaning delete so that running pods are untouched.
    Storage {
        /// The new claim size when it grew: every existing claim is expanded to it first.
        expand_to: Option<String>,
        /// What the user should know, e.g. that existing claims keep their storage class.
        note: Option<String>,
    },
    /// The change cannot be applied without losing data: touch nothing and report why.
    Refused(SpecProblem),
}

impl StatefulSetChange {
    /// The phase engine's view of the change, once it has been applied.
    pub fn applied(&self) -> Change {
        match self {
            Self::None | Self::Refused(_) => Change::None,
            Self::Create => Change::Created,
            Self::Rolling => Change::RollingUpdate,
            Self::Restart => Change::Restart,
            Self::Storage { .. } => Change::StorageChange,
        }
    }
}

/// The storage-relevant part of a StatefulSet: claim size and class of the `data` template.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ClaimTemplate {
    size: Option<String>,
    class: Option<String>,
}

fn claim_template(sts: &StatefulSet) -> Option<ClaimTemplate> {
    let template = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .first()?;
    let spec = template.spec.as_ref();
    Some(ClaimTemplate {
        size: spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone()),
        class: spec.and_then(|s| s.storage_class_name.clone()),
    })
}

/// The storage request of the StatefulSet's data claim template, as written in it.
pub fn storage_request(sts: &StatefulSet) -> Option<String> {
    claim_template(sts)?.size
}

/// The config hash on a StatefulSet's pod template.
pub fn template_config_hash(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
}

fn refuse(message: String) -> StatefulSetChange {
    StatefulSetChange::Refused(SpecProblem {
        reason: Reason::StorageChangeRefused,
        message,
    })
}

/// Compares the desired StatefulSet with the live one and says how to get from one to the other.
/// Storage changes win over restarts, restarts over rolling updates.
pub fn classify_change(desired: &StatefulSet, live: Option<&StatefulSet>) -> StatefulSetChange {
    let Some(live) = live else {
        return StatefulSetChange::Create;
    };
    let (want, have) = (claim_template(desired), claim_template(live));
    if want != have {
        let storage = classify_storage(want, have);
        if storage != StatefulSetChange::None {
            return storage;
        }
    }
    if template_config_hash(desired) != template_config_hash(live) {
        return StatefulSetChange::Restart;
    }
    if !is_applied(desired, live) {
        return StatefulSetChange::Rolling;
    }
    StatefulSetChange::None
}

fn classify_storage(want: Option<ClaimTemplate>, have: Option<ClaimTemplate>) -> StatefulSetChange {
    let (want, have) = match (want, have) {
        (None, Some(_)) => return refuse(
            "spec.storage: storage cannot be removed from an instance that has it; the claims and \
                 their data are kept. Restore spec.storage to continue."
                .into(),
        ),
        (Some(_), None) => {
            return StatefulSetChange::Storage {
                expand_to: None,
                note: Some("data directory moves from emptyDir to a persistent claim".into()),
            }
        }
        (Some(want), Some(have)) => (want, have),
        (None, None) => return StatefulSetChange::None,
    };
    // Compared as the API server stores them (rounded up to a milli), so a size finer than that is neither
    // a growth nor a shrink against its own stored form.
    let parse = |size: &Option<String>| {
        size.as_deref()
            .and_then(|s| s.parse::<Quantity>().ok())
            .map(Quantity::canonical)
    };
    let (want_size, have_size) = (parse(&want.size), parse(&have.size));
    let mut expand_to = None;
    match (want_size, have_size) {
        (Some(w), Some(h)) if w < h => {
            return refuse(format!(
                "spec.storage.size: claims cannot shrink (from {} to {}); nothing was changed. \
                 Set spec.storage.size to {} or more.",
                have.size.clone().unwrap_or_default(),
                want.size.clone().unwrap_or_default(),
                have.size.clone().unwrap_or_default(),
            ))
        }
        (Some(w), Some(h)) if w > h => expand_to = want.size.clone(),
        _ => {}
    }
    let note = (want.class != have.class).then(|| {
        format!(
            "existing claims keep storage class {}; new claims use {}",
            have.class.as_deref().unwrap_or("(default)"),
            want.class.as_deref().unwrap_or("(default)")
        )
    });
    if expand_to.is_none() && note.is_none() {
        // Equal by value (e.g. 1024Mi vs 1Gi): nothing to do for storage.
        return StatefulSetChange::None;
    }
    StatefulSetChange::Storage { expand_to, note }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClaimDeletePolicy, StorageSpec};
    use crate::desired::children::{build, tests::instance};

    fn with_storage(size: &str, class: Option<&str>) -> crate::api::RedisInstance {
        let mut ri = instance("cache");
        ri.spec.storage = Some(StorageSpec {
            size: size.into(),
            storage_class_name: class.map(Into::into),
            when_deleted: ClaimDeletePolicy::Retain,
        });
        ri
    }

    fn classify(
        desired: &crate::api::RedisInstance,
        live: &crate::api::RedisInstance,
    ) -> StatefulSetChange {
        classify_change(&build(desired).statefulset, Some(&build(live).statefulset))
    }

    #[test]
    fn missing_statefulset_is_created() {
        let desired = build(&instance("cache")).statefulset;
        assert_eq!(classify_change(&desired, None), StatefulSetChange::Create);
        assert_eq!(StatefulSetChange::Create.applied(), Change::Created);
    }

    #[test]
    fn identical_is_no_change() {
        let ri = instance("cache");
        assert_eq!(classify(&ri, &ri), StatefulSetChange::None);
    }

    #[test]
    fn replicas_image_and_resources_roll() {
        let live = instance("cache");
        let mut replicas = live.clone();
        replicas.spec.replicas = 5;
        let mut image = live.clone();
        image.spec.image = "redis:7.4".into();
        let mut resources = live.clone();
        resources.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(
                [(
                    "memory".into(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
                )]
                .into(),
            ),
            ..Default::default()
        });
        for desired in [replicas, image, resources] {
            assert_eq!(classify(&desired, &live), StatefulSetChange::Rolling);
        }
        assert_eq!(StatefulSetChange::Rolling.applied(), Change::RollingUpdate);
    }

    #[test]
    fn config_change_restarts_and_wins_over_rolling() {
        let live = instance("cache");
        let mut desired = live.clone();
        desired
            .spec
            .config
            .insert("appendonly".into(), "yes".into());
        desired.spec.image = "redis:7.4".into();
        assert_eq!(classify(&desired, &live), StatefulSetChange::Restart);
    }

    #[test]
    fn storage_growth_expands_and_replaces() {
        let change = classify(&with_storage("2Gi", None), &with_storage("1Gi", None));
        assert_eq!(
            change,
            StatefulSetChange::Storage {
                expand_to: Some("2Gi".into()),
                note: None
            }
        );
        assert_eq!(change.applied(), Change::StorageChange);
    }

    #[test]
    fn storage_class_change_replaces_and_says_claims_keep_their_class() {
        let change = classify(
            &with_storage("1Gi", Some("fast")),
            &with_storage("1Gi", Some("slow")),
        );
        let StatefulSetChange::Storage { expand_to, note } = change else {
            panic!("expected a storage change, got {change:?}");
        };
        assert_eq!(expand_to, None);
        assert_eq!(
            note.as_deref(),
            Some("existing claims keep storage class slow; new claims use fast")
        );
    }

    #[test]
    fn storage_shrink_and_removal_are_refused() {
        for (desired, live) in [
            (with_storage("1Gi", None), with_storage("2Gi", None)),
            (instance("cache"), with_storage("2Gi", None)),
        ] {
            let change = classify(&desired, &live);
            let StatefulSetChange::Refused(problem) = &change else {
                panic!("expected a refusal, got {change:?}");
            };
            assert_eq!(problem.reason, Reason::StorageChangeRefused);
            assert_eq!(problem.reason, "StorageChangeRefused");
            assert!(problem.message.starts_with("spec.storage"));
            assert_eq!(change.applied(), Change::None);
        }
    }

    #[test]
    fn same_size_in_another_unit_is_no_change() {
        assert_eq!(
            classify(&with_storage("1024Mi", None), &with_storage("1Gi", None)),
            StatefulSetChange::None
        );
    }

    /// The live claim template holds `1001m` for a desired `1.0000001`: not a shrink, not a growth.
    #[test]
    fn size_finer_than_a_milli_is_no_change_against_its_stored_form() {
        assert_eq!(
            classify(
                &with_storage("1.0000001", None),
                &with_storage("1001m", None)
            ),
            StatefulSetChange::None
        );
    }

    #[test]
    fn adding_storage_replaces() {
        let change = classify(&with_storage("1Gi", None), &instance("cache"));
        assert!(matches!(
            change,
            StatefulSetChange::Storage {
                expand_to: None,
                note: Some(_)
            }
        ));
    }
}
