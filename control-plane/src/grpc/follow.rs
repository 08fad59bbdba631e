//! Following an app or a release for the watch streams: one pass every [`POLL`] reads the
//! new events of the app's log, the app or release, and the app's instances, and sends what
//! changed. Polling keeps the store the only source of truth (a second control plane's
//! changes are seen too) and costs one indexed query per stream and pass.
//!
//! Events are read with [`EventCursor`], which closes the gap `/api/v1/events?after=` has
//! on PostgreSQL: two transactions may commit their event ids out of order, so an id below
//! one already seen can still appear. The cursor re-reads ids above its floor until every
//! event at or below it is [`LATE_COMMIT_GRACE`] old, and drops what it has already sent.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use serde_json::Value;
use tideway_api_types::{Event, InstanceState};
use tideway_proto::api::v1::{
    watch_app_response, watch_release_response, InstanceList, WatchAppResponse,
    WatchReleaseResponse,
};
use tideway_proto::api::{
    app_to_proto, event_to_proto, instance_to_proto, release_state_is_final, release_to_proto,
};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::domain::name::Name;
use crate::store::{EventFilter, Store, StoreError};

/// How often a watch looks for changes.
pub const POLL: Duration = Duration::from_millis(250);
/// How long after its time an event id is assumed committed, so no lower id can still appear.
pub const LATE_COMMIT_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Events read per query.
const PAGE: u32 = 500;

/// Which events of a log have been sent: every id at or below `floor`, and those in `seen`.
#[derive(Debug, Clone)]
pub struct EventCursor {
    floor: i64,
    /// Ids above the floor already sent, with their event times.
    seen: BTreeMap<i64, DateTime<Utc>>,
}

impl EventCursor {
    /// A cursor that has sent every event up to id `after`.
    pub fn new(after: i64) -> Self {
        EventCursor {
            floor: after,
            seen: BTreeMap::new(),
        }
    }

    /// Read events with a larger id than this.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// The events of `page` not sent yet, which it now counts as sent.
    pub fn admit(&mut self, page: Vec<Event>) -> Vec<Event> {
        let mut fresh = Vec::new();
        for event in page {
            if event.id > self.floor && !self.seen.contains_key(&event.id) {
                self.seen.insert(event.id, event.time);
                fresh.push(event);
            }
        }
        fresh
    }

    /// Moves the floor up to the largest sent id whose event is [`LATE_COMMIT_GRACE`] old at
    /// `now`: no transaction is still open that could commit an id below it.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        let settled = self
            .seen
            .iter()
            .filter(|(_, time)| **time + LATE_COMMIT_GRACE <= now)
            .map(|(id, _)| *id)
            .max();
        if let Some(id) = settled {
            self.floor = self.floor.max(id);
            let floor = self.floor;
            self.seen.retain(|id, _| *id > floor);
        }
    }
}

/// The ids of an app's latest `n` events, newest first.
pub async fn latest_event_ids(
    store: &dyn Store,
    ns: &Name,
    app: &Name,
    n: u32,
) -> Result<Vec<i64>, StoreError> {
    let page = store
        .list_events(&EventFilter {
            namespace: Some(ns.to_string()),
            app: Some(app.to_string()),
            limit: n,
            newest_first: true,
            ..EventFilter::default()
        })
        .await?;
    Ok(page.items.iter().map(|e| e.id).collect())
}

/// Reads an app's new events page by page.
struct AppEvents {
    ns: Name,
    app: Name,
    cursor: EventCursor,
}

impl AppEvents {
    /// Events not sent yet (at most a page), and whether more may be waiting.
    async fn next(
        &mut self,
        store: &dyn Store,
        after: &mut i64,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let page = store
            .list_events(&EventFilter {
                namespace: Some(self.ns.to_string()),
                app: Some(self.app.to_string()),
                after: Some(*after),
                limit: PAGE,
                ..EventFilter::default()
            })
            .await?;
        let more = page.next_cursor.is_some();
        if let Some(last) = page.items.last() {
            *after = last.id;
        }
        let fresh = self.cursor.admit(page.items);
        self.cursor.settle(now);
        Ok((fresh, more))
    }
}

/// A message sink that reports whether the client is still there.
struct Sink<T>(mpsc::Sender<Result<T, Status>>);

impl<T> Sink<T> {
    async fn send(&self, message: T) -> Outcome {
        match self.0.send(Ok(message)).await {
            Ok(()) => Outcome::Continue,
            Err(_) => Outcome::Done,
        }
    }
}

/// What a pass tells its loop.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Continue,
    /// The stream is complete, or nobody listens any more.
    Done,
}

