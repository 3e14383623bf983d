//! The kubelet's crash-loop back-off: the delay before restarting a container doubles after each exit,
//! starting at a configurable initial delay and capped at five minutes.

use std::time::Duration;

/// The kubelet's cap on the restart delay.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(300);

/// A container that ran at least this long is considered healthy again: its back-off starts over.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Delay before restart number `consecutive_exits` (1 for the first exit): `initial * 2^(n-1)`, capped.
pub fn restart_delay(initial: Duration, consecutive_exits: u32) -> Duration {
    let doublings = consecutive_exits.saturating_sub(1).min(31);
    initial
        .checked_mul(1u32 << doublings)
        .map_or(MAX_RESTART_DELAY, |d| d.min(MAX_RESTART_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_initial_delay_up_to_the_cap() {
        let initial = Duration::from_secs(10);
        let delays: Vec<u64> = (1..=7)
            .map(|n| restart_delay(initial, n).as_secs())
            .collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn never_overflows() {
        assert_eq!(
            restart_delay(Duration::from_secs(10), u32::MAX),
            MAX_RESTART_DELAY
        );
        assert_eq!(
            restart_delay(Duration::from_secs(u64::MAX / 2), 3),
            MAX_RESTART_DELAY
        );
    }

    #[test]
    fn a_short_initial_delay_is_honoured() {
        let initial = Duration::from_millis(500);
        assert_eq!(restart_delay(initial, 1), Duration::from_millis(500));
        assert_eq!(restart_delay(initial, 3), Duration::from_secs(2));
    }
}
