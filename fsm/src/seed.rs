//! Restore by declaration: the one next step towards an instance whose first pod holds a backup, before any
//! pod serves (no primary is chosen until it is done).
//!
//! [`seed_step`] is a pure function of this pass's observation of every pod and of the backup's replication id.
//! A server seeded from the backup (a full synchronisation from the operator, which serves the snapshot as a
//! primary would) takes the backup's replication id as its own: that is how a seeded pod is recognised, also
//! by an operator that restarted in the middle.

use crate::model::{PodReplication, WaitReason};

/// The next step of a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedStep {
    /// Nothing can be done yet.
    Wait(WaitReason),
    /// Seed this pod (the lowest ordinal, every pod observed and empty).
    Seed(String),
    /// This pod holds the backup's data: the restore is done.
    Seeded(String),
    /// These pods hold data of another history: restoring over it is refused.
    Refuse(Vec<String>),
}

/// Decides the next step of seeding the instance from a backup whose history is `replid`, complete at `offset`
/// (`None` when not known: a pod of that history is then seeded again, as it may hold only part of it).
pub fn seed_step(pods: &[PodReplication], replid: &str, offset: Option<u64>) -> SeedStep {
    let Some(lowest) = pods.iter().min_by_key(|p| p.ordinal) else {
        return SeedStep::Wait(WaitReason::NoPods);
    };
    let ours = |p: &&PodReplication| p.state().is_some_and(|s| s.replid == replid);
    if let Some(seeded) = pods
        .iter()
        .filter(|p| p.is_observed() && !p.pod_deleting)
        .filter(ours)
        .find(|p| p.state().map(|s| s.repl_offset) == offset && offset.is_some())
    {
        return SeedStep::Seeded(seeded.pod.clone());
    }
    // A pod holding part of the backup's history (a seeding cut short) is seeded again: a full synchronisation
    // replaces what it holds, and no primary ever served it.
    let foreign: Vec<String> = pods
        .iter()
        .filter(|p| p.is_observed() && p.holds_data() && !ours(p))
        .map(|p| p.pod.clone())
        .collect();
    if !foreign.is_empty() {
        return SeedStep::Refuse(foreign);
    }
    let unobserved: Vec<String> = pods
        .iter()
        .filter(|p| !p.is_electable())
        .map(|p| p.pod.clone())
        .collect();
    if !unobserved.is_empty() {
        return SeedStep::Wait(WaitReason::PodsUnobserved(unobserved));
    }
    let target = pods.iter().filter(|p| ours(p)).min_by_key(|p| p.ordinal);
    SeedStep::Seed(target.unwrap_or(lowest).pod.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::replication::{test_pod, ServerRole, Unobserved};

    fn empty(ordinal: u32) -> PodReplication {
        test_pod(
            format!("c-{ordinal}"),
            ordinal,
            ServerRole::Master,
            &format!("own-{ordinal}"),
            0,
            0,
        )
    }

    #[test]
    fn the_lowest_ordinal_is_seeded_once_every_pod_is_observed_and_empty() {
        let pods = [empty(2), empty(0), empty(1)];
        assert_eq!(seed_step(&pods, "b", Some(0)), SeedStep::Seed("c-0".into()));
        assert_eq!(
            seed_step(&[], "b", Some(0)),
            SeedStep::Wait(WaitReason::NoPods)
        );
        let mut unobserved = pods.clone();
        unobserved[0].server = Err(Unobserved::unreachable("down"));
        assert_eq!(
            seed_step(&unobserved, "b", Some(0)),
            SeedStep::Wait(WaitReason::PodsUnobserved(vec!["c-2".into()]))
        );
    }

    #[test]
    fn a_pod_with_the_backups_history_is_seeded_even_when_others_are_not_observed() {
        let mut pods = [empty(0), empty(1)];
        pods[0] = test_pod("c-0".into(), 0, ServerRole::Master, "b", 900, 12);
        pods[1].server = Err(Unobserved::unreachable("down"));
        assert_eq!(
            seed_step(&pods, "b", Some(900)),
            SeedStep::Seeded("c-0".into())
        );
        // An empty backup seeds a pod without keys: its history still says so.
        let pods = [test_pod("c-0".into(), 0, ServerRole::Master, "b", 0, 0)];
        assert_eq!(
            seed_step(&pods, "b", Some(0)),
            SeedStep::Seeded("c-0".into())
        );
    }

    #[test]
    fn a_pod_holding_part_of_the_backups_history_is_seeded_again() {
        let pods = [
            empty(0),
            test_pod("c-1".into(), 1, ServerRole::Master, "b", 500, 7),
        ];
        assert_eq!(
            seed_step(&pods, "b", Some(900)),
            SeedStep::Seed("c-1".into())
        );
        assert_eq!(seed_step(&pods, "b", None), SeedStep::Seed("c-1".into()));
        assert_eq!(
            seed_step(&pods, "b", Some(500)),
            SeedStep::Seeded("c-1".into())
        );
    }

    #[test]
    fn data_of_another_history_is_never_overwritten() {
        let pods = [
            empty(0),
            test_pod("c-1".into(), 1, ServerRole::Master, "other", 50, 3),
        ];
        assert_eq!(
            seed_step(&pods, "b", Some(0)),
            SeedStep::Refuse(vec!["c-1".into()])
        );
    }

    #[test]
    fn a_loading_pod_is_not_taken_as_seeded() {
        let mut pods = [test_pod("c-0".into(), 0, ServerRole::Master, "b", 9, 1)];
        if let Ok(state) = &mut pods[0].server {
            state.loading = true;
        }
        assert_eq!(
            seed_step(&pods, "b", Some(0)),
            SeedStep::Wait(WaitReason::PodsUnobserved(vec!["c-0".into()]))
        );
    }
}
