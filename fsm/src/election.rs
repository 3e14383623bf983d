//! Which pod a failover (or a scale-down) may promote.
//!
//! Offsets are only comparable inside one replication history, so a pod is a candidate only when
//! it shares the history of the last primary the operator recorded; among those, the most advanced
//! wins, then the lowest ordinal.
//!
//! A write a client saw confirmed with `WAIT 1` reached the primary and at least one replica. When
//! the primary has failed, that replica may be the only other holder of the write, so a failover
//! waits for certainty about every pod other than the failed primary:
//!
//! - an unobserved pod may hold the newest writes ([`NoCandidate::Unobserved`]);
//! - an observed pod that holds none of the primary's history (it restarted empty, is new and still
//!   in its initial synchronisation, or is an old primary not resynced yet) may have been that
//!   replica before it lost its data, in which case the write now lives on the failed primary
//!   only ([`NoCandidate::NotResynced`]);
//! - a pod that shares the history and is more advanced than every pod that may be promoted, but
//!   is being deleted or on a node that is not Ready, may hold writes the candidates lack
//!   ([`NoCandidate::NewestUnelectable`]).

use std::cmp::Reverse;

use crate::model::{NoCandidate, PodReplication, ReplicationHistory};

/// The outcome of [`elect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// The pod to promote.
    Candidate(String),
    /// Nobody can be promoted without risking acknowledged writes.
    NoSafeCandidate(NoCandidate),
}

fn offset(pod: &PodReplication) -> u64 {
    pod.state().map_or(0, |s| s.repl_offset)
}

/// The pods of `pods` that share the history `anchor` and may be promoted, most advanced first
/// (highest offset, then lowest ordinal). `excluded` (the failed primary) is never listed.
///
/// One ranking serves failover, scale-down and switchover targets. It says nothing about the pods
/// it leaves out: a failover must also check them ([`elect`] does), a switchover need not, because
/// the reachable primary's handover waits for its target to catch up.
pub fn rank<'a>(
    anchor: &ReplicationHistory,
    excluded: Option<&str>,
    pods: &'a [PodReplication],
) -> Vec<&'a PodReplication> {
    let mut ranked: Vec<&PodReplication> = pods
        .iter()
        .filter(|p| Some(p.pod.as_str()) != excluded)
        .filter(|p| p.is_electable() && p.shares_history(anchor))
        .collect();
    ranked.sort_by_key(|p| (Reverse(offset(p)), p.ordinal));
    ranked
}

