//! Scheduled backups and their retention, decided from what exists: [`plan`] is pure (the schedule, the
//! instance's scheduled backups, the time), the backup pass carries it out.
//!
//! A run is due at the schedule's latest time at or before now, when no scheduled backup of that time or a later
//! one exists and that time is at most [`STARTING_DEADLINE`] old (an operator that was down longer skips the runs
//! it missed, as a CronJob with `startingDeadlineSeconds` does). Retention keeps the newest `keep` completed
//! scheduled backups, and of those drops the ones older than `maxAgeDays` (never the newest); a failed one is
//! dropped once a newer one completed. Backups made by hand are never touched.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

/// How late a run may still start.
pub const STARTING_DEADLINE: Duration = Duration::from_secs(300);

/// A schedule that is not five cron fields.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.backup.schedule is not a cron schedule of five fields: {0}")]
pub struct BadSchedule(String);

/// A parsed `spec.backup.schedule`.
#[derive(Clone, Debug)]
pub struct Schedule(Cron);

impl Schedule {
    /// Parses five cron fields (minute hour day-of-month month day-of-week), in UTC.
    pub fn parse(text: &str) -> Result<Schedule, BadSchedule> {
        if text.split_whitespace().count() != 5 {
            return Err(BadSchedule(format!(
                "{} fields",
                text.split_whitespace().count()
            )));
        }
        Cron::from_str(text)
            .map(Schedule)
            .map_err(|e| BadSchedule(e.to_string()))
    }

    /// The latest time of the schedule at or before `at` (Unix seconds).
    pub fn latest(&self, at: i64) -> Option<i64> {
        let zoned = Timestamp::from_second(at).ok()?.to_zoned(TimeZone::UTC);
        self.0
            .find_previous_occurrence(&zoned, true)
            .ok()
            .map(|t| t.timestamp().as_second())
    }

    /// The first time of the schedule after `at` (Unix seconds).
    pub fn next(&self, at: i64) -> Option<i64> {
        let zoned = Timestamp::from_second(at).ok()?.to_zoned(TimeZone::UTC);
        self.0
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|t| t.timestamp().as_second())
    }
}

/// A scheduled backup of the instance, as the cache holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// The `RedisBackup`'s name.
    pub name: String,
    /// The schedule time it was made for (Unix seconds).
    pub scheduled_for: i64,
    /// Its phase (empty until taken up).
    pub phase: String,
}

/// Retention settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Completed scheduled backups kept.
    pub keep: u32,
    /// Completed ones older than this are dropped (the newest never).
    pub max_age: Option<Duration>,
}

/// What the pass does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Create the backup of this schedule time.
    pub create: Option<i64>,
    /// Delete these scheduled backups (their objects first).
    pub delete: Vec<String>,
    /// The schedule's next time: look again then.
    pub next: Option<i64>,
}

/// Decides the pass at `now` (Unix seconds).
pub fn plan(schedule: &Schedule, retention: Retention, existing: &[Scheduled], now: i64) -> Plan {
    let newest = existing.iter().map(|b| b.scheduled_for).max();
    let deadline = i64::try_from(STARTING_DEADLINE.as_secs()).unwrap_or(i64::MAX);
    let create = schedule
        .latest(now)
        .filter(|due| newest.is_none_or(|n| n < *due) && now - due <= deadline);
    let mut completed: Vec<&Scheduled> =
        existing.iter().filter(|b| b.phase == "Completed").collect();
    completed.sort_by_key(|b| std::cmp::Reverse(b.scheduled_for));
    let newest_completed = completed.first().map(|b| b.scheduled_for);
    let max_age = retention
        .max_age
        .and_then(|age| i64::try_from(age.as_secs()).ok());
    let mut delete: Vec<String> = completed
        .iter()
        .enumerate()
        .filter(|(i, b)| {
            *i > 0
                && (*i >= retention.keep as usize
                    || max_age.is_some_and(|age| now - b.scheduled_for > age))
        })
        .map(|(_, b)| b.name.clone())
        .collect();
    delete.extend(
        existing
            .iter()
            .filter(|b| {
                b.phase == "Failed" && newest_completed.is_some_and(|n| b.scheduled_for < n)
            })
            .map(|b| b.name.clone()),
    );
    delete.sort();
    Plan {
        create,
        delete,
        next: schedule.next(now),
    }
}

