//! The operator's own switchover (the handover carried out for [`TopologyAction::Switchover`]).
//!
//! Redis's `FAILOVER TO` waits for the target's `REPLCONF ACK`, which a replica sends once per second
//! (the primary asks for none while its writes are paused), so a switchover paused writes for up to a second
//! even when the target had long caught up. The operator hands over itself instead, reading the target's
//! offset directly:
//!
//! 0. before any pause, poll both servers until the target is seen receiving the primary's stream
//!    ([`stream_check`]): it reached the offset the primary had at the first poll. A replica that has just
//!    finished a full synchronisation can be linked, at the primary's offset, and still receive nothing for up
//!    to a second (the primary starts its command stream only at the replica's next `REPLCONF ACK`); pausing
//!    writes then would stall them that long. A target that is not seen receiving within `stream_wait` is
//!    given up before any write was paused;
//! 1. `CLIENT PAUSE <pause> WRITE` on the primary: no write is accepted from here on, and the pause ends by
//!    itself if the operator dies mid-way;
//! 2. poll both servers (`INFO replication`) and ask [`handover_step`] until it says `Promote` or `GiveUp`;
//! 3. `Promote`: `REPLICAOF NO ONE` on the target, which holds every write the primary accepted;
//! 4. `REPLICAOF target` on the old primary, while its writes are still paused: it never accepts a write
//!    beside the new primary. It resumes from its offset with a partial resynchronisation (the target keeps
//!    the old replication id as its second one);
//! 5. `CLIENT UNPAUSE` on the old primary: the writes held back are answered `READONLY`, never taken.
//!
//! `GiveUp` unpauses the primary and changes nothing: writes continue where they were. A pass that dies
//! after step 3 leaves two masters, of which only the old one carries the primary label and takes writes
//! (once its pause ends); the switchover's deadline then abandons it ([`TopologyAction::AbortSwitchover`]) and
//! the target is pointed back at the old primary: it took no write, so nothing is lost. The property tests
//! check the rules below; the replication model runs the steps with crashes between any two of them.
//!
//! [`TopologyAction::Switchover`]: crate::TopologyAction::Switchover
//! [`TopologyAction::AbortSwitchover`]: crate::TopologyAction::AbortSwitchover

use std::time::Duration;

/// The time limits of one handover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoverLimits {
    /// How long the target may take, before the pause, to be seen receiving the primary's stream.
    pub stream_wait: Duration,
    /// How long the primary's writes are paused (`CLIENT PAUSE`): the longest write stall should the operator
    /// die mid-way.
    pub pause: Duration,
    /// How long the target may take to catch up once writes are paused.
    pub wait: Duration,
    /// Time the last two commands (promote, demote) need, at most: the target is promoted only while at
    /// least this much of the pause remains, so the old primary is demoted before its pause could end.
    pub finish: Duration,
}

/// What the primary reported in one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryPoll {
    /// Still a master (someone else may have demoted it meanwhile).
    pub master: bool,
    /// Its replication offset (`master_repl_offset`).
    pub offset: u64,
}

/// What the target reported in one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPoll {
    /// A replica of the primary with its link up and no sync in progress.
    pub linked: bool,
    /// The offset it has processed (`slave_repl_offset`).
    pub offset: u64,
}

/// One poll during a handover: what both servers reported (`None`: no answer), since the pause began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoverPoll {
    /// Time since `CLIENT PAUSE` was answered.
    pub elapsed: Duration,
    /// The primary, read first.
    pub primary: Option<PrimaryPoll>,
    /// The target, read after the primary.
    pub target: Option<TargetPoll>,
}

/// Why a handover gave up (writes resume on the primary, nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverGiveUp {
    /// The target did not reach the primary's offset in time; `behind` is how far it was at the last poll
    /// that reached both (`None`: none did, or its link was down).
    NotCaughtUp {
        /// Bytes behind at the last poll.
        behind: Option<u64>,
    },
    /// The primary is no master any more: someone else changed the roles.
    PrimaryDemoted,
}

/// The next step of a handover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverStep {
    /// The target holds everything the primary accepted, with time to finish: promote it.
    Promote,
    /// Poll again.
    Poll,
    /// Unpause the primary and leave the roles as they are.
    GiveUp(HandoverGiveUp),
}

/// Decides a handover's next step from one poll. The target is promoted only when it has processed exactly
/// the offset of a primary that is still a master (writes are paused, so that offset holds every write it
/// took), within `wait`, and with `finish` of the pause left.
pub fn handover_step(poll: &HandoverPoll, limits: &HandoverLimits) -> HandoverStep {
    if poll.primary.is_some_and(|p| !p.master) {
        return HandoverStep::GiveUp(HandoverGiveUp::PrimaryDemoted);
    }
    let behind = match (poll.primary, poll.target) {
        (Some(p), Some(t)) if t.linked => Some(p.offset.abs_diff(t.offset)),
        _ => None,
    };
    if poll.elapsed >= limits.wait || poll.elapsed + limits.finish > limits.pause {
        return HandoverStep::GiveUp(HandoverGiveUp::NotCaughtUp { behind });
    }
    // A target ahead of the offset read before it saw the primary's replication `PING` sent in between:
    // poll again and compare with the new offset.
    match (poll.primary, poll.target) {
        (Some(p), Some(t)) if t.linked && t.offset == p.offset => HandoverStep::Promote,
        _ => HandoverStep::Poll,
    }
}

