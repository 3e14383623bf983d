//! The operator's own switchover, the act behind `TopologyAction::Switchover`: pause the primary's writes,
//! promote the target once it has processed every one of them, demote the old primary while still paused,
//! unpause. The steps, their order and their guarantees are in `redis_fsm::handover_step`'s module; this is
//! the I/O around that pure decision.

use std::time::{Duration, Instant};

use redis_fsm::{
    handover_step, stream_check, Endpoint, HandoverGiveUp, HandoverLimits, HandoverPoll,
    HandoverStep, PrimaryPoll, ServerRole, StreamCheck, TargetPoll,
};

use super::command::CommandError;
use crate::redis::{RedisError, RedisNode};

/// How long a target may take, before writes are paused, to be seen receiving the primary's stream: two of the
/// intervals at which a replica acknowledges (`REPLCONF ACK`, once a second), the second of which starts the
/// stream of one that has just synchronised.
pub const STREAM_WAIT: Duration = Duration::from_secs(2);

/// The limits the operator hands over with: the target has `wait` (the switchover timeout `FAILOVER TO` had)
/// to catch up, and the pause covers that plus the two commands that finish the handover, each at most a
/// command timeout.
pub fn limits(wait: Duration, command_timeout: Duration) -> HandoverLimits {
    let finish = command_timeout * 2;
    HandoverLimits {
        stream_wait: STREAM_WAIT,
        pause: wait + finish + Duration::from_secs(1),
        wait,
        finish,
    }
}

/// Between two polls of a handover: the target usually has caught up at the first one already.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

fn target_poll(
    reply: Result<(ServerRole, u64), RedisError>,
    from: &Endpoint,
) -> Option<TargetPoll> {
    match reply.ok()? {
        (ServerRole::Replica(link), _) => Some(TargetPoll {
            linked: link.streams_from(from),
            offset: link.replica_offset,
        }),
        (ServerRole::Master, offset) => Some(TargetPoll {
            linked: false,
            offset,
        }),
    }
}

/// Reads both servers once, the primary first.
async fn poll(
    from: &RedisNode,
    to: &RedisNode,
    from_at: &Endpoint,
    since: Instant,
) -> HandoverPoll {
    let primary = from
        .replication()
        .await
        .ok()
        .map(|(role, offset)| PrimaryPoll {
            master: role == ServerRole::Master,
            offset,
        });
    let target = target_poll(to.replication().await, from_at);
    HandoverPoll {
        elapsed: since.elapsed(),
        primary,
        target,
    }
}

fn gave_up(why: HandoverGiveUp, since: Instant, before_pause: bool) -> CommandError {
    let when = if before_pause {
        " (before pausing writes)"
    } else {
        ""
    };
    CommandError::SwitchoverGaveUp(match why {
        HandoverGiveUp::NotCaughtUp {
            behind: Some(bytes),
        } => format!(
            "the target was still {bytes} bytes behind after {:?}{when}",
            since.elapsed()
        ),
        HandoverGiveUp::NotCaughtUp { behind: None } => format!(
            "the target could not be read as a linked replica within {:?}{when}",
            since.elapsed()
        ),
        HandoverGiveUp::PrimaryDemoted => "the primary is no master any more".into(),
    })
}

/// Polls until the target is seen receiving `from`'s stream ([`stream_check`]); no write is paused.
async fn await_stream(
    from: &RedisNode,
    to: &RedisNode,
    from_at: &Endpoint,
    limits: &HandoverLimits,
) -> Result<(), CommandError> {
    let started = Instant::now();
    let mut mark = None;
    loop {
        let poll = poll(from, to, from_at, started).await;
        mark = mark.or(poll.primary.map(|p| p.offset));
        match stream_check(mark, &poll, limits) {
            StreamCheck::Pause => return Ok(()),
            StreamCheck::Poll => tokio::time::sleep(POLL_INTERVAL).await,
            StreamCheck::GiveUp(why) => return Err(gave_up(why, started, true)),
        }
    }
}

/// What a handover that went through took.
#[derive(Clone, Copy, Debug)]
pub struct HandedOver {
    /// How long writes were paused.
    pub held: Duration,
    /// Polls until the target had caught up.
    pub polls: u32,
    /// What the first poll found: how far behind the target was when writes stopped.
    pub first: HandoverPoll,
}

/// Hands `from`'s primary role over to `to` (reached at `to_at`; `from` is at `from_at`). `leading` is asked
/// before every command that changes a role.
pub async fn hand_over(
    from: &RedisNode,
    to: &RedisNode,
    from_at: &Endpoint,
    to_at: &Endpoint,
    limits: HandoverLimits,
    leading: impl Fn() -> bool,
) -> Result<HandedOver, CommandError> {
    await_stream(from, to, from_at, &limits).await?;
    if !leading() {
        return Err(CommandError::NotLeading("CLIENT PAUSE"));
    }
    from.client_pause_write(limits.pause).await?;
    let paused = Instant::now();
    let (mut polls, mut first) = (0, None);
    let step = loop {
        let poll = poll(from, to, from_at, paused).await;
        polls += 1;
        first.get_or_insert(poll);
        match handover_step(&poll, &limits) {
            HandoverStep::Poll => tokio::time::sleep(POLL_INTERVAL).await,
            step => break step,
        }
    };
    if let HandoverStep::GiveUp(why) = step {
        // The pause ends by itself should this fail too.
        let _ = from.client_unpause().await;
        return Err(gave_up(why, paused, false));
    }
    if !leading() {
        let _ = from.client_unpause().await;
        return Err(CommandError::NotLeading("REPLICAOF NO ONE"));
    }
    if let Err(error) = to.replicaof_no_one().await {
        // The target may have been promoted even so; it took no write (the label stays on `from`), and the
        // switchover's deadline points it back.
        let _ = from.client_unpause().await;
        return Err(error.into());
    }
    // From here on `from` stays paused on any failure: it must not take a write beside the new master. Its
    // pause ends by itself; by then the next pass has demoted it, or abandoned the switchover.
    if !leading() {
        return Err(CommandError::NotLeading("REPLICAOF"));
    }
    from.replicaof(&to_at.host, to_at.port).await?;
    let held = paused.elapsed();
    // Writes held back are answered READONLY now: `from` is a replica.
    let _ = from.client_unpause().await;
    Ok(HandedOver {
        held,
        polls,
        first: first.expect("the loop polls at least once"),
    })
}
