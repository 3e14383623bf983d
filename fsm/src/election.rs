//! Which pod a failover (or a scale-down) may promote.
//!
//! Offsets are only comparable inside one replication history, so a pod is a candidate only when
//! it shares the history of the last primary the operator recorded; among those, the most advanced
//! wins, then the lowest ordinal. A replica that could not be observed may hold writes the others
//! lack (a write confirmed with `WAIT 1` may have reached only that one), so while any pod outside
//! the excluded one is unobserved there is no safe candidate.

use std::cmp::Reverse;
use std::fmt;

use crate::replication::{PodReplication, ReplicationHistory};

/// Why no pod can be promoted safely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoCandidate {
    /// These pods did not answer (or are still loading): any of them may hold the most data.
    Unobserved {
        /// Pod names, in input order.
        pods: Vec<String>,
    },
    /// No electable pod shares the recorded primary's history.
    NoSharedHistory {
        /// The electable pods that hold data of another history, in input order.
        divergent: Vec<String>,
    },
}

impl fmt::Display for NoCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoCandidate::Unobserved { pods } => write!(
                f,
                "pods {} could not be observed and may hold the newest writes",
                pods.join(", ")
            ),
            NoCandidate::NoSharedHistory { divergent } if divergent.is_empty() => {
                write!(f, "no replica shares the primary's replication history")
            }
            NoCandidate::NoSharedHistory { divergent } => write!(
                f,
                "no replica shares the primary's replication history; {} hold data of another history",
                divergent.join(", ")
            ),
        }
    }
}

/// The outcome of [`elect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// The pod to promote.
    Candidate(String),
    /// Nobody can be promoted without risking acknowledged writes.
    NoSafeCandidate(NoCandidate),
}

/// The pods of `pods` that share the history `anchor` and may be promoted, most advanced first
/// (highest offset, then lowest ordinal). `excluded` (the failed primary) is never listed.
///
/// One ranking serves failover, scale-down and switchover targets.
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
    ranked.sort_by_key(|p| (Reverse(p.state().map_or(0, |s| s.repl_offset)), p.ordinal));
    ranked
}

/// Elects the pod to promote in place of `excluded` (the failed primary), among pods that share
/// `anchor`, the last recorded primary's history.
///
/// Every pod other than `excluded` must have been observed: an unobserved pod may be the only one
/// holding a write that a client saw confirmed.
pub fn elect(
    anchor: &ReplicationHistory,
    excluded: Option<&str>,
    pods: &[PodReplication],
) -> Election {
    let unobserved: Vec<String> = pods
        .iter()
        .filter(|p| Some(p.pod.as_str()) != excluded && !p.is_observed())
        .map(|p| p.pod.clone())
        .collect();
    if !unobserved.is_empty() {
        return Election::NoSafeCandidate(NoCandidate::Unobserved { pods: unobserved });
    }
    match rank(anchor, excluded, pods).first() {
        Some(best) => Election::Candidate(best.pod.clone()),
        None => Election::NoSafeCandidate(NoCandidate::NoSharedHistory {
            divergent: pods
                .iter()
                .filter(|p| Some(p.pod.as_str()) != excluded)
                .filter(|p| p.is_electable() && p.holds_data() && !p.shares_history(anchor))
                .map(|p| p.pod.clone())
                .collect(),
        }),
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
    use crate::replication::{
        Endpoint, FailoverState, ReplicaLink, ServerRole, ServerState, Unobserved,
    };

    fn replica(ordinal: u32, replid: &str, offset: u64) -> PodReplication {
        PodReplication {
            pod: format!("r-{ordinal}"),
            ordinal,
            endpoint: Endpoint {
                host: format!("10.0.0.{ordinal}"),
                port: 6379,
            },
            pod_ready: true,
            pod_deleting: false,
            node_ready: true,
            server: Ok(ServerState {
                run_id: format!("run-{ordinal}"),
                uptime_seconds: 10,
                role: ServerRole::Replica(ReplicaLink {
                    master_host: "10.0.0.0".into(),
                    master_port: 6379,
                    link_up: false,
                    sync_in_progress: false,
                    replica_offset: offset,
                }),
                replid: replid.into(),
                replid2: None,
                repl_offset: offset,
                second_repl_offset: None,
                aof_enabled: false,
                loading: false,
                keys: offset,
                failover_state: FailoverState::None,
            }),
        }
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
    fn a_divergent_replica_with_more_data_is_not_elected() {
        let pods = [replica(1, "B", 900), replica(2, "A", 10)];
        assert_eq!(
            elect(&history("A"), None, &pods),
            Election::Candidate("r-2".into())
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
        assert_eq!(
            elect(&anchor, None, &pods),
            Election::Candidate("r-3".into())
        );
        assert_eq!(
            elect(&anchor, None, &pods[..2]),
            Election::Candidate("r-1".into())
        );
    }

    #[test]
    fn an_unobserved_replica_blocks_the_election() {
        let mut gone = replica(2, "A", 0);
        gone.server = Err(Unobserved {
            reason: "timeout".into(),
        });
        assert_eq!(
            elect(&history("A"), Some("r-0"), &[replica(1, "A", 5), gone]),
            Election::NoSafeCandidate(NoCandidate::Unobserved {
                pods: vec!["r-2".into()]
            })
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
            &[on_dead_node, deleting, replica(3, "B", 4)],
        );
        assert_eq!(
            election,
            Election::NoSafeCandidate(NoCandidate::NoSharedHistory {
                divergent: vec!["r-3".into()]
            })
        );
        assert_eq!(
            election_message(&election),
            "no replica shares the primary's replication history; r-3 hold data of another history"
        );
    }

    fn election_message(election: &Election) -> String {
        match election {
            Election::NoSafeCandidate(reason) => reason.to_string(),
            Election::Candidate(pod) => pod.clone(),
        }
    }
}
