//! Phase transitions and the bounded history kept in status.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::phase::Phase;

/// The most transitions a [`History`] keeps; older ones are dropped first.
pub const HISTORY_LIMIT: usize = 10;

/// The schema's upper bound of a generation: 2^53-1, the largest integer every JSON decoder (and the API
/// server's float-typed `maximum`) holds exactly. `i64::MAX` would become 2^63 as a float, which the API
/// server refuses as an int64 bound; no object ever reaches 2^53 generations.
pub const MAX_GENERATION: i64 = 9_007_199_254_740_991;

/// One phase change, as recorded in `status.history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The phase before.
    pub from: Phase,
    /// The phase after.
    pub to: Phase,
    /// The CamelCase reason of the decision.
    pub reason: String,
    /// The human message of the decision.
    pub message: String,
    /// When it happened (RFC 3339), as supplied by the caller.
    pub time: String,
    /// The RedisInstance generation the decision was made for.
    #[schemars(range(min = 0), extend("maximum" = MAX_GENERATION))]
    pub generation: i64,
}

/// The last [`HISTORY_LIMIT`] transitions, oldest first, newest last.
///
/// Every way in keeps the bound: [`History::record`], [`History::from_entries`] and
/// deserialisation all drop the oldest entries beyond the limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct History(#[schemars(length(max = HISTORY_LIMIT))] Vec<Transition>);

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history of `entries` (oldest first), keeping only the newest [`HISTORY_LIMIT`].
    pub fn from_entries(mut entries: Vec<Transition>) -> Self {
        let excess = entries.len().saturating_sub(HISTORY_LIMIT);
        entries.drain(..excess);
        Self(entries)
    }

    /// Appends `transition` as the newest entry, dropping the oldest beyond the limit.
    pub fn record(&mut self, transition: Transition) {
        if self.0.len() >= HISTORY_LIMIT {
            self.0.drain(..=self.0.len() - HISTORY_LIMIT);
        }
        self.0.push(transition);
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[Transition] {
        &self.0
    }

    /// How many transitions are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no transition is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The newest transition.
    pub fn last(&self) -> Option<&Transition> {
        self.0.last()
    }
}

impl<'de> Deserialize<'de> for History {
    /// Accepts a list of any length and keeps its newest [`HISTORY_LIMIT`] entries, so a status
    /// written by an older or hand-edited object still ends up bounded.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Transition>::deserialize(deserializer).map(Self::from_entries)
    }
}