/// The step before the pause: what [`stream_check`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamCheck {
    /// The target receives the stream: pause the primary's writes.
    Pause,
    /// Poll again (writes are not paused).
    Poll,
    /// Leave the roles as they are; no write was paused.
    GiveUp(HandoverGiveUp),
}

/// Decides, before the pause, from one poll (`elapsed` since the first) and `mark`, the primary's offset at the
/// first poll that reached it (`None`: none did yet): the target is seen receiving the stream once it is linked
/// and has processed `mark` (at once when no write is in flight). Within `stream_wait`; a demoted primary ends
/// it.
pub fn stream_check(
    mark: Option<u64>,
    poll: &HandoverPoll,
    limits: &HandoverLimits,
) -> StreamCheck {
    if poll.primary.is_some_and(|p| !p.master) {
        return StreamCheck::GiveUp(HandoverGiveUp::PrimaryDemoted);
    }
    match (mark, poll.target) {
        (Some(mark), Some(t)) if t.linked && t.offset >= mark => StreamCheck::Pause,
        _ if poll.elapsed >= limits.stream_wait => {
            StreamCheck::GiveUp(HandoverGiveUp::NotCaughtUp {
                behind: mark
                    .zip(poll.target.filter(|t| t.linked))
                    .map(|(mark, t)| mark.saturating_sub(t.offset)),
            })
        }
        _ => StreamCheck::Poll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HandoverLimits = HandoverLimits {
        stream_wait: Duration::from_secs(2),
        pause: Duration::from_secs(10),
        wait: Duration::from_secs(5),
        finish: Duration::from_secs(4),
    };

    fn poll(elapsed_ms: u64, primary: u64, target: u64, linked: bool) -> HandoverPoll {
        HandoverPoll {
            elapsed: Duration::from_millis(elapsed_ms),
            primary: Some(PrimaryPoll {
                master: true,
                offset: primary,
            }),
            target: Some(TargetPoll {
                linked,
                offset: target,
            }),
        }
    }

    /// A poll finding the primary demoted by someone else.
    fn demoted() -> HandoverPoll {
        HandoverPoll {
            primary: Some(PrimaryPoll {
                master: false,
                offset: 100,
            }),
            ..poll(3, 100, 100, true)
        }
    }

    #[test]
    fn a_caught_up_target_is_promoted_a_lagging_one_polled_then_given_up() {
        assert_eq!(
            handover_step(&poll(3, 100, 100, true), &LIMITS),
            HandoverStep::Promote
        );
        assert_eq!(
            handover_step(&poll(3, 100, 90, true), &LIMITS),
            HandoverStep::Poll
        );
        assert_eq!(
            handover_step(&poll(5_000, 100, 90, true), &LIMITS),
            HandoverStep::GiveUp(HandoverGiveUp::NotCaughtUp { behind: Some(10) })
        );
    }

    #[test]
    fn an_unlinked_or_silent_target_is_never_promoted() {
        assert_eq!(
            handover_step(&poll(3, 100, 100, false), &LIMITS),
            HandoverStep::Poll
        );
        let silent = HandoverPoll {
            target: None,
            ..poll(3, 100, 100, true)
        };
        assert_eq!(handover_step(&silent, &LIMITS), HandoverStep::Poll);
    }

    #[test]
    fn no_promotion_without_time_to_demote_the_old_primary_within_its_pause() {
        let short = HandoverLimits {
            pause: Duration::from_secs(6),
            ..LIMITS
        };
        assert_eq!(
            handover_step(&poll(2_001, 100, 100, true), &short),
            HandoverStep::GiveUp(HandoverGiveUp::NotCaughtUp { behind: Some(0) })
        );
        assert_eq!(
            handover_step(&poll(2_000, 100, 100, true), &short),
            HandoverStep::Promote
        );
    }

    #[test]
    fn a_primary_demoted_by_someone_else_ends_the_handover() {
        let demoted = demoted();
        assert_eq!(
            handover_step(&demoted, &LIMITS),
            HandoverStep::GiveUp(HandoverGiveUp::PrimaryDemoted)
        );
    }

    #[test]
    fn the_pause_waits_for_a_target_seen_receiving_the_stream() {
        // At the primary's offset when the check starts (no write in flight): pause at once.
        assert_eq!(
            stream_check(Some(100), &poll(0, 100, 100, true), &LIMITS),
            StreamCheck::Pause
        );
        // Linked at an older offset that does not move (just synchronised, stream not started): no pause yet,
        // then a give-up without any pause.
        assert_eq!(
            stream_check(Some(150), &poll(900, 180, 100, true), &LIMITS),
            StreamCheck::Poll
        );
        assert_eq!(
            stream_check(Some(150), &poll(2_000, 200, 100, true), &LIMITS),
            StreamCheck::GiveUp(HandoverGiveUp::NotCaughtUp { behind: Some(50) })
        );
        // Past the mark, although the primary moved on since: it receives the stream.
        assert_eq!(
            stream_check(Some(150), &poll(40, 190, 160, true), &LIMITS),
            StreamCheck::Pause
        );
        // Not before the primary was read once; never while unlinked; a demoted primary ends it.
        let unread = HandoverPoll {
            primary: None,
            ..poll(40, 0, 160, true)
        };
        assert_eq!(stream_check(None, &unread, &LIMITS), StreamCheck::Poll);
        assert_eq!(
            stream_check(Some(150), &poll(40, 190, 160, false), &LIMITS),
            StreamCheck::Poll
        );
        let demoted = demoted();
        assert_eq!(
            stream_check(Some(100), &demoted, &LIMITS),
            StreamCheck::GiveUp(HandoverGiveUp::PrimaryDemoted)
        );
    }
}