/// Elects the pod to promote in place of `excluded` (the failed primary), among pods that share
/// `anchor`, the last recorded primary's history.
///
/// Every pod other than `excluded` must have been observed, and, as soon as any of them shares
/// `anchor`, every one of them must share it: an unobserved pod, or one that lost the history, may
/// have been the only replica holding a write that a client saw confirmed. The candidate must also
/// be at least as advanced as every pod that shares the history, promotable or not.
///
/// `pods` must list every pod that may have held the history: the wiring passes a pod that does
/// not exist (yet) as unobserved. When no pod other than `excluded` shares the history at all,
/// the result is [`NoCandidate::NoSharedHistory`]: the history survives nowhere else, so no choice
/// of pod loses more of it than another.
pub fn elect(
    anchor: &ReplicationHistory,
    excluded: Option<&str>,
    pods: &[PodReplication],
) -> Election {
    let others: Vec<&PodReplication> = pods
        .iter()
        .filter(|p| Some(p.pod.as_str()) != excluded)
        .collect();
    let names = |pods: Vec<&PodReplication>| pods.iter().map(|p| p.pod.clone()).collect();
    let unobserved: Vec<&PodReplication> = others
        .iter()
        .copied()
        .filter(|p| !p.is_observed())
        .collect();
    if !unobserved.is_empty() {
        return Election::NoSafeCandidate(NoCandidate::Unobserved {
            pods: names(unobserved),
        });
    }
    let (holders, lacking): (Vec<&PodReplication>, Vec<&PodReplication>) = others
        .iter()
        .copied()
        .partition(|p| p.shares_history(anchor));
    if holders.is_empty() {
        return Election::NoSafeCandidate(NoCandidate::NoSharedHistory {
            divergent: names(
                lacking
                    .into_iter()
                    .filter(|p| p.is_electable() && p.holds_data())
                    .collect(),
            ),
        });
    }
    if !lacking.is_empty() {
        return Election::NoSafeCandidate(NoCandidate::NotResynced {
            pods: names(lacking),
        });
    }
    let best = rank(anchor, excluded, pods).first().copied();
    let best_offset = best.map(offset);
    let newer: Vec<&PodReplication> = holders
        .into_iter()
        .filter(|p| !p.is_electable() && best_offset.is_none_or(|best| offset(p) > best))
        .collect();
    match best {
        Some(best) if newer.is_empty() => Election::Candidate(best.pod.clone()),
        _ => Election::NoSafeCandidate(NoCandidate::NewestUnelectable { pods: names(newer) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(replid: &str) -> ReplicationHistory {
        ReplicationHistory {
            replid: replid.into(),
            replid2: None,
            second_offset: None,
        }
    }
    use crate::model::replication::{test_pod, ReplicaLink, ServerRole, Unobserved};

    fn replica(ordinal: u32, replid: &str, offset: u64) -> PodReplication {
        let link = ServerRole::Replica(ReplicaLink {
            master_host: "10.0.0.0".into(),
            master_port: 6379,
            link_up: false,
            sync_in_progress: false,
            replica_offset: offset,
        });
        test_pod(
            format!("r-{ordinal}"),
            ordinal,
            link,
            replid,
            offset,
            offset,
        )
    }

    #[test]
    fn highest_offset_then_lowest_ordinal_wins() {
        let pods = [
            replica(0, "A", 500),
            replica(1, "A", 90),
            replica(2, "A", 100),
            replica(3, "A", 100),
        ];
        assert_eq!(
            elect(&history("A"), Some("r-0"), &pods),
            Election::Candidate("r-2".into())
        );
    }

    #[test]
    fn a_divergent_replica_with_more_data_is_never_elected() {
        let pods = [replica(1, "B", 900), replica(2, "A", 10)];
        let ranked: Vec<&str> = rank(&history("A"), None, &pods)
            .iter()
            .map(|p| p.pod.as_str())
            .collect();
        assert_eq!(ranked, ["r-2"]);
        // It holds none of A: it may have lost an A write that r-2 lacks, so nobody is elected.
        assert_eq!(
            elect(&history("A"), None, &pods),
            Election::NoSafeCandidate(NoCandidate::NotResynced {
                pods: vec!["r-1".into()]
            })
        );
        // Alone, it is reported as holding data of another history.
        assert_eq!(
            elect(&history("A"), Some("r-0"), &pods[..1]),
            Election::NoSafeCandidate(NoCandidate::NoSharedHistory {
                divergent: vec!["r-1".into()]
            })
        );
    }

    #[test]
    fn the_old_history_counts_only_up_to_the_promotion_point() {
        // The primary was promoted from history A at offset 100 (second_repl_offset 101).
        let anchor = ReplicationHistory {
            replid: "B".into(),
            replid2: Some("A".into()),
            second_offset: Some(101),
        };
        let not_yet_repointed = replica(1, "A", 100);
        let diverged_old_primary = replica(2, "A", 130);
        let follower = replica(3, "B", 120);
        let pods = [not_yet_repointed, diverged_old_primary, follower];
        assert!(pods[0].shares_history(&anchor));
        assert!(!pods[1].shares_history(&anchor));
        let ranked: Vec<&str> = rank(&anchor, None, &pods)
            .iter()
            .map(|p| p.pod.as_str())
            .collect();
        assert_eq!(ranked, ["r-3", "r-1"]);
        // The old primary, repointed but not resynced yet, holds none of B.
        assert_eq!(
            elect(&anchor, None, &pods),
            Election::NoSafeCandidate(NoCandidate::NotResynced {
                pods: vec!["r-2".into()]
            })
        );
        let resynced = [pods[0].clone(), pods[2].clone()];
        assert_eq!(
            elect(&anchor, None, &resynced),
            Election::Candidate("r-3".into())
        );
        assert_eq!(
            elect(&anchor, None, &pods[..1]),
            Election::Candidate("r-1".into())
        );
    }

    #[test]
    fn an_unobserved_replica_blocks_the_election() {
        let mut gone = replica(2, "A", 0);
        gone.server = Err(Unobserved::unreachable("timeout"));
        assert_eq!(
            elect(&history("A"), Some("r-0"), &[replica(1, "A", 5), gone]),
            Election::NoSafeCandidate(NoCandidate::Unobserved {
                pods: vec!["r-2".into()]
            })
        );
    }

    /// The model's counterexample: a write confirmed through r-1 only, r-1 restarts empty, the
    /// primary r-0 fails. r-2 shares the history but lacks the write.
    #[test]
    fn a_replica_that_restarted_empty_blocks_the_election_until_it_resynced() {
        let wiped = replica(1, "Z", 0);
        let behind = replica(2, "A", 5);
        let election = elect(&history("A"), Some("r-0"), &[wiped, behind.clone()]);
        assert_eq!(
            election,
            Election::NoSafeCandidate(NoCandidate::NotResynced {
                pods: vec!["r-1".into()]
            })
        );
        assert_eq!(
            election_message(&election),
            "pods r-1 have not (re)synced the primary's replication history and may have lost \
             confirmed writes that the other replicas lack"
        );
        // Once it holds the history again, offsets decide as usual.
        assert_eq!(
            elect(
                &history("A"),
                Some("r-0"),
                &[replica(1, "A", 7), behind.clone()]
            ),
            Election::Candidate("r-1".into())
        );
        assert_eq!(
            elect(&history("A"), Some("r-0"), &[replica(1, "A", 3), behind]),
            Election::Candidate("r-2".into())
        );
    }

    #[test]
    fn a_new_pod_in_its_initial_sync_blocks_the_election() {
        let mut syncing = replica(3, "N", 0);
        if let Ok(state) = &mut syncing.server {
            state.role = ServerRole::Replica(ReplicaLink {
                master_host: "10.0.0.0".into(),
                master_port: 6379,
                link_up: false,
                sync_in_progress: true,
                replica_offset: 0,
            });
        }
        assert_eq!(
            elect(
                &history("A"),
                Some("r-0"),
                &[replica(1, "A", 5), replica(2, "A", 5), syncing]
            ),
            Election::NoSafeCandidate(NoCandidate::NotResynced {
                pods: vec!["r-3".into()]
            })
        );
    }

    /// A pod that does not exist yet is passed as unobserved by the wiring and blocks; a pod that
    /// is not listed (an ordinal beyond `spec.replicas` that never existed) is not considered.
    #[test]
    fn a_pod_not_created_yet_blocks_one_never_listed_does_not() {
        let mut not_created = replica(2, "", 0);
        not_created.pod_ready = false;
        not_created.server = Err(Unobserved::unreachable("pod does not exist"));
        assert_eq!(
            elect(
                &history("A"),
                Some("r-0"),
                &[replica(1, "A", 5), not_created]
            ),
            Election::NoSafeCandidate(NoCandidate::Unobserved {
                pods: vec!["r-2".into()]
            })
        );
        assert_eq!(
            elect(&history("A"), Some("r-0"), &[replica(1, "A", 5)]),
            Election::Candidate("r-1".into())
        );
    }

    #[test]
    fn a_pod_being_deleted_blocks_when_it_lost_the_history_or_is_the_most_advanced() {
        let deleting = |replid: &str, offset: u64| {
            let mut pod = replica(2, replid, offset);
            pod.pod_deleting = true;
            pod
        };
        // Restarted empty and now being deleted: its loss is still a possible loss.
        assert_eq!(
            elect(
                &history("A"),
                Some("r-0"),
                &[replica(1, "A", 5), deleting("Z", 0)]
            ),
            Election::NoSafeCandidate(NoCandidate::NotResynced {
                pods: vec!["r-2".into()]
            })
        );
        // Behind the candidate: it holds nothing the candidate lacks.
        assert_eq!(
            elect(
                &history("A"),
                Some("r-0"),
                &[replica(1, "A", 5), deleting("A", 5)]
            ),
            Election::Candidate("r-1".into())
        );
        // Ahead of every pod that may be promoted: it may hold the newest confirmed write.
        let election = elect(
            &history("A"),
            Some("r-0"),
            &[replica(1, "A", 5), deleting("A", 6)],
        );
        assert_eq!(
            election,
            Election::NoSafeCandidate(NoCandidate::NewestUnelectable {
                pods: vec!["r-2".into()]
            })
        );
        assert_eq!(
            election_message(&election),
            "pods r-2 hold writes that no promotable replica has, but are being deleted or on a \
             node that is not Ready"
        );
    }

    #[test]
    fn pods_on_unready_nodes_or_being_deleted_are_not_candidates() {
        let mut on_dead_node = replica(1, "A", 9);
        on_dead_node.node_ready = false;
        let mut deleting = replica(2, "A", 9);
        deleting.pod_deleting = true;
        let election = elect(
            &history("A"),
            None,
            &[on_dead_node.clone(), deleting.clone()],
        );
        assert_eq!(
            election,
            Election::NoSafeCandidate(NoCandidate::NewestUnelectable {
                pods: vec!["r-1".into(), "r-2".into()]
            })
        );
        // With a promotable pod as advanced as they are, it is elected.
        assert_eq!(
            elect(
                &history("A"),
                None,
                &[on_dead_node, deleting, replica(3, "A", 9)]
            ),
            Election::Candidate("r-3".into())
        );
    }

    #[test]
    fn without_any_holder_of_the_history_divergent_data_is_reported() {
        let empty = replica(2, "C", 0);
        let election = elect(&history("A"), Some("r-0"), &[replica(1, "B", 4), empty]);
        assert_eq!(
            election,
            Election::NoSafeCandidate(NoCandidate::NoSharedHistory {
                divergent: vec!["r-1".into()]
            })
        );
        assert_eq!(
            election_message(&election),
            "no replica shares the primary's replication history; r-1 hold data of another history"
        );
    }

    fn election_message(election: &Election) -> String {
        match election {
            Election::NoSafeCandidate(reason) => reason.to_string(),
            Election::Candidate(pod) => pod.clone(),
        }
    }
}
