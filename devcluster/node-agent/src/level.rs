//! Level-triggered handling of one kind of object: react to every watch event, and go over the whole cached
//! set periodically so that a failed attempt is retried without waiting for the object to change.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::{reflector, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tracing::warn;

/// Calls `handle` for every object seen by the watch, and for every cached object each `resync` period.
pub async fn run<K, F, Fut>(api: Api<K>, config: watcher::Config, resync: Duration, handle: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
    F: Fn(Arc<K>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (reader, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config).default_backoff());
    let mut events = std::pin::pin!(events);
    let mut ticker = tokio::time::interval(resync);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Apply(object) | Event::InitApply(object))) => handle(Arc::new(object)).await,
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "watch failed; retrying"),
                None => return,
            },
            _ = ticker.tick() => {
                for object in reader.state() {
                    handle(object).await;
                }
            }
        }
    }
}
