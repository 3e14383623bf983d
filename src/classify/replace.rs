//! The record of a StatefulSet replace (a storage change), kept in an annotation on the instance.
//!
//! A storage change deletes the StatefulSet with orphan propagation and creates it again with the new claim
//! template. The record is written before the delete, for two reasons:
//! - an operator that restarts between the delete and the re-create recognises the missing StatefulSet as its
//!   own replace (not a child someone deleted);
//! - a change that does not converge (the API server stores a claim template other than the one sent, so the
//!   next reconcile sees a storage change again) is not replaced again in a tight loop: further attempts for the
//!   same generation wait an exponentially growing, capped delay, and status says so.

use std::time::Duration;

/// Delay before the second attempt for the same generation; it doubles with every further attempt.
const FIRST_RETRY: Duration = Duration::from_secs(30);
/// Longest delay between two attempts for the same generation.
pub const MAX_RETRY: Duration = Duration::from_secs(600);

/// Replaces made for one generation of the instance, as `<generation>/<attempts>/<unix seconds of the last>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceRecord {
    /// The instance generation the replaces were made for.
    pub generation: i64,
    /// How many replaces were started for that generation.
    pub attempts: u32,
    /// When the last one started (seconds since the Unix epoch).
    pub started_at: i64,
}

impl ReplaceRecord {
    /// Reads the annotation value; anything malformed counts as no record.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('/');
        let record = Self {
            generation: parts.next()?.parse().ok()?,
            attempts: parts.next()?.parse().ok()?,
            started_at: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(record)
    }

    /// The annotation value.
    pub fn render(&self) -> String {
        format!("{}/{}/{}", self.generation, self.attempts, self.started_at)
    }

    /// Whether a replace was started for `generation`: a StatefulSet missing now is the operator's own doing.
    pub fn covers(record: Option<&Self>, generation: i64) -> bool {
        record.is_some_and(|r| r.generation == generation)
    }

    /// When the next attempt for the same generation may start (seconds since the Unix epoch).
    pub fn next_attempt_at(&self) -> i64 {
        let doublings = self.attempts.saturating_sub(1).min(16);
        let delay = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
        self.started_at
            .saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Whether a storage change may replace the StatefulSet now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceDecision {
    /// Start a replace; write this record before the orphaning delete.
    Proceed(ReplaceRecord),
    /// A replace for this generation already ran and did not converge: wait until `retry_at`.
    Wait {
        /// Replaces already made for this generation.
        attempts: u32,
        /// When the next attempt may start (seconds since the Unix epoch).
        retry_at: i64,
    },
}

/// Decides whether a storage change for `generation` may start a replace at `now` (Unix seconds), given the
/// record of earlier replaces and when the live StatefulSet was created (Unix seconds).
///
/// A live StatefulSet older than the recorded replace means that replace never got to its delete (e.g. the
/// operator stopped while expanding claims): it goes on as the same attempt. A newer one means the replace
/// completed and the change still shows: that is the non-converging case, which waits.
pub fn decide_replace(
    record: Option<&ReplaceRecord>,
    generation: i64,
    now: i64,
    live_created_at: i64,
) -> ReplaceDecision {
    let attempts = match record {
        Some(r) if r.generation == generation && live_created_at < r.started_at => {
            return ReplaceDecision::Proceed(*r);
        }
        Some(r) if r.generation == generation => {
            if now < r.next_attempt_at() {
                return ReplaceDecision::Wait {
                    attempts: r.attempts,
                    retry_at: r.next_attempt_at(),
                };
            }
            r.attempts.saturating_add(1)
        }
        _ => 1,
    };
    ReplaceDecision::Proceed(ReplaceRecord {
        generation,
        attempts,
        started_at: now,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn record_round_trips_and_malformed_values_are_ignored() {
        let record = ReplaceRecord {
            generation: 4,
            attempts: 2,
            started_at: 1_700_000_000,
        };
        assert_eq!(ReplaceRecord::parse(&record.render()), Some(record));
        for bad in ["", "4", "4/2", "4/2/x", "4/2/1/9", "a/b/c"] {
            assert_eq!(ReplaceRecord::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn first_replace_of_a_generation_proceeds() {
        assert_eq!(
            decide_replace(None, 3, 100, 0),
            ReplaceDecision::Proceed(ReplaceRecord {
                generation: 3,
                attempts: 1,
                started_at: 100
            })
        );
        let older = ReplaceRecord {
            generation: 2,
            attempts: 5,
            started_at: 99,
        };
        assert!(matches!(
            decide_replace(Some(&older), 3, 100, 0),
            ReplaceDecision::Proceed(ReplaceRecord { attempts: 1, .. })
        ));
    }

    #[test]
    fn a_replace_that_did_not_converge_waits_with_exponential_capped_back_off() {
        let mut record = ReplaceRecord {
            generation: 3,
            attempts: 1,
            started_at: 1_000,
        };
        let mut delays = Vec::new();
        for _ in 0..10 {
            let ReplaceDecision::Wait { retry_at, attempts } =
                decide_replace(Some(&record), 3, record.started_at + 1, record.started_at)
            else {
                panic!("a second attempt right away must wait");
            };
            assert_eq!(attempts, record.attempts);
            delays.push(retry_at - record.started_at);
            let ReplaceDecision::Proceed(next) =
                decide_replace(Some(&record), 3, retry_at, record.started_at)
            else {
                panic!("the attempt proceeds once the delay has passed");
            };
            assert_eq!(next.attempts, record.attempts + 1);
            record = next;
        }
        assert_eq!(delays[..3], [30, 60, 120]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), 600);
    }

    #[test]
    fn a_replace_interrupted_before_its_delete_goes_on_as_the_same_attempt() {
        let record = ReplaceRecord {
            generation: 3,
            attempts: 1,
            started_at: 1_000,
        };
        assert_eq!(
            decide_replace(Some(&record), 3, 1_001, 500),
            ReplaceDecision::Proceed(record)
        );
    }

    #[test]
    fn a_record_covers_only_its_generation() {
        let record = ReplaceRecord {
            generation: 3,
            attempts: 1,
            started_at: 0,
        };
        assert!(ReplaceRecord::covers(Some(&record), 3));
        assert!(!ReplaceRecord::covers(Some(&record), 4));
        assert!(!ReplaceRecord::covers(None, 3));
    }

    proptest! {
        /// However many attempts and whatever the clock, two replaces of one generation are never closer than
        /// the first delay, and never further apart than the cap.
        #[test]
        fn attempts_are_spaced(attempts in 1u32..u32::MAX, started_at in 0i64..4_000_000_000, now in 0i64..4_000_000_000) {
            let record = ReplaceRecord { generation: 1, attempts, started_at };
            let gap = record.next_attempt_at() - started_at;
            prop_assert!((30..=600).contains(&gap));
            match decide_replace(Some(&record), 1, now, started_at) {
                ReplaceDecision::Proceed(next) => prop_assert!(now >= record.next_attempt_at() && next.attempts >= attempts),
                ReplaceDecision::Wait { retry_at, .. } => prop_assert!(now < retry_at),
            }
        }
    }
}