/// Sends every new event of the app that `keep` accepts.
async fn send_events<T>(
    state: &AppState,
    events: &mut AppEvents,
    keep: impl Fn(&Event) -> bool,
    wrap: impl Fn(Event) -> T,
    sink: &Sink<T>,
) -> Result<Outcome, Status> {
    let mut after = events.cursor.floor();
    loop {
        let now = state.clock.now();
        let (fresh, more) = events
            .next(state.store.as_ref(), &mut after, now)
            .await
            .map_err(ApiError::from)?;
        for event in fresh.into_iter().filter(|e| keep(e)) {
            if sink.send(wrap(event)).await == Outcome::Done {
                return Ok(Outcome::Done);
            }
        }
        if !more {
            return Ok(Outcome::Continue);
        }
    }
}

/// A watch: one pass looks for changes and sends them.
trait Watch: Send {
    type Message: Send;

    fn pass<'a>(
        &'a mut self,
        sink: &'a Sink<Self::Message>,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, Status>> + Send + 'a>>;
}

/// Runs `watch` every [`POLL`] (the first pass at once) until it is done, fails (the
/// failure ends the stream), the client leaves, or the server shuts down.
async fn run<W: Watch>(
    mut watch: W,
    tx: mpsc::Sender<Result<W::Message, Status>>,
    shutdown: CancellationToken,
) {
    let sink = Sink(tx);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match watch.pass(&sink).await {
            Ok(Outcome::Continue) => {}
            Ok(Outcome::Done) => return,
            Err(status) => {
                let _ = sink.0.send(Err(status)).await;
                return;
            }
        }
    }
}

/// The messages of `watch` as a response stream. The watch runs inside the stream, not in a
/// task of its own: it stops when the stream is dropped (the client left) and waits while
/// the client does not read.
fn stream_of<W>(watch: W, shutdown: CancellationToken) -> Watching<W::Message>
where
    W: Watch + 'static,
    W::Message: 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let watching = run(watch, tx, shutdown)
        .into_stream()
        .filter_map(|()| std::future::ready(None));
    Box::pin(futures_util::stream::select(
        ReceiverStream::new(rx),
        watching,
    ))
}

/// A response stream of a watch.
pub type Watching<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Identity and state of an instance, as a watcher compares them.
type InstanceKey = (String, u32, InstanceState, u32, Option<String>);

/// Follows an app, its instances and its events until the app is deleted.
struct AppWatch {
    state: Arc<AppState>,
    events: AppEvents,
    generation: Option<i64>,
    instances: Option<Vec<InstanceKey>>,
}

fn app_update(update: watch_app_response::Update) -> WatchAppResponse {
    WatchAppResponse {
        update: Some(update),
    }
}

impl AppWatch {
    async fn step(&mut self, sink: &Sink<WatchAppResponse>) -> Result<Outcome, Status> {
        let (ns, app) = (&self.events.ns, &self.events.app);
        let deleted = match self.state.store.get_app(ns, app).await {
            Ok(record) => {
                if self.generation != Some(record.app.generation) {
                    self.generation = Some(record.app.generation);
                    let update = watch_app_response::Update::App(app_to_proto(&record.app));
                    if sink.send(app_update(update)).await == Outcome::Done {
                        return Ok(Outcome::Done);
                    }
                }
                false
            }
            Err(StoreError::NotFound { .. }) => true,
            Err(e) => return Err(ApiError::from(e).into()),
        };
        if !deleted {
            let mut instances: Vec<_> = self
                .state
                .runtime
                .instances()
                .into_iter()
                .filter(|i| i.namespace == ns.as_str() && i.app == app.as_str())
                .collect();
            instances.sort_by(|a, b| a.id.cmp(&b.id));
            let key: Vec<InstanceKey> = instances
                .iter()
                .map(|i| {
                    (
                        i.id.clone(),
                        i.version,
                        i.state,
                        i.restarts,
                        i.address.clone(),
                    )
                })
                .collect();
            if self.instances.as_ref() != Some(&key) {
                self.instances = Some(key);
                let list = InstanceList {
                    instances: instances.iter().map(instance_to_proto).collect(),
                };
                if sink
                    .send(app_update(watch_app_response::Update::Instances(list)))
                    .await
                    == Outcome::Done
                {
                    return Ok(Outcome::Done);
                }
            }
        }
        let sent = send_events(
            &self.state,
            &mut self.events,
            |_| true,
            |e| app_update(watch_app_response::Update::Event(event_to_proto(&e))),
            sink,
        )
        .await?;
        Ok(if deleted { Outcome::Done } else { sent })
    }
}

impl Watch for AppWatch {
    type Message = WatchAppResponse;

    fn pass<'a>(
        &'a mut self,
        sink: &'a Sink<WatchAppResponse>,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, Status>> + Send + 'a>> {
        Box::pin(self.step(sink))
    }
}

/// Streams the app, its instances and its events after `after` until the app is deleted.
pub fn watch_app(
    state: Arc<AppState>,
    ns: Name,
    app: Name,
    after: i64,
    shutdown: CancellationToken,
) -> Watching<WatchAppResponse> {
    let watch = AppWatch {
        state,
        events: AppEvents {
            ns,
            app,
            cursor: EventCursor::new(after),
        },
        generation: None,
        instances: None,
    };
    stream_of(watch, shutdown)
}