/// Whether backups are overdue at `now`: the newest completed one (`newest_completed`, Unix seconds), or when
/// none completed the first scheduled run (`first_scheduled`), is older than two of the schedule's intervals
/// (the time between its latest and next runs). `false` while nothing was scheduled yet.
pub fn overdue(
    schedule: &Schedule,
    now: i64,
    newest_completed: Option<i64>,
    first_scheduled: Option<i64>,
) -> bool {
    let (Some(latest), Some(next)) = (schedule.latest(now), schedule.next(now)) else {
        return false;
    };
    newest_completed
        .or(first_scheduled)
        .is_some_and(|since| now - since > 2 * (next - latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T03:00:00Z.
    const THREE: i64 = 1_796_612_400;

    fn backup(name: &str, at: i64, phase: &str) -> Scheduled {
        Scheduled {
            name: name.into(),
            scheduled_for: at,
            phase: phase.into(),
        }
    }

    const KEEP_2: Retention = Retention {
        keep: 2,
        max_age: None,
    };

    #[test]
    fn schedules_are_five_cron_fields_in_utc() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(daily.latest(THREE + 59), Some(THREE));
        assert_eq!(daily.latest(THREE), Some(THREE));
        assert_eq!(daily.next(THREE), Some(THREE + 86_400));
        for bad in ["", "0 3 * *", "0 0 3 * * *", "61 * * * *", "every day"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_is_due_once_within_its_starting_deadline() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        let at = |now: i64, existing: &[Scheduled]| plan(&daily, KEEP_2, existing, now).create;
        assert_eq!(at(THREE + 10, &[]), Some(THREE));
        // Made already (whatever its phase), or a later one exists: not again.
        assert_eq!(at(THREE + 10, &[backup("a", THREE, "")]), None);
        assert_eq!(at(THREE + 10, &[backup("a", THREE, "Failed")]), None);
        // Missed by more than the deadline: skipped; the next run is due on time.
        assert_eq!(at(THREE + 301, &[]), None);
        assert_eq!(
            at(THREE + 86_400 + 5, &[backup("a", THREE, "Completed")]),
            Some(THREE + 86_400)
        );
        assert_eq!(
            plan(&daily, KEEP_2, &[], THREE + 10).next,
            Some(THREE + 86_400)
        );
    }

    #[test]
    fn retention_keeps_the_newest_completed_and_drops_superseded_failures() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let existing = [
            backup("h1", THREE, "Completed"),
            backup("h2", THREE + 3600, "Failed"),
            backup("h3", THREE + 7200, "Completed"),
            backup("h4", THREE + 10_800, "Completed"),
            backup("h5", THREE + 14_400, "Failed"),
            backup("h6", THREE + 18_000, "Running"),
        ];
        let now = THREE + 18_010;
        assert_eq!(
            plan(&hourly, KEEP_2, &existing, now).delete,
            ["h1", "h2"],
            "h3 and h4 are the two newest completed; h5 failed after them, h6 runs"
        );
        let a_day = Retention {
            keep: 10,
            max_age: Some(Duration::from_secs(3 * 3600)),
        };
        assert_eq!(
            plan(&hourly, a_day, &existing, now).delete,
            ["h1", "h2", "h3"]
        );
        // The newest completed one stays, however old.
        let old = [backup("h1", THREE, "Completed")];
        assert!(plan(&hourly, a_day, &old, THREE + 100_000)
            .delete
            .is_empty());
    }

    #[test]
    fn backups_are_overdue_past_two_intervals_without_a_completed_one() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let now = THREE + 600;
        assert!(!overdue(&hourly, now, None, None), "nothing scheduled yet");
        assert!(!overdue(&hourly, now, Some(now - 7200), None));
        assert!(overdue(&hourly, now, Some(now - 7201), None));
        // None completed: counted from the first run.
        assert!(!overdue(&hourly, now, None, Some(now - 3600)));
        assert!(overdue(&hourly, now, None, Some(now - 7300)));
        // A completed backup counts, whatever runs failed since.
        assert!(!overdue(&hourly, now, Some(now - 60), Some(now - 90_000)));
    }
}
