//! Continuous archiving (`spec.backup.archive`): what the archive holds in the bucket and how a restore picks
//! from it. Pure: the archiver ([`super::archiver`]) and the restore ([`super::restore`]) do the I/O.
//!
//! The archiver reads the instance's replication stream as a replica does, so the archive follows Redis' own
//! history: a *timeline* starts with a full synchronisation (a snapshot, the *base*, at replication id `R` and
//! offset `O`) and goes on with every byte of the command stream after `O`, across failovers and switchovers
//! (a promoted replica continues the same offsets, and `PSYNC` continues from it). Objects, under
//! `PREFIX/archive/R-O/`:
//!
//! - `base.rdb.zst`: the snapshot, zstd-compressed; `base.json`: its [`BaseManifest`], written once the
//!   snapshot is stored (a timeline without it is not used);
//! - `seg-START-END-FIRST-LAST.zst`: the stream bytes after offset `START` up to `END`, whole commands only,
//!   received from the first (`FIRST`, Unix milliseconds) to the last (`LAST`) of them; framed as
//!   [`encode_frames`] writes them: each chunk as it was received, with its time. Segments of a timeline follow
//!   each other without a gap: the next starts where the last ends.
//!
//! A restore to a time `T` takes the newest timeline whose base is older than `T`, its segments in order, and
//! the stream up to the last command received at or before `T` (never inside a `MULTI` … `EXEC`).

use serde::{Deserialize, Serialize};

/// What a timeline's base is (`base.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseManifest {
    /// The replication id of the full synchronisation.
    pub replication_id: String,
    /// The offset the snapshot holds every write up to.
    pub replication_offset: u64,
    /// When the snapshot was received (Unix milliseconds).
    pub time_ms: i64,
    /// Bytes of the snapshot (uncompressed).
    pub data_size: u64,
    /// SHA-256 of the snapshot, hex.
    pub sha256: String,
}

/// A timeline: the full synchronisation it starts from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeline {
    /// The replication id.
    pub replid: String,
    /// The offset.
    pub offset: u64,
}

impl Timeline {
    /// The folder of the timeline under `prefix`.
    pub fn folder(&self, prefix: &str) -> String {
        format!(
            "{}/archive/{}-{:020}",
            prefix.trim_end_matches('/'),
            self.replid,
            self.offset
        )
    }

    /// The key of its base snapshot.
    pub fn base_key(&self, prefix: &str) -> String {
        format!("{}/base.rdb.zst", self.folder(prefix))
    }

    /// The key of its base's manifest.
    pub fn manifest_key(&self, prefix: &str) -> String {
        format!("{}/base.json", self.folder(prefix))
    }

    /// The key of `segment`.
    pub fn segment_key(&self, prefix: &str, segment: &Segment) -> String {
        format!(
            "{}/seg-{:020}-{:020}-{:013}-{:013}.zst",
            self.folder(prefix),
            segment.start,
            segment.end,
            segment.first_ms,
            segment.last_ms
        )
    }
}

/// One stored piece of a timeline's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    /// The offset it starts after.
    pub start: u64,
    /// The offset it ends at.
    pub end: u64,
    /// When its first byte was received (Unix milliseconds).
    pub first_ms: i64,
    /// When its last byte was received.
    pub last_ms: i64,
}

/// A timeline as listed in the bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Whether `base.json` exists (the base is complete).
    pub complete: bool,
    /// Its segments, ordered by offset.
    pub segments: Vec<Segment>,
}