/// Whether an event records a step of release `id`.
fn of_release(event: &Event, id: i64) -> bool {
    event.details.get("release").and_then(Value::as_i64) == Some(id)
}

/// Follows a release's events and state until it reaches a final state.
struct ReleaseWatch {
    state: Arc<AppState>,
    events: AppEvents,
    id: i64,
    generation: Option<i64>,
}

fn release_update(update: watch_release_response::Update) -> WatchReleaseResponse {
    WatchReleaseResponse {
        update: Some(update),
    }
}

fn release_event(e: Event) -> WatchReleaseResponse {
    release_update(watch_release_response::Update::Event(event_to_proto(&e)))
}

impl ReleaseWatch {
    async fn step(&mut self, sink: &Sink<WatchReleaseResponse>) -> Result<Outcome, Status> {
        let id = self.id;
        // Events first: the release read after them is at least as new as they are.
        let sent = send_events(
            &self.state,
            &mut self.events,
            |e| of_release(e, id),
            release_event,
            sink,
        )
        .await?;
        if sent == Outcome::Done {
            return Ok(Outcome::Done);
        }
        let release = self
            .state
            .store
            .get_release(&self.events.ns, &self.events.app, id)
            .await
            .map_err(ApiError::from)?;
        if self.generation == Some(release.generation) {
            return Ok(Outcome::Continue);
        }
        self.generation = Some(release.generation);
        let message = release_to_proto(&release);
        let done = release_state_is_final(message.state());
        let update = release_update(watch_release_response::Update::Release(message));
        if sink.send(update).await == Outcome::Done {
            return Ok(Outcome::Done);
        }
        if !done {
            return Ok(Outcome::Continue);
        }
        // The final transition's event committed with it, perhaps after this pass read the
        // log.
        send_events(
            &self.state,
            &mut self.events,
            |e| of_release(e, id),
            release_event,
            sink,
        )
        .await?;
        Ok(Outcome::Done)
    }
}

impl Watch for ReleaseWatch {
    type Message = WatchReleaseResponse;

    fn pass<'a>(
        &'a mut self,
        sink: &'a Sink<WatchReleaseResponse>,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, Status>> + Send + 'a>> {
        Box::pin(self.step(sink))
    }
}

/// Streams release `id`'s events after `after` and the release after every change, until
/// it reaches a final state.
pub fn watch_release(
    state: Arc<AppState>,
    ns: Name,
    app: Name,
    id: i64,
    after: i64,
    shutdown: CancellationToken,
) -> Watching<WatchReleaseResponse> {
    let watch = ReleaseWatch {
        state,
        events: AppEvents {
            ns,
            app,
            cursor: EventCursor::new(after),
        },
        id,
        generation: None,
    };
    stream_of(watch, shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn event(id: i64, time: DateTime<Utc>) -> Event {
        Event {
            id,
            time,
            namespace: Some("default".into()),
            app: Some("shop".into()),
            kind: "AppUpdated".into(),
            actor: "test".into(),
            reason: String::new(),
            details: json!({}),
        }
    }

    fn ids(events: &[Event]) -> Vec<i64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn sends_each_event_once_and_catches_a_late_commit() {
        let mut c = EventCursor::new(0);
        assert_eq!(
            ids(&c.admit(vec![event(1, at(0)), event(3, at(0))])),
            [1, 3]
        );
        c.settle(at(1));
        // Id 2 was taken before 3 but committed after it: still inside the grace.
        assert_eq!(c.floor(), 0);
        let again = c.admit(vec![event(1, at(0)), event(2, at(0)), event(3, at(0))]);
        assert_eq!(ids(&again), [2]);
        c.settle(at(5));
        assert_eq!(c.floor(), 3);
        assert!(c.admit(vec![event(2, at(0))]).is_empty());
    }

    #[test]
    fn old_events_settle_at_once_so_a_replay_moves_on() {
        let mut c = EventCursor::new(0);
        let history: Vec<_> = (1..=1000).map(|id| event(id, at(0))).collect();
        assert_eq!(c.admit(history).len(), 1000);
        c.settle(at(3600));
        assert_eq!(c.floor(), 1000);
        assert!(c.seen.is_empty());
    }

    #[test]
    fn the_floor_stops_below_recent_events() {
        let mut c = EventCursor::new(10);
        assert!(c.admit(vec![event(9, at(0))]).is_empty(), "below the floor");
        c.admit(vec![event(11, at(0)), event(12, at(8))]);
        c.settle(at(9));
        assert_eq!(c.floor(), 11);
        assert_eq!(c.seen.keys().copied().collect::<Vec<_>>(), [12]);
    }

    #[test]
    fn release_events_are_told_apart() {
        let mut e = event(1, at(0));
        e.details = json!({"release": 7, "to_state": "progressing"});
        assert!(of_release(&e, 7));
        assert!(!of_release(&e, 8));
        e.details = json!({"target_version": 7});
        assert!(!of_release(&e, 7));
    }
}
