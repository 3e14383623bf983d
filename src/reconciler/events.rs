//! Publishing Kubernetes Events about an instance (their reasons: [`crate::events`]).

use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::Resource;
use tracing::warn;

use super::context::Context;
use crate::api::RedisInstance;
use crate::events::EventReason;

/// Publishes a Kubernetes Event about the instance; failures are logged, never fatal.
pub(crate) async fn event(
    ctx: &Context,
    ri: &RedisInstance,
    type_: EventType,
    reason: EventReason,
    action: &str,
    note: String,
) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_string(),
        note: Some(event_note(note)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ri.object_ref(&())).await {
        ctx.metrics.record_api_error("event", &e);
        warn!(error = %e, "could not publish event");
    }
}

/// The API server refuses an Event whose message is longer than this many bytes.
pub(super) const EVENT_NOTE_LIMIT: usize = 1024;

/// `note` cut to what an Event can hold (at a character boundary, marked with `…`): a failing pod's message
/// carries its last output, which can be longer, and an Event refused for its length is an Event lost.
pub(super) fn event_note(mut note: String) -> String {
    if note.len() <= EVENT_NOTE_LIMIT {
        return note;
    }
    let mut end = EVENT_NOTE_LIMIT - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_are_cut_to_what_an_event_holds() {
        assert_eq!(event_note("short".into()), "short");
        let exact = "x".repeat(EVENT_NOTE_LIMIT);
        assert_eq!(event_note(exact.clone()), exact);
        // Multi-byte characters straddling the limit are not split.
        let long = "é".repeat(EVENT_NOTE_LIMIT);
        let cut = event_note(long);
        assert!(cut.len() <= EVENT_NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
