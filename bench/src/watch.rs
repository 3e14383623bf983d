//! The benchmark's own watches: every object version, stamped with the instant it arrived.

use std::fmt::Debug;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

/// A running watch; the task stops when this is dropped.
pub struct Watch<K> {
    /// Object versions in arrival order, each with its arrival time.
    pub events: UnboundedReceiver<(Instant, K)>,
    task: JoinHandle<()>,
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    /// Starts watching `api`; returns once the initial list has arrived, so later changes are seen as events.
    pub async fn start(api: Api<K>) -> Watch<K> {
        let (tx, events) = unbounded_channel();
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                let arrived = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(object)) | Ok(watcher::Event::InitApply(object)) => {
                        // The receiver is gone: nobody measures any more.
                        let Ok(()) = tx.send((arrived, object)) else {
                            return;
                        };
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(listed) = listed.take() {
                            let _ = listed.send(());
                        }
                    }
                    _ => {}
                }
            }
        });
        let _ = listed_rx.await;
        Watch { events, task }
    }

    /// Drops every event received so far.
    pub fn drain(&mut self) {
        while self.events.try_recv().is_ok() {}
    }
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