/// Sorts the keys of `PREFIX/archive/` into timelines. Keys of another shape are ignored.
pub fn parse_listing<'a>(
    prefix: &str,
    keys: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeMap<Timeline, Listed> {
    let root = format!("{}/archive/", prefix.trim_end_matches('/'));
    let mut timelines: std::collections::BTreeMap<Timeline, Listed> = Default::default();
    for key in keys {
        let Some((folder, file)) = key.strip_prefix(&root).and_then(|k| k.split_once('/')) else {
            continue;
        };
        let Some(timeline) = folder.split_once('-').and_then(|(replid, offset)| {
            Some(Timeline {
                replid: replid.to_string(),
                offset: offset.parse().ok()?,
            })
        }) else {
            continue;
        };
        if file == "base.json" {
            timelines.entry(timeline).or_default().complete = true;
        } else if let Some(segment) = parse_segment(file) {
            timelines
                .entry(timeline)
                .or_default()
                .segments
                .push(segment);
        }
    }
    for listed in timelines.values_mut() {
        listed.segments.sort();
    }
    timelines
}

fn parse_segment(file: &str) -> Option<Segment> {
    let mut fields = file.strip_prefix("seg-")?.strip_suffix(".zst")?.split('-');
    let segment = Segment {
        start: fields.next()?.parse().ok()?,
        end: fields.next()?.parse().ok()?,
        first_ms: fields.next()?.parse().ok()?,
        last_ms: fields.next()?.parse().ok()?,
    };
    (fields.next().is_none() && segment.start < segment.end).then_some(segment)
}

/// What a restore reads: a timeline's base, then these segments in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The timeline.
    pub timeline: Timeline,
    /// The segments to replay (the last one possibly in part).
    pub segments: Vec<Segment>,
    /// Where the archive stops short of the target: the segments after a gap are not used.
    pub gap_after: Option<u64>,
}

/// Chooses what restores the data as of `target_ms` (everything archived when `None`), given the timelines and
/// the time each complete base was taken (`base_ms`).
pub fn plan(
    timelines: &std::collections::BTreeMap<Timeline, Listed>,
    base_ms: impl Fn(&Timeline) -> Option<i64>,
    target_ms: Option<i64>,
) -> Result<Plan, String> {
    let candidates: Vec<(i64, &Timeline, &Listed)> = timelines
        .iter()
        .filter(|(_, listed)| listed.complete)
        .filter_map(|(timeline, listed)| Some((base_ms(timeline)?, timeline, listed)))
        .collect();
    if candidates.is_empty() {
        return Err("the archive holds no complete base snapshot".into());
    }
    let (_, timeline, listed) = candidates
        .iter()
        .filter(|(at, _, _)| target_ms.is_none_or(|target| *at <= target))
        .max_by_key(|(at, timeline, _)| (*at, timeline.offset))
        .ok_or_else(|| {
            let oldest = candidates
                .iter()
                .map(|(at, _, _)| *at)
                .min()
                .unwrap_or_default();
            format!(
                "the target time is before the archive's oldest base snapshot ({})",
                millis_rfc3339(oldest)
            )
        })?;
    let mut segments = Vec::new();
    let mut next = timeline.offset;
    let mut gap_after = None;
    for segment in &listed.segments {
        if segment.end <= next {
            continue;
        }
        if segment.start != next {
            gap_after = Some(next);
            break;
        }
        if target_ms.is_some_and(|target| segment.first_ms > target) {
            break;
        }
        segments.push(*segment);
        next = segment.end;
    }
    Ok(Plan {
        timeline: (*timeline).clone(),
        segments,
        gap_after,
    })
}

/// A complete timeline as the archiver sees it at its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The timeline.
    pub timeline: Timeline,
    /// When its base was taken (Unix milliseconds).
    pub base_ms: i64,
    /// When the newest byte it holds was received (its base's time without segments).
    pub last_ms: i64,
    /// The offset its stored stream ends at, without a gap from the base.
    pub end: u64,
}

/// What the archiver does at its start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// The timeline to continue and the offset it ends at; `None`: start a new one (none yet, or the newest's
    /// base is older than `new_base_after`).
    pub resume: Option<(Timeline, u64)>,
    /// When the resumed timeline's base was taken.
    pub resume_base_ms: Option<i64>,
    /// Timelines whose newest byte is older than the retention: deleted (never the newest).
    pub expired: Vec<Timeline>,
}

/// Decides, at `now_ms`, which timeline the archiver continues and which ones retention drops.
pub fn housekeeping(
    stored: &[Stored],
    now_ms: i64,
    new_base_after_ms: Option<i64>,
    retention_ms: Option<i64>,
) -> Housekeeping {
    let Some(newest) = stored
        .iter()
        .max_by_key(|s| (s.last_ms, s.base_ms, s.timeline.offset))
    else {
        return Housekeeping::default();
    };
    let rebase = new_base_after_ms.is_some_and(|every| now_ms - newest.base_ms >= every);
    let expired = stored
        .iter()
        .filter(|s| s.timeline != newest.timeline)
        .filter(|s| retention_ms.is_some_and(|keep| now_ms - s.last_ms > keep))
        .map(|s| s.timeline.clone())
        .collect();
    Housekeeping {
        resume: (!rebase).then(|| (newest.timeline.clone(), newest.end)),
        resume_base_ms: (!rebase).then_some(newest.base_ms),
        expired,
    }
}

/// `ms` (Unix milliseconds) in RFC 3339, to the millisecond.
pub fn millis_rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Frames chunks received at their times: `[u64 time_ms][u32 length][bytes]`, big-endian, one after another.
pub fn encode_frames(frames: &[(i64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.iter().map(|(_, b)| b.len() + 12).sum());
    for (time, bytes) in frames {
        out.extend_from_slice(&time.to_be_bytes());
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// A segment's bytes and, for each frame, where it ends in them and its time.
pub type Frames = (Vec<u8>, Vec<(usize, i64)>);

/// The frames of a segment.
pub fn decode_frames(data: &[u8]) -> Result<Frames, String> {
    let (mut bytes, mut ends) = (Vec::with_capacity(data.len()), Vec::new());
    let mut rest = data;
    while !rest.is_empty() {
        let (Some(time), Some(len)) = (rest.get(..8), rest.get(8..12)) else {
            return Err("a segment's frame header is cut short".into());
        };
        let time = i64::from_be_bytes(time.try_into().unwrap_or_default());
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        let body = rest
            .get(12..12 + len)
            .ok_or("a segment's frame is cut short")?;
        bytes.extend_from_slice(body);
        ends.push((bytes.len(), time));
        rest = &rest[12 + len..];
    }
    Ok((bytes, ends))
}

/// The length of the complete command at the start of `buf` (a RESP array of bulk strings, as a primary sends
/// its replicas) and its name, upper-cased; `None` while it is incomplete.
pub fn next_command(buf: &[u8]) -> Result<Option<(usize, Vec<u8>)>, String> {
    let Some((count, mut at)) = header(buf, 0, b'*')? else {
        return Ok(None);
    };
    let mut name = Vec::new();
    for i in 0..count {
        let Some((len, start)) = header(buf, at, b'$')? else {
            return Ok(None);
        };
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err("a bulk string of the stream does not end with CRLF".into());
        }
        if i == 0 {
            name = buf[start..end].to_ascii_uppercase();
        }
        at = end + 2;
    }
    Ok(Some((at, name)))
}

/// Reads `<marker><number>\r\n` at `at`: the number and where what follows starts.
fn header(buf: &[u8], at: usize, marker: u8) -> Result<Option<(usize, usize)>, String> {
    let Some(&first) = buf.get(at) else {
        return Ok(None);
    };
    if first != marker {
        return Err(format!(
            "the stream holds {:?} where {:?} was expected",
            first as char, marker as char
        ));
    }
    let Some(line_end) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
        if buf.len() - at > 24 {
            return Err("a RESP header line is too long".into());
        }
        return Ok(None);
    };
    let number = std::str::from_utf8(&buf[at + 1..at + line_end])
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or("a RESP header holds no number")?;
    Ok(Some((number, at + line_end + 2)))
}

/// Whether a command of the stream changes no data (the primary's keep-alives and acknowledgement requests).
pub fn is_keepalive(name: &[u8]) -> bool {
    name == b"PING" || name == b"REPLCONF"
}

/// Where to stop replaying `bytes` (one segment's, with the frames' `ends` and times as [`decode_frames`] gives
/// them) so that no command received after `target_ms` is applied and no `MULTI` is left open: the length to
/// send, and whether the stream was cut (a command came later than the target).
pub fn cut(
    bytes: &[u8],
    ends: &[(usize, i64)],
    target_ms: Option<i64>,
) -> Result<(usize, bool), String> {
    let time_at = |position: usize| {
        ends.iter()
            .find(|(end, _)| *end >= position)
            .map_or(i64::MAX, |(_, time)| *time)
    };
    let (mut at, mut safe, mut in_multi) = (0, 0, false);
    while at < bytes.len() {
        let Some((len, name)) = next_command(&bytes[at..])? else {
            return Err("a segment ends inside a command".into());
        };
        if target_ms.is_some_and(|target| time_at(at + len) > target) {
            return Ok((safe, true));
        }
        at += len;
        match name.as_slice() {
            b"MULTI" => in_multi = true,
            b"EXEC" | b"DISCARD" => in_multi = false,
            _ => {}
        }
        if !in_multi {
            safe = at;
        }
    }
    Ok((safe, false))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `args` as a primary sends a command to its replicas.
    pub(crate) fn cmd(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
        }
        out
    }

    #[test]
    fn commands_are_split_at_their_ends_and_incomplete_ones_wait() {
        let set = cmd(&["set", "k", "value"]);
        let mut both = set.clone();
        both.extend(cmd(&["PING"]));
        assert_eq!(
            next_command(&both).unwrap(),
            Some((set.len(), b"SET".to_vec()))
        );
        for cut_at in 0..set.len() {
            assert_eq!(next_command(&set[..cut_at]).unwrap(), None, "{cut_at}");
        }
        assert!(next_command(b"+OK\r\n").is_err());
        assert!(next_command(b"*1\r\n$3\r\nSETxx").is_err());
    }

    #[test]
    fn the_newest_timeline_is_continued_until_its_base_is_too_old_and_old_ones_expire() {
        let day = 86_400_000;
        let timeline = |offset| Timeline {
            replid: "r".repeat(40),
            offset,
        };
        let stored = [
            Stored {
                timeline: timeline(0),
                base_ms: 0,
                last_ms: day,
                end: 500,
            },
            Stored {
                timeline: timeline(500),
                base_ms: day,
                last_ms: 3 * day,
                end: 900,
            },
        ];
        let now = 3 * day + 1;
        let kept = housekeeping(&stored, now, None, None);
        assert_eq!(kept.resume, Some((timeline(500), 900)));
        assert_eq!(kept.resume_base_ms, Some(day));
        assert!(kept.expired.is_empty());
        // A base older than a day: a new timeline; the one whose newest byte is older than a day is dropped.
        let rebased = housekeeping(&stored, now, Some(day), Some(day));
        assert_eq!(rebased.resume, None);
        assert_eq!(rebased.expired, vec![timeline(0)]);
        // The newest is never dropped, however old.
        assert_eq!(
            housekeeping(&stored, 100 * day, None, Some(day)).expired,
            vec![timeline(0)]
        );
        assert_eq!(
            housekeeping(&[], now, Some(day), Some(day)),
            Housekeeping::default()
        );
    }

    #[test]
    fn times_keep_their_milliseconds() {
        assert_eq!(
            millis_rfc3339(1_796_627_736_328),
            "2026-12-07T07:15:36.328Z"
        );
        assert_eq!(
            millis_rfc3339(1_796_627_736_000),
            "2026-12-07T07:15:36.000Z"
        );
    }

    #[test]
    fn frames_round_trip() {
        let frames = [(5_i64, &b"abc"[..]), (9, b""), (12, b"de")];
        let (bytes, ends) = decode_frames(&encode_frames(&frames)).unwrap();
        assert_eq!(bytes, b"abcde");
        assert_eq!(ends, vec![(3, 5), (3, 9), (5, 12)]);
        assert!(decode_frames(&encode_frames(&frames)[..20]).is_err());
    }

    #[test]
    fn a_cut_stops_before_the_first_later_command_and_never_inside_a_transaction() {
        let (a, b, multi, c, exec, d) = (
            cmd(&["SET", "a", "1"]),
            cmd(&["SET", "b", "1"]),
            cmd(&["MULTI"]),
            cmd(&["SET", "c", "1"]),
            cmd(&["EXEC"]),
            cmd(&["SET", "d", "1"]),
        );
        // a and half of b at 100; the rest of b at 200; the transaction at 200 and 300; d at 400.
        let mut bytes = a.clone();
        let half = a.len() + b.len() / 2;
        bytes.extend(&b);
        let after_b = bytes.len();
        bytes.extend(&multi);
        bytes.extend(&c);
        let in_tx = bytes.len();
        bytes.extend(&exec);
        let after_tx = bytes.len();
        bytes.extend(&d);
        let ends = vec![
            (half, 100),
            (in_tx, 200),
            (after_tx, 300),
            (bytes.len(), 400),
        ];
        assert_eq!(cut(&bytes, &ends, Some(99)).unwrap(), (0, true));
        assert_eq!(cut(&bytes, &ends, Some(150)).unwrap(), (a.len(), true));
        // b completes at 200; the transaction ends at 300: at 250 it is left out whole.
        assert_eq!(cut(&bytes, &ends, Some(250)).unwrap(), (after_b, true));
        assert_eq!(cut(&bytes, &ends, Some(300)).unwrap(), (after_tx, true));
        assert_eq!(cut(&bytes, &ends, None).unwrap(), (bytes.len(), false));
        assert_eq!(cut(&bytes, &ends, Some(400)).unwrap(), (bytes.len(), false));
    }

    fn seg(start: u64, end: u64, first_ms: i64) -> Segment {
        Segment {
            start,
            end,
            first_ms,
            last_ms: first_ms + 5,
        }
    }

    #[test]
    fn keys_are_listed_by_timeline_and_the_newest_base_before_the_target_is_planned() {
        let old = Timeline {
            replid: "a".repeat(40),
            offset: 100,
        };
        let new = Timeline {
            replid: "b".repeat(40),
            offset: 7,
        };
        let keys = [
            old.manifest_key("ns/c"),
            old.segment_key("ns/c", &seg(100, 150, 1_000)),
            old.segment_key("ns/c", &seg(150, 170, 2_000)),
            old.segment_key("ns/c", &seg(170, 180, 3_000)),
            new.manifest_key("ns/c"),
            new.segment_key("ns/c", &seg(7, 9, 6_000)),
            new.segment_key("ns/c", &seg(12, 20, 7_000)),
            "ns/c/archive/junk".to_string(),
            "ns/c/base/x.rdb.zst".to_string(),
        ];
        let listed = parse_listing("ns/c", keys.iter().map(String::as_str));
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[&old].segments.len(), 3);
        let base_ms = |t: &Timeline| Some(if t == &old { 500 } else { 5_000 });
        let at = plan(&listed, base_ms, Some(2_500)).unwrap();
        assert_eq!(at.timeline, old);
        assert_eq!(
            at.segments,
            vec![seg(100, 150, 1_000), seg(150, 170, 2_000)]
        );
        assert_eq!(at.gap_after, None);
        let latest = plan(&listed, base_ms, None).unwrap();
        assert_eq!(latest.timeline, new);
        assert_eq!(latest.segments, vec![seg(7, 9, 6_000)]);
        assert_eq!(latest.gap_after, Some(9));
        assert!(plan(&listed, base_ms, Some(100))
            .unwrap_err()
            .contains("before the archive's oldest"));
        // A timeline whose base never completed is not used.
        let mut incomplete = listed.clone();
        incomplete.get_mut(&new).unwrap().complete = false;
        assert_eq!(plan(&incomplete, base_ms, None).unwrap().timeline, old);
    }
}
