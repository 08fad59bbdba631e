//! The storage contract of the control plane, run against every backend of [`SqlStore`].
//!
//! Each `case_*` function states one part of the [`Store`] contract against a fresh, empty
//! database; the `contract!` macro turns it into one test per backend (`<case>_sqlite`,
//! `<case>_postgres`) so a failure names the backend it happened on.
//!
//! SQLite always runs, in a fresh temporary directory. PostgreSQL runs only when
//! `TIDEWAY_TEST_POSTGRES_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`): every
//! test creates its own `tw_contract_<hex>` database through that URL and drops it afterwards.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, Executor};
use tideway::clock::Clock;
use tideway::domain::event::NewEvent;
use tideway::domain::name::Name;
use tideway::domain::release::Transition;
use tideway::domain::Invalid;
use tideway::store::sql::SqlStore;
use tideway::store::{EventFilter, Page, PageRequest, Store, StoreError, StoreResult};
use tideway_api_types::{
    App, AppCreate, AutoscalingPolicy, Event, HealthCheck, Labels, ReleaseState, Resources, Role,
    RunSpec, Strategy, VersionCreate, VersionState,
};
use tokio::task::JoinSet;

const POSTGRES_URL_VAR: &str = "TIDEWAY_TEST_POSTGRES_URL";
const ACTOR: &str = "contract-test";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A clock that moves one second forward every time it is read, so that every stored
/// timestamp is distinct and predictable in order.
struct TickClock(AtomicI64);

impl TickClock {
    fn start() -> Arc<dyn Clock> {
        // 2030-01-01T00:00:00.123Z: far from "now", with milliseconds to round-trip.
        Arc::new(TickClock(AtomicI64::new(1_893_456_000_123)))
    }
}

impl Clock for TickClock {
    fn now(&self) -> DateTime<Utc> {
        let ms = self.0.fetch_add(1000, Ordering::SeqCst);
        DateTime::from_timestamp_millis(ms).expect("test clock stays in range")
    }
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

/// A freshly migrated store over an empty database, and what it takes to throw it away.
struct Harness {
    store: Arc<dyn Store>,
    url: String,
    cleanup: Cleanup,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = SqlStore::connect(&url, TickClock::start())
            .await
            .expect("connect the SQLite store");
        Harness {
            store: Arc::new(store),
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// `None` (after saying so) when no PostgreSQL server was given.
    async fn postgres(test: &str) -> Option<Harness> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped, {POSTGRES_URL_VAR} is not set"
            );
            return None;
        };
        let database = format!("tw_contract_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_VAR}={admin_url}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {database}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &database);
        let cleanup = Cleanup::Postgres {
            admin_url,
            database,
        };
        match SqlStore::connect(&url, TickClock::start()).await {
            Ok(store) => Some(Harness {
                store: Arc::new(store),
                url,
                cleanup,
            }),
            Err(e) => {
                drop_database(&cleanup).await;
                panic!("connect the PostgreSQL store to {url}: {e:?}");
            }
        }
    }

    /// Runs a case in its own task so that the database is dropped even when it panics, then
    /// re-raises the panic.
    async fn run<F, Fut>(self, case: F)
    where
        F: FnOnce(Arc<dyn Store>, String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Harness {
            store,
            url,
            cleanup,
        } = self;
        let outcome = tokio::spawn(case(store.clone(), url)).await;
        drop(store);
        match cleanup {
            Cleanup::Sqlite(dir) => {
                if let Err(e) = dir.close() {
                    eprintln!("could not remove the test database directory: {e}");
                }
            }
            postgres => drop_database(&postgres).await,
        }
        if let Err(e) = outcome {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the case did not finish: {e}"),
            }
        }
    }
}

/// Best effort: a database left behind only costs disk space.
async fn drop_database(cleanup: &Cleanup) {
    let Cleanup::Postgres {
        admin_url,
        database,
    } = cleanup
    else {
        return;
    };
    match sqlx::postgres::PgConnection::connect(admin_url).await {
        Ok(mut admin) => {
            // FORCE: the store's pool may still be closing its connections.
            let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
            if let Err(e) = admin.execute(sql.as_str()).await {
                eprintln!("could not drop test database {database}: {e}");
            }
            let _ = admin.close().await;
        }
        Err(e) => eprintln!("could not drop test database {database}: {e}"),
    }
}

/// `url` with its database (path) replaced by `database`, keeping any query string.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `contract!(#[test attribute] mode: case_fn => sqlite_test, postgres_test);`
///
/// Modes: `borrowed` calls `case(&dyn Store)`, `shared` calls `case(Arc<dyn Store>)` (for
/// cases that spawn tasks), `with_url` calls `case(&dyn Store, &str)` with the database URL.
macro_rules! contract {
    (#[$attr:meta] $mode:ident: $case:ident => $sqlite:ident, $postgres:ident) => {
        #[$attr]
        async fn $sqlite() {
            Harness::sqlite()
                .await
                .run(contract!(@call $mode $case))
                .await;
        }

        #[$attr]
        async fn $postgres() {
            if let Some(harness) = Harness::postgres(stringify!($postgres)).await {
                harness.run(contract!(@call $mode $case)).await;
            }
        }
    };
    (@call borrowed $case:ident) => {
        |store: Arc<dyn Store>, _url: String| async move { $case(&*store).await }
    };
    (@call shared $case:ident) => {
        |store: Arc<dyn Store>, _url: String| $case(store)
    };
    (@call with_url $case:ident) => {
        |store: Arc<dyn Store>, url: String| async move { $case(&*store, &url).await }
    };
}

contract!(#[tokio::test] borrowed: case_namespaces => namespaces_sqlite, namespaces_postgres);
contract!(#[tokio::test] borrowed: case_apps => apps_sqlite, apps_postgres);
contract!(#[tokio::test] borrowed: case_versions => versions_sqlite, versions_postgres);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_lost_updates => lost_updates_sqlite, lost_updates_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_pinned_namespace_update => pinned_namespace_update_sqlite, pinned_namespace_update_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_pinned_app_update => pinned_app_update_sqlite, pinned_app_update_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_pinned_release_transition => pinned_release_transition_sqlite, pinned_release_transition_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_pinned_policy_put => pinned_policy_put_sqlite, pinned_policy_put_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_pinned_delete => pinned_delete_sqlite, pinned_delete_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_concurrent_revoke => concurrent_revoke_sqlite, concurrent_revoke_postgres
);
contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    shared: case_concurrent_releases => concurrent_releases_sqlite, concurrent_releases_postgres
);
contract!(#[tokio::test] borrowed: case_releases => releases_sqlite, releases_postgres);
contract!(#[tokio::test] borrowed: case_policy => policy_sqlite, policy_postgres);
contract!(#[tokio::test] borrowed: case_tokens => tokens_sqlite, tokens_postgres);
contract!(#[tokio::test] borrowed: case_events => events_sqlite, events_postgres);
contract!(#[tokio::test] with_url: case_schema_guard => schema_guard_sqlite, schema_guard_postgres);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts that a store call failed with an error matching the pattern.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern),
                other
            ),
        }
    };
}

fn name(s: &str) -> Name {
    Name::parse(s).expect("a valid test name")
}

fn event(kind: &'static str) -> NewEvent {
    NewEvent::new(kind, ACTOR, format!("contract test: {kind}"))
}

fn app_event(kind: &'static str, ns: &str, app: &str) -> NewEvent {
    event(kind).app(ns, app)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

fn app_create(name: &str, replicas: Option<u32>) -> AppCreate {
    AppCreate {
        name: name.to_owned(),
        description: format!("the {name} app"),
        labels: labels(&[("tier", name)]),
        replicas,
        domains: Vec::new(),
        path_prefixes: Vec::new(),
        registries: Vec::new(),
    }
}

fn version_create(n: u64) -> VersionCreate {
    VersionCreate {
        artifact_digest: format!("sha256:{n:064x}"),
        run: RunSpec {
            command: format!("./serve --build {n}"),
        },
        env: [("MODE".to_owned(), "prod".to_owned())]
            .into_iter()
            .collect(),
        port: Some(8080),
        health: HealthCheck {
            http: Some("/healthz".to_owned()),
            tcp: false,
            interval_ms: 500,
            timeout_ms: 250,
            healthy_threshold: 2,
            unhealthy_threshold: 5,
        },
        resources: Resources {
            memory_mb: Some(256),
            cpu_millis: Some(500),
        },
        build_command: None,
    }
}

fn policy(value: serde_json::Value) -> AutoscalingPolicy {
    serde_json::from_value(value).expect("a valid autoscaling policy")
}

fn transition(to: ReleaseState, set_current_version: Option<u32>) -> Transition {
    Transition {
        to,
        reason: format!("contract test moves the release to {to:?}"),
        set_current_version,
        progress: Default::default(),
        kind: "ReleaseStepped",
        details: serde_json::Value::Null,
    }
}

/// Wire types have no `PartialEq`; their JSON form compares every field.
fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).expect("serialize") == serde_json::to_value(b).expect("serialize")
}

/// Walks every page of a keyset-paginated list, checking that the cursor advances and that
/// pages respect the limit. Returns the pages.
async fn pages<T, F, Fut>(limit: u32, mut fetch: F) -> Vec<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let got = fetch(page(limit, cursor.clone()))
            .await
            .expect("list a page");
        assert!(
            got.items.len() <= limit as usize,
            "a page of limit {limit} has {} items",
            got.items.len()
        );
        let next = got.next_cursor;
        out.push(got.items);
        match next {
            None => return out,
            Some(next) => {
                assert_ne!(
                    cursor.as_deref(),
                    Some(next.as_str()),
                    "the cursor must advance"
                );
                cursor = Some(next);
            }
        }
        assert!(out.len() <= 1000, "pagination never ends");
    }
}

/// Every event matching `filter`, walked `limit` at a time with the `after` cursor; checks
/// that ids strictly increase and that `next_cursor` is the last id served.
async fn events_paged(store: &dyn Store, filter: &EventFilter, limit: u32) -> Vec<Event> {
    let mut filter = filter.clone();
    filter.limit = limit;
    let mut out: Vec<Event> = Vec::new();
    loop {
        let page = store.list_events(&filter).await.expect("list events");
        assert!(page.items.len() <= limit as usize);
        for e in &page.items {
            if let Some(last) = out.last() {
                assert!(
                    e.id > last.id,
                    "event ids must increase: {} after {}",
                    e.id,
                    last.id
                );
            }
            if let Some(after) = filter.after {
                assert!(e.id > after, "event {} served after cursor {after}", e.id);
            }
        }
        out.extend(page.items);
        match page.next_cursor {
            None => return out,
            Some(cursor) => {
                let last = out.last().expect("a page with a cursor has items");
                assert_eq!(
                    cursor,
                    last.id.to_string(),
                    "the event cursor is the last id"
                );
                filter.after = Some(cursor.parse().expect("an event cursor is an id"));
            }
        }
        assert!(out.len() <= 100_000, "event pagination never ends");
    }
}

async fn events(store: &dyn Store, filter: EventFilter) -> Vec<Event> {
    events_paged(store, &filter, 1000).await
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn app_filter(ns: &str, app: &str) -> EventFilter {
    EventFilter {
        namespace: Some(ns.to_owned()),
        app: Some(app.to_owned()),
        ..EventFilter::default()
    }
}

async fn app_event_kinds(store: &dyn Store, ns: &str, app: &str) -> Vec<String> {
    events(store, app_filter(ns, app))
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn event_count(store: &dyn Store) -> usize {
    events(store, EventFilter::default()).await.len()
}

/// A namespace with one app in it.
async fn namespace_with_app(store: &dyn Store, ns: &str, app: &str, replicas: Option<u32>) -> App {
    store
        .ensure_namespace(&name(ns), event("NamespaceCreated").namespace(ns))
        .await
        .expect("ensure namespace");
    store
        .create_app(
            &name(ns),
            &app_create(app, replicas),
            app_event("AppCreated", ns, app),
        )
        .await
        .expect("create app")
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

async fn case_namespaces(store: &dyn Store) {
    store.ping().await.expect("ping");

    // ensure_namespace is idempotent and only records the first creation.
    let ensured = name("ns-c");
    assert!(store
        .ensure_namespace(&ensured, event("NamespaceCreated").namespace("ns-c"))
        .await
        .expect("ensure a new namespace"));
    assert!(!store
        .ensure_namespace(&ensured, event("NamespaceCreated").namespace("ns-c"))
        .await
        .expect("ensure an existing namespace"));
    let c = store.get_namespace(&ensured).await.expect("get ensured");
    assert_eq!(c.name, "ns-c");
    assert_eq!(c.generation, 1);
    assert!(c.labels.is_empty());

    // create / get, in an order that is not the sorted one.
    let team = labels(&[("team", "core"), ("tier", "gold")]);
    for n in ["ns-e", "ns-a", "ns-d", "ns-b"] {
        let created = store
            .create_namespace(&name(n), &team, event("NamespaceCreated").namespace(n))
            .await
            .expect("create namespace");
        assert_eq!(created.name, n);
        assert_eq!(created.labels, team);
        assert_eq!(created.generation, 1);
        let got = store.get_namespace(&name(n)).await.expect("get namespace");
        assert!(same(&got, &created), "get {got:?} != created {created:?}");
    }
    assert_err!(
        store.get_namespace(&name("missing")).await,
        StoreError::NotFound {
            kind: "namespace",
            ..
        }
    );

    // Duplicates are refused, by create and not by ensure.
    assert_err!(
        store
            .create_namespace(&name("ns-a"), &Labels::new(), event("NamespaceCreated"))
            .await,
        StoreError::AlreadyExists {
            kind: "namespace",
            ..
        }
    );
    assert_err!(
        store
            .create_namespace(&ensured, &Labels::new(), event("NamespaceCreated"))
            .await,
        StoreError::AlreadyExists {
            kind: "namespace",
            ..
        }
    );
    let created_events = events(
        store,
        EventFilter {
            kind: Some("NamespaceCreated".into()),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(
        created_events.len(),
        5,
        "one NamespaceCreated per namespace"
    );

    // Pagination: limit 2 over 5 names.
    let all = ["ns-a", "ns-b", "ns-c", "ns-d", "ns-e"];
    let walked = pages(2, |p| async move { store.list_namespaces(&p, None).await }).await;
    let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 1], "page sizes of 5 names by 2");
    let names: Vec<String> = walked.into_iter().flatten().map(|n| n.name).collect();
    assert_eq!(names, all, "every namespace once, in name order");
    // A limit that fits exactly leaves no next page.
    let exact = store
        .list_namespaces(&page(5, None), None)
        .await
        .expect("list namespaces");
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next_cursor, None, "no cursor when nothing follows");
    // A namespace-scoped caller only sees its namespaces, still paginated.
    let visible = vec!["ns-d".to_owned(), "ns-b".to_owned()];
    let walked = pages(1, |p| {
        let visible = visible.clone();
        async move { store.list_namespaces(&p, Some(visible.as_slice())).await }
    })
    .await;
    let names: Vec<String> = walked.into_iter().flatten().map(|n| n.name).collect();
    assert_eq!(names, ["ns-b", "ns-d"]);
    let none = store
        .list_namespaces(&page(10, None), Some(&[] as &[String]))
        .await
        .expect("list with no visible namespace");
    assert!(none.items.is_empty(), "no visible namespace sees nothing");

    // Updates are pinned by generation.
    let relabel = labels(&[("team", "edge")]);
    assert_err!(
        store
            .update_namespace(&name("ns-a"), Some(7), &relabel, event("NamespaceUpdated"))
            .await,
        StoreError::PreconditionFailed {
            expected: 7,
            current: 1
        }
    );
    let unchanged = store.get_namespace(&name("ns-a")).await.expect("get");
    assert_eq!(unchanged.generation, 1, "a failed update changes nothing");
    assert_eq!(unchanged.labels, team);
    let updated = store
        .update_namespace(
            &name("ns-a"),
            Some(1),
            &relabel,
            event("NamespaceUpdated").namespace("ns-a"),
        )
        .await
        .expect("update with the current generation");
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.labels, relabel);
    let updated = store
        .update_namespace(
            &name("ns-a"),
            None,
            &Labels::new(),
            event("NamespaceUpdated").namespace("ns-a"),
        )
        .await
        .expect("unpinned update");
    assert_eq!(updated.generation, 3);
    assert!(updated.labels.is_empty());
    let got = store.get_namespace(&name("ns-a")).await.expect("get");
    assert!(same(&got, &updated));
    assert_err!(
        store
            .update_namespace(&name("missing"), None, &relabel, event("NamespaceUpdated"))
            .await,
        StoreError::NotFound {
            kind: "namespace",
            ..
        }
    );

    // Delete refuses while an app exists, and works once it is gone.
    store
        .create_app(
            &name("ns-a"),
            &app_create("web", None),
            app_event("AppCreated", "ns-a", "web"),
        )
        .await
        .expect("create app");
    assert_err!(
        store
            .delete_namespace(&name("ns-a"), None, event("NamespaceDeleted"))
            .await,
        StoreError::Conflict {
            code: "namespace_not_empty",
            ..
        }
    );
    store
        .get_namespace(&name("ns-a"))
        .await
        .expect("a refused delete keeps the namespace");
    store
        .delete_app(
            &name("ns-a"),
            &name("web"),
            None,
            app_event("AppDeleted", "ns-a", "web"),
        )
        .await
        .expect("delete app");
    assert_err!(
        store
            .delete_namespace(&name("ns-a"), Some(1), event("NamespaceDeleted"))
            .await,
        StoreError::PreconditionFailed {
            expected: 1,
            current: 3
        }
    );
    store
        .delete_namespace(
            &name("ns-a"),
            Some(3),
            event("NamespaceDeleted").namespace("ns-a"),
        )
        .await
        .expect("delete an empty namespace");
    assert_err!(
        store.get_namespace(&name("ns-a")).await,
        StoreError::NotFound {
            kind: "namespace",
            ..
        }
    );
    assert_err!(
        store
            .delete_namespace(&name("ns-a"), None, event("NamespaceDeleted"))
            .await,
        StoreError::NotFound {
            kind: "namespace",
            ..
        }
    );
    let rest = store
        .list_namespaces(&page(10, None), None)
        .await
        .expect("list");
    let names: Vec<&str> = rest.items.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["ns-b", "ns-c", "ns-d", "ns-e"]);
    // A deleted name can be created again, from generation 1.
    let again = store
        .create_namespace(
            &name("ns-a"),
            &team,
            event("NamespaceCreated").namespace("ns-a"),
        )
        .await
        .expect("re-create a deleted namespace");
    assert_eq!(again.generation, 1);

    let ns_kinds: Vec<String> = events(
        store,
        EventFilter {
            namespace: Some("ns-a".into()),
            ..EventFilter::default()
        },
    )
    .await
    .into_iter()
    .map(|e| e.kind)
    .collect();
    assert_eq!(
        ns_kinds,
        [
            "NamespaceCreated",
            "NamespaceUpdated",
            "NamespaceUpdated",
            "AppCreated",
            "AppDeleted",
            "NamespaceDeleted",
            "NamespaceCreated"
        ],
        "every successful namespace mutation, and only those, is in the log"
    );
}

async fn case_apps(store: &dyn Store) {
    let shop = name("shop");
    assert_err!(
        store
            .create_app(
                &shop,
                &app_create("web", None),
                app_event("AppCreated", "shop", "web")
            )
            .await,
        StoreError::NotFound {
            kind: "namespace",
            ..
        }
    );
    assert_eq!(
        event_count(store).await,
        0,
        "a failed create records nothing"
    );

    store
        .ensure_namespace(&shop, event("NamespaceCreated").namespace("shop"))
        .await
        .expect("ensure namespace");
    let web = store
        .create_app(
            &shop,
            &app_create("web", None),
            app_event("AppCreated", "shop", "web"),
        )
        .await
        .expect("create app");
    assert_eq!(web.namespace, "shop");
    assert_eq!(web.name, "web");
    assert_eq!(web.description, "the web app");
    assert_eq!(web.labels, labels(&[("tier", "web")]));
    assert_eq!(web.replicas, 1, "replicas default to 1");
    assert_eq!(web.current_version, None);
    assert_eq!(web.generation, 1);
    assert_eq!(web.created_at, web.updated_at);
    let api = store
        .create_app(
            &shop,
            &app_create("api", Some(3)),
            app_event("AppCreated", "shop", "api"),
        )
        .await
        .expect("create app");
    assert_eq!(api.replicas, 3);

    let got = store.get_app(&shop, &name("web")).await.expect("get app");
    assert!(same(&got.app, &web), "get {:?} != created {web:?}", got.app);
    let got_api = store.get_app(&shop, &name("api")).await.expect("get app");
    assert_ne!(got.id, got_api.id, "apps have distinct ids");
    assert_err!(
        store.get_app(&shop, &name("nope")).await,
        StoreError::NotFound { kind: "app", .. }
    );

    assert_err!(
        store
            .create_app(
                &shop,
                &app_create("web", Some(9)),
                app_event("AppCreated", "shop", "web")
            )
            .await,
        StoreError::AlreadyExists { kind: "app", .. }
    );
    // Names are per namespace.
    store
        .ensure_namespace(&name("other"), event("NamespaceCreated").namespace("other"))
        .await
        .expect("ensure namespace");
    store
        .create_app(
            &name("other"),
            &app_create("web", Some(2)),
            app_event("AppCreated", "other", "web"),
        )
        .await
        .expect("the same app name in another namespace");
    let still = store.get_app(&shop, &name("web")).await.expect("get app");
    assert!(same(&still.app, &web), "a failed duplicate changes nothing");

    // Pagination over 5 apps.
    for n in ["edge", "cart", "db"] {
        store
            .create_app(
                &shop,
                &app_create(n, None),
                app_event("AppCreated", "shop", n),
            )
            .await
            .expect("create app");
    }
    let walked = pages(2, |p| {
        let shop = shop.clone();
        async move { store.list_apps(&shop, &p).await }
    })
    .await;
    let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    let names: Vec<String> = walked.into_iter().flatten().map(|a| a.name).collect();
    assert_eq!(names, ["api", "cart", "db", "edge", "web"]);
    let other = store
        .list_apps(&name("other"), &page(10, None))
        .await
        .expect("list apps");
    assert_eq!(other.items.len(), 1);
    assert_eq!(other.items[0].namespace, "other");
    assert_err!(
        store.list_apps(&name("missing"), &page(10, None)).await,
        StoreError::NotFound {
            kind: "namespace",
            ..
        }
    );

    // update_app bumps the generation by one and records the closure's event.
    let updated = store
        .update_app(&shop, &name("web"), Some(1), &|app: &mut App| {
            app.description = "changed".into();
            app.labels.insert("owner".into(), "ops".into());
            app.replicas = 4;
            Ok(app_event("AppUpdated", "shop", "web").details(json!({"why": "test"})))
        })
        .await
        .expect("update with the current generation");
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.description, "changed");
    assert_eq!(updated.replicas, 4);
    assert_eq!(updated.created_at, web.created_at);
    assert!(
        updated.updated_at > web.updated_at,
        "updated_at moves forward"
    );
    let got = store.get_app(&shop, &name("web")).await.expect("get app");
    assert!(
        same(&got.app, &updated),
        "get {:?} != updated {updated:?}",
        got.app
    );
    let recorded = events(
        store,
        EventFilter {
            kind: Some("AppUpdated".into()),
            ..app_filter("shop", "web")
        },
    )
    .await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].actor, ACTOR);
    assert_eq!(recorded[0].reason, "contract test: AppUpdated");
    assert_eq!(recorded[0].details, json!({"why": "test"}));

    // A stale generation fails and changes nothing.
    let before = event_count(store).await;
    assert_err!(
        store
            .update_app(&shop, &name("web"), Some(1), &|app: &mut App| {
                app.replicas = 99;
                Ok(app_event("AppUpdated", "shop", "web"))
            })
            .await,
        StoreError::PreconditionFailed {
            expected: 1,
            current: 2
        }
    );
    // A change the closure refuses changes nothing either.
    assert_err!(
        store
            .update_app(&shop, &name("web"), None, &|app: &mut App| {
                app.replicas = 99;
                Err(Invalid::new("replicas", "too many"))
            })
            .await,
        StoreError::Invalid(Invalid { ref field, .. }) if field == "replicas"
    );
    let got = store.get_app(&shop, &name("web")).await.expect("get app");
    assert!(
        same(&got.app, &updated),
        "failed updates left {:?}",
        got.app
    );
    assert_eq!(
        event_count(store).await,
        before,
        "failed updates record nothing"
    );
    assert_err!(
        store
            .update_app(&shop, &name("nope"), None, &|_app: &mut App| Ok(event(
                "AppUpdated"
            )))
            .await,
        StoreError::NotFound { kind: "app", .. }
    );

    // Delete cascades to versions, releases and the policy.
    let v1 = store
        .create_version(
            &shop,
            &name("web"),
            &version_create(1),
            VersionState::Ready,
            app_event("VersionCreated", "shop", "web"),
        )
        .await
        .expect("create version");
    store
        .create_version(
            &shop,
            &name("web"),
            &version_create(2),
            VersionState::Ready,
            app_event("VersionCreated", "shop", "web"),
        )
        .await
        .expect("create version");
    let release = store
        .create_release(
            &shop,
            &name("web"),
            v1.number,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "shop", "web"),
        )
        .await
        .expect("create release");
    store
        .put_policy(
            &shop,
            &name("web"),
            &policy(json!({"min": 1, "max": 5})),
            None,
            app_event("PolicyUpdated", "shop", "web"),
        )
        .await
        .expect("put policy");
    assert_err!(
        store
            .delete_app(
                &shop,
                &name("web"),
                Some(1),
                app_event("AppDeleted", "shop", "web")
            )
            .await,
        StoreError::PreconditionFailed {
            expected: 1,
            current: 2
        }
    );
    store
        .get_app(&shop, &name("web"))
        .await
        .expect("a refused delete keeps the app");
    store
        .delete_app(
            &shop,
            &name("web"),
            Some(2),
            app_event("AppDeleted", "shop", "web"),
        )
        .await
        .expect("delete app");
    assert_err!(
        store.get_app(&shop, &name("web")).await,
        StoreError::NotFound { kind: "app", .. }
    );
    assert_err!(
        store
            .delete_app(
                &shop,
                &name("web"),
                None,
                app_event("AppDeleted", "shop", "web")
            )
            .await,
        StoreError::NotFound { kind: "app", .. }
    );
    assert!(
        store
            .active_releases()
            .await
            .expect("active releases")
            .is_empty(),
        "a deleted app's release is not active any more"
    );

    let recreated = store
        .create_app(
            &shop,
            &app_create("web", None),
            app_event("AppCreated", "shop", "web"),
        )
        .await
        .expect("re-create a deleted app");
    assert_eq!(recreated.generation, 1);
    assert_eq!(recreated.current_version, None);
    let versions = store
        .list_versions(&shop, &name("web"), &page(10, None))
        .await
        .expect("list versions");
    assert!(
        versions.items.is_empty(),
        "versions survived: {:?}",
        versions.items
    );
    assert_err!(
        store.get_version(&shop, &name("web"), 1).await,
        StoreError::NotFound {
            kind: "version",
            ..
        }
    );
    let releases = store
        .list_releases(&shop, &name("web"), &page(10, None))
        .await
        .expect("list releases");
    assert!(
        releases.items.is_empty(),
        "releases survived: {:?}",
        releases.items
    );
    assert_err!(
        store.get_release(&shop, &name("web"), release.id).await,
        StoreError::NotFound {
            kind: "release",
            ..
        }
    );
    assert!(
        store
            .get_policy(&shop, &name("web"))
            .await
            .expect("get policy")
            .is_none(),
        "the policy survived"
    );
    let v = store
        .create_version(
            &shop,
            &name("web"),
            &version_create(3),
            VersionState::Ready,
            app_event("VersionCreated", "shop", "web"),
        )
        .await
        .expect("create version");
    assert_eq!(v.number, 1, "a re-created app numbers its versions from 1");

    assert_eq!(
        app_event_kinds(store, "shop", "web").await,
        [
            "AppCreated",
            "AppUpdated",
            "VersionCreated",
            "VersionCreated",
            "ReleaseCreated",
            "PolicyUpdated",
            "AppDeleted",
            "AppCreated",
            "VersionCreated"
        ],
        "the log keeps the deleted app's history"
    );
}

async fn case_versions(store: &dyn Store) {
    namespace_with_app(store, "vs", "web", None).await;
    let (ns, app) = (name("vs"), name("web"));
    assert_err!(
        store
            .create_version(
                &ns,
                &name("nope"),
                &version_create(1),
                VersionState::Ready,
                app_event("VersionCreated", "vs", "nope"),
            )
            .await,
        StoreError::NotFound { kind: "app", .. }
    );
    let mut created = Vec::new();
    for (n, state) in [
        (1, VersionState::Building),
        (2, VersionState::Ready),
        (3, VersionState::BuildFailed),
        (4, VersionState::Ready),
        (5, VersionState::Ready),
    ] {
        let v = store
            .create_version(
                &ns,
                &app,
                &version_create(n),
                state,
                app_event("VersionCreated", "vs", "web").details(json!({})),
            )
            .await
            .expect("create version");
        assert_eq!(u64::from(v.number), n, "versions are numbered 1, 2, 3…");
        assert_eq!(v.state, state);
        created.push(v);
    }
    let spec = version_create(2);
    let got = store.get_version(&ns, &app, 2).await.expect("get version");
    assert!(
        same(&got, &created[1]),
        "get {got:?} != created {:?}",
        created[1]
    );
    assert_eq!(got.namespace, "vs");
    assert_eq!(got.app, "web");
    assert_eq!(got.artifact_digest, spec.artifact_digest);
    assert_eq!(got.run, spec.run);
    assert_eq!(got.env, spec.env);
    assert_eq!(got.port, spec.port);
    assert_eq!(got.health, spec.health);
    assert_eq!(got.resources, spec.resources);
    assert_err!(
        store.get_version(&ns, &app, 6).await,
        StoreError::NotFound {
            kind: "version",
            ..
        }
    );

    let walked = pages(2, |p| {
        let (ns, app) = (ns.clone(), app.clone());
        async move { store.list_versions(&ns, &app, &p).await }
    })
    .await;
    let numbers: Vec<u32> = walked.into_iter().flatten().map(|v| v.number).collect();
    assert_eq!(numbers, [5, 4, 3, 2, 1], "versions are listed newest first");

    let recorded: Vec<serde_json::Value> = events(
        store,
        EventFilter {
            kind: Some("VersionCreated".into()),
            ..app_filter("vs", "web")
        },
    )
    .await
    .into_iter()
    .map(|e| e.details["version"].clone())
    .collect();
    assert_eq!(recorded, [json!(1), json!(2), json!(3), json!(4), json!(5)]);
}

async fn case_lost_updates(store: Arc<dyn Store>) {
    const WRITERS: u32 = 32;
    const UPLOADS: u32 = 16;
    let start = namespace_with_app(&*store, "load", "counter", Some(2)).await;
    let (ns, app) = (name("load"), name("counter"));

    let mut tasks = JoinSet::new();
    for i in 0..WRITERS {
        let (store, ns, app) = (store.clone(), ns.clone(), app.clone());
        tasks.spawn(async move {
            store
                .update_app(&ns, &app, None, &|a: &mut App| {
                    a.replicas += 1;
                    Ok(app_event("AppScaled", "load", "counter").details(json!({ "writer": i })))
                })
                .await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("writer task") {
            Ok(app) => results.push(app),
            Err(e) => {
                panic!("an unpinned update_app must apply on top of concurrent writes, got {e:?}")
            }
        }
    }
    let mut generations: Vec<i64> = results.iter().map(|a| a.generation).collect();
    generations.sort_unstable();
    let expected: Vec<i64> = (1..=i64::from(WRITERS))
        .map(|i| start.generation + i)
        .collect();
    assert_eq!(
        generations, expected,
        "each update saw a distinct generation"
    );
    let mut replicas: Vec<u32> = results.iter().map(|a| a.replicas).collect();
    replicas.sort_unstable();
    let expected: Vec<u32> = (1..=WRITERS).map(|i| start.replicas + i).collect();
    assert_eq!(
        replicas, expected,
        "each update applied on top of the previous one"
    );

    let end = store.get_app(&ns, &app).await.expect("get app").app;
    assert_eq!(
        end.replicas,
        start.replicas + WRITERS,
        "no increment was lost"
    );
    assert_eq!(end.generation, start.generation + i64::from(WRITERS));

    let scaled = events(
        &*store,
        EventFilter {
            kind: Some("AppScaled".into()),
            ..app_filter("load", "counter")
        },
    )
    .await;
    assert_eq!(
        scaled.len(),
        WRITERS as usize,
        "exactly one event per update"
    );
    let writers: BTreeSet<u64> = scaled
        .iter()
        .map(|e| e.details["writer"].as_u64().expect("writer in details"))
        .collect();
    assert_eq!(writers, (0..u64::from(WRITERS)).collect());

    // Concurrent uploads get consecutive version numbers.
    let mut tasks = JoinSet::new();
    for i in 0..UPLOADS {
        let (store, ns, app) = (store.clone(), ns.clone(), app.clone());
        tasks.spawn(async move {
            store
                .create_version(
                    &ns,
                    &app,
                    &version_create(u64::from(i)),
                    VersionState::Ready,
                    app_event("VersionCreated", "load", "counter").details(json!({})),
                )
                .await
        });
    }
    let mut numbers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("upload task") {
            Ok(v) => numbers.push(v.number),
            Err(e) => panic!("a concurrent create_version must get the next number, got {e:?}"),
        }
    }
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=UPLOADS).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    let listed = store
        .list_versions(&ns, &app, &page(100, None))
        .await
        .expect("list versions");
    assert_eq!(listed.items.len(), UPLOADS as usize);
    let mut recorded: Vec<u64> = events(
        &*store,
        EventFilter {
            kind: Some("VersionCreated".into()),
            ..app_filter("load", "counter")
        },
    )
    .await
    .iter()
    .map(|e| e.details["version"].as_u64().expect("version in details"))
    .collect();
    recorded.sort_unstable();
    assert_eq!(
        recorded,
        (1..=u64::from(UPLOADS)).collect::<Vec<_>>(),
        "one event per version, none from a retried attempt"
    );
}

/// How many concurrent callers race with the same pinned generation.
const RACERS: usize = 8;

/// Exactly one of the racers may win; the others must see a precondition failure.
fn exactly_one_winner<T: std::fmt::Debug>(what: &str, results: &[StoreResult<T>], current: i64) {
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        winners, 1,
        "{what}: {RACERS} writers pinned to the same generation, {winners} succeeded: {results:?}"
    );
    for r in results {
        match r {
            Ok(_) => {}
            Err(StoreError::PreconditionFailed {
                expected,
                current: c,
            }) => {
                assert_eq!(
                    *expected,
                    current - 1,
                    "{what}: the precondition names the pin"
                );
                assert_eq!(
                    *c, current,
                    "{what}: the precondition names the winner's generation"
                );
            }
            Err(e) => {
                panic!("{what}: a losing pinned write must fail with PreconditionFailed, got {e:?}")
            }
        }
    }
}

async fn join_all<T: Send + 'static>(mut tasks: JoinSet<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.expect("racer task"));
    }
    out
}

/// Rounds of racing; after the first one the pool holds several open connections, so the
/// racers really overlap in the database.
const ROUNDS: i64 = 6;

async fn case_pinned_namespace_update(store: Arc<dyn Store>) {
    let pin = name("pin");
    store
        .create_namespace(
            &pin,
            &Labels::new(),
            event("NamespaceCreated").namespace("pin"),
        )
        .await
        .expect("create namespace");
    for round in 0..ROUNDS {
        let pinned = store.get_namespace(&pin).await.expect("get").generation;
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for i in 0..RACERS {
            let (store, barrier, pin) = (store.clone(), barrier.clone(), pin.clone());
            tasks.spawn(async move {
                let writer = format!("{round}-{i}");
                let labels = labels(&[("writer", writer.as_str())]);
                barrier.wait().await;
                store
                    .update_namespace(
                        &pin,
                        Some(pinned),
                        &labels,
                        event("NamespaceUpdated").namespace("pin"),
                    )
                    .await
            });
        }
        let results = join_all(tasks).await;
        exactly_one_winner(
            &format!("update_namespace round {round}"),
            &results,
            pinned + 1,
        );
        let ns = store.get_namespace(&pin).await.expect("get namespace");
        assert_eq!(
            ns.generation,
            pinned + 1,
            "round {round}: one pinned update applies"
        );
        let winner = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .expect("a winner");
        assert_eq!(
            ns.labels, winner.labels,
            "round {round}: the winner's labels are stored"
        );
    }
    let updates = events(
        &*store,
        EventFilter {
            namespace: Some("pin".into()),
            kind: Some("NamespaceUpdated".into()),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(
        updates.len(),
        ROUNDS as usize,
        "one recorded update per round"
    );
}

async fn case_pinned_app_update(store: Arc<dyn Store>) {
    let start = namespace_with_app(&*store, "pin", "web", Some(1)).await;
    for round in 0..ROUNDS {
        let before = store
            .get_app(&name("pin"), &name("web"))
            .await
            .expect("get app")
            .app;
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for _ in 0..RACERS {
            let (store, barrier) = (store.clone(), barrier.clone());
            let pinned = before.generation;
            tasks.spawn(async move {
                barrier.wait().await;
                store
                    .update_app(&name("pin"), &name("web"), Some(pinned), &|a: &mut App| {
                        a.replicas += 1;
                        Ok(app_event("AppScaled", "pin", "web"))
                    })
                    .await
            });
        }
        let results = join_all(tasks).await;
        exactly_one_winner(
            &format!("update_app round {round}"),
            &results,
            before.generation + 1,
        );
        let app = store
            .get_app(&name("pin"), &name("web"))
            .await
            .expect("get app")
            .app;
        assert_eq!(app.generation, before.generation + 1, "round {round}");
        assert_eq!(app.replicas, before.replicas + 1, "round {round}");
    }
    let scaled = events(
        &*store,
        EventFilter {
            kind: Some("AppScaled".into()),
            ..app_filter("pin", "web")
        },
    )
    .await;
    assert_eq!(
        scaled.len(),
        ROUNDS as usize,
        "one recorded update per round"
    );
    let end = store
        .get_app(&name("pin"), &name("web"))
        .await
        .expect("get app")
        .app;
    assert_eq!(
        end.replicas,
        start.replicas + u32::try_from(ROUNDS).expect("small")
    );
}

async fn case_pinned_release_transition(store: Arc<dyn Store>) {
    namespace_with_app(&*store, "pin", "web", Some(1)).await;
    let (ns, app) = (name("pin"), name("web"));
    store
        .create_version(
            &ns,
            &app,
            &version_create(1),
            VersionState::Ready,
            app_event("VersionCreated", "pin", "web"),
        )
        .await
        .expect("create version");
    let release = store
        .create_release(
            &ns,
            &app,
            1,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "pin", "web"),
        )
        .await
        .expect("create release");
    for round in 0..ROUNDS {
        let before = store.get_release(&ns, &app, release.id).await.expect("get");
        let app_before = store.get_app(&ns, &app).await.expect("get app").app;
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for _ in 0..RACERS {
            let (store, barrier) = (store.clone(), barrier.clone());
            let (id, pinned) = (before.id, before.generation);
            tasks.spawn(async move {
                barrier.wait().await;
                store
                    .transition_release(
                        id,
                        pinned,
                        &transition(ReleaseState::Progressing, Some(1)),
                        app_event("ReleaseProgressing", "pin", "web"),
                    )
                    .await
            });
        }
        let results = join_all(tasks).await;
        exactly_one_winner(
            &format!("transition_release round {round}"),
            &results,
            before.generation + 1,
        );
        let after = store.get_release(&ns, &app, release.id).await.expect("get");
        let app_after = store.get_app(&ns, &app).await.expect("get app").app;
        assert_eq!(after.generation, before.generation + 1, "round {round}");
        assert_eq!(
            app_after.generation,
            app_before.generation + 1,
            "round {round}"
        );
    }
    let progressing = events(
        &*store,
        EventFilter {
            kind: Some("ReleaseProgressing".into()),
            ..app_filter("pin", "web")
        },
    )
    .await;
    assert_eq!(
        progressing.len(),
        ROUNDS as usize,
        "one recorded transition per round"
    );
}

async fn case_pinned_policy_put(store: Arc<dyn Store>) {
    namespace_with_app(&*store, "pin", "web", Some(1)).await;
    for round in 0..ROUNDS {
        let pinned = store
            .get_policy(&name("pin"), &name("web"))
            .await
            .expect("get policy")
            .map_or(0, |p| p.generation);
        assert_eq!(
            pinned, round,
            "round {round} starts from the previous round's policy"
        );
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for i in 0..RACERS {
            let (store, barrier) = (store.clone(), barrier.clone());
            let max = 5 + u32::try_from(i).expect("small");
            tasks.spawn(async move {
                barrier.wait().await;
                store
                    .put_policy(
                        &name("pin"),
                        &name("web"),
                        &policy(json!({"min": 1, "max": max})),
                        Some(pinned),
                        app_event("PolicyUpdated", "pin", "web"),
                    )
                    .await
            });
        }
        let results = join_all(tasks).await;
        exactly_one_winner(&format!("put_policy round {round}"), &results, pinned + 1);
        let stored = store
            .get_policy(&name("pin"), &name("web"))
            .await
            .expect("get policy")
            .expect("a policy was stored");
        assert_eq!(stored.generation, pinned + 1, "round {round}");
        let winner = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .expect("a winner");
        assert_eq!(
            stored.policy, winner.policy,
            "round {round}: the winner's policy is stored"
        );
    }
    let puts = events(
        &*store,
        EventFilter {
            kind: Some("PolicyUpdated".into()),
            ..app_filter("pin", "web")
        },
    )
    .await;
    assert_eq!(puts.len(), ROUNDS as usize, "one recorded put per round");
}

async fn case_pinned_delete(store: Arc<dyn Store>) {
    let ns = name("pin");
    store
        .ensure_namespace(&ns, event("NamespaceCreated").namespace("pin"))
        .await
        .expect("ensure namespace");
    for round in 0..ROUNDS {
        let app_name = format!("app-{round}");
        let app = store
            .create_app(
                &ns,
                &app_create(&app_name, Some(1)),
                app_event("AppCreated", "pin", &app_name),
            )
            .await
            .expect("create app");
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for i in 0..RACERS {
            let (store, barrier, ns) = (store.clone(), barrier.clone(), ns.clone());
            let (app_name, pinned) = (app_name.clone(), app.generation);
            tasks.spawn(async move {
                let target = name(&app_name);
                barrier.wait().await;
                if i % 2 == 0 {
                    let event = app_event("AppDeleted", "pin", &app_name);
                    store
                        .delete_app(&ns, &target, Some(pinned), event)
                        .await
                        .map(|()| "deleted".to_owned())
                } else {
                    store
                        .update_app(&ns, &target, Some(pinned), &|a: &mut App| {
                            a.replicas += 1;
                            Ok(app_event("AppScaled", "pin", "updated"))
                        })
                        .await
                        .map(|a| format!("updated to generation {}", a.generation))
                }
            });
        }
        let results = join_all(tasks).await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            winners, 1,
            "round {round}: deletes and updates pinned to generation {}, {winners} succeeded: {results:?}",
            app.generation
        );
        for r in &results {
            assert!(
                matches!(
                    r,
                    Ok(_)
                        | Err(StoreError::PreconditionFailed { .. })
                        | Err(StoreError::NotFound { kind: "app", .. })
                ),
                "round {round}: a losing pinned write must fail cleanly, got {r:?}"
            );
        }
    }
}

async fn case_concurrent_revoke(store: Arc<dyn Store>) {
    for round in 0..ROUNDS {
        let token = format!("t-{round}");
        let created = store
            .create_token(
                &name(&token),
                Role::Viewer,
                None,
                &format!("h-{round}"),
                event("TokenCreated"),
            )
            .await
            .expect("create token");
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for _ in 0..RACERS {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                store.revoke_token(created.id, event("TokenRevoked")).await
            });
        }
        let results = join_all(tasks).await;
        let revocations = events(
            &*store,
            EventFilter {
                kind: Some("TokenRevoked".into()),
                ..EventFilter::default()
            },
        )
        .await;
        assert_eq!(
            revocations.len(),
            usize::try_from(round + 1).expect("small"),
            "round {round}: {RACERS} concurrent revokes of one token must record one revocation"
        );
        let stored = store
            .list_tokens(&page(1, None))
            .await
            .expect("list tokens")
            .items
            .into_iter()
            .next()
            .expect("the newest token");
        assert_eq!(stored.id, created.id);
        let revoked_at = stored.revoked_at.expect("the token is revoked");
        for r in &results {
            match r {
                Ok(info) => assert_eq!(
                    info.revoked_at,
                    Some(revoked_at),
                    "round {round}: every revoke reports the one stored revocation: {results:?}"
                ),
                Err(e) => panic!("round {round}: revoking a live token failed: {e:?}"),
            }
        }
    }
}

async fn case_concurrent_releases(store: Arc<dyn Store>) {
    namespace_with_app(&*store, "race", "web", Some(1)).await;
    let (ns, app) = (name("race"), name("web"));
    store
        .create_version(
            &ns,
            &app,
            &version_create(1),
            VersionState::Ready,
            app_event("VersionCreated", "race", "web"),
        )
        .await
        .expect("create version");
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for _ in 0..RACERS {
        let (store, barrier, ns, app) = (store.clone(), barrier.clone(), ns.clone(), app.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store
                .create_release(
                    &ns,
                    &app,
                    1,
                    &Strategy::Immediate,
                    app_event("ReleaseCreated", "race", "web"),
                )
                .await
        });
    }
    let results = join_all(tasks).await;
    let mut created = 0;
    for r in &results {
        match r {
            Ok(_) => created += 1,
            Err(StoreError::Conflict {
                code: "release_in_progress",
                ..
            }) => {}
            Err(e) => panic!("a racing release must be refused as release_in_progress, got {e:?}"),
        }
    }
    assert_eq!(created, 1, "one active release per app: {results:?}");
    let active = store.active_releases().await.expect("active releases");
    assert_eq!(active.len(), 1);
    let recorded = events(
        &*store,
        EventFilter {
            kind: Some("ReleaseCreated".into()),
            ..app_filter("race", "web")
        },
    )
    .await;
    assert_eq!(recorded.len(), 1, "refused releases record nothing");
}

async fn case_releases(store: &dyn Store) {
    let web = namespace_with_app(store, "rel", "svc", Some(2)).await;
    namespace_with_app(store, "rel", "other", None).await;
    let (ns, app) = (name("rel"), name("svc"));
    let app_id = store.get_app(&ns, &app).await.expect("get app").id;

    assert_err!(
        store
            .create_release(
                &ns,
                &app,
                1,
                &Strategy::Immediate,
                app_event("ReleaseCreated", "rel", "svc")
            )
            .await,
        StoreError::NotFound {
            kind: "version",
            ..
        }
    );
    assert_err!(
        store
            .create_release(
                &ns,
                &name("nope"),
                1,
                &Strategy::Immediate,
                event("ReleaseCreated")
            )
            .await,
        StoreError::NotFound { kind: "app", .. }
    );
    for n in 1..=3 {
        store
            .create_version(
                &ns,
                &app,
                &version_create(n),
                VersionState::Ready,
                app_event("VersionCreated", "rel", "svc"),
            )
            .await
            .expect("create version");
    }

    let first = store
        .create_release(
            &ns,
            &app,
            1,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "rel", "svc").details(json!({})),
        )
        .await
        .expect("create release");
    assert_eq!(first.namespace, "rel");
    assert_eq!(first.app, "svc");
    assert_eq!(first.target_version, 1);
    assert_eq!(first.strategy, Strategy::Immediate);
    assert_eq!(first.state, ReleaseState::Pending);
    assert_eq!(first.generation, 1);
    assert!(
        first.from_versions.is_empty(),
        "nothing served before: {first:?}"
    );
    assert_eq!(first.created_at, first.updated_at);
    let got = store
        .get_release(&ns, &app, first.id)
        .await
        .expect("get release");
    assert!(same(&got, &first), "get {got:?} != created {first:?}");
    assert_err!(
        store.get_release(&ns, &name("other"), first.id).await,
        StoreError::NotFound {
            kind: "release",
            ..
        }
    );

    let before = event_count(store).await;
    assert_err!(
        store
            .create_release(
                &ns,
                &app,
                2,
                &Strategy::Immediate,
                app_event("ReleaseCreated", "rel", "svc")
            )
            .await,
        StoreError::Conflict {
            code: "release_in_progress",
            ..
        }
    );
    assert_eq!(
        event_count(store).await,
        before,
        "a refused release records nothing"
    );

    let active = store.active_releases().await.expect("active releases");
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].app_id, app_id);
    assert!(same(&active[0].release, &first));

    // Pending → Progressing makes v1 the serving version.
    let progressing = store
        .transition_release(
            first.id,
            1,
            &transition(ReleaseState::Progressing, Some(1)),
            app_event("ReleaseProgressing", "rel", "svc"),
        )
        .await
        .expect("transition with the current generation");
    assert_eq!(progressing.state, ReleaseState::Progressing);
    assert_eq!(progressing.generation, 2);
    assert_eq!(
        progressing.reason,
        "contract test moves the release to Progressing"
    );
    assert!(progressing.updated_at > first.updated_at);
    assert_eq!(progressing.created_at, first.created_at);
    let served = store.get_app(&ns, &app).await.expect("get app").app;
    assert_eq!(served.current_version, Some(1));
    assert_eq!(
        served.generation,
        web.generation + 1,
        "the app changed, so its generation moved"
    );
    assert_eq!(served.replicas, web.replicas);

    // A stale reconciler is refused and changes nothing.
    assert_err!(
        store
            .transition_release(
                first.id,
                1,
                &transition(ReleaseState::Failed, None),
                app_event("ReleaseFailed", "rel", "svc"),
            )
            .await,
        StoreError::PreconditionFailed {
            expected: 1,
            current: 2
        }
    );
    let got = store.get_release(&ns, &app, first.id).await.expect("get");
    assert!(same(&got, &progressing), "a stale transition left {got:?}");
    assert_err!(
        store
            .transition_release(
                first.id + 1000,
                1,
                &transition(ReleaseState::Failed, None),
                event("ReleaseFailed"),
            )
            .await,
        StoreError::NotFound {
            kind: "release",
            ..
        }
    );

    // Progressing → Succeeded leaves the app alone.
    let succeeded = store
        .transition_release(
            first.id,
            2,
            &transition(ReleaseState::Succeeded, None),
            app_event("ReleaseSucceeded", "rel", "svc"),
        )
        .await
        .expect("succeed");
    assert_eq!(succeeded.state, ReleaseState::Succeeded);
    assert_eq!(succeeded.generation, 3);
    let unchanged = store.get_app(&ns, &app).await.expect("get app").app;
    assert!(
        same(&unchanged, &served),
        "a transition without a version left the app alone"
    );
    assert!(
        store.active_releases().await.expect("active").is_empty(),
        "a succeeded release is not active"
    );

    // Now a new release can start, from the serving version.
    let second = store
        .create_release(
            &ns,
            &app,
            2,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "rel", "svc").details(json!({})),
        )
        .await
        .expect("a release after the previous one finished");
    assert_eq!(second.from_versions, [1]);
    assert!(second.id > first.id);
    store
        .transition_release(
            second.id,
            1,
            &transition(ReleaseState::Aborted, None),
            app_event("ReleaseAborted", "rel", "svc"),
        )
        .await
        .expect("abort");
    let third = store
        .create_release(
            &ns,
            &app,
            3,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "rel", "svc").details(json!({})),
        )
        .await
        .expect("a release after an aborted one");
    assert_eq!(
        third.from_versions,
        [1],
        "an aborted release served nothing"
    );
    let other_app = store
        .list_releases(&ns, &name("other"), &page(10, None))
        .await
        .expect("list releases");
    assert!(other_app.items.is_empty());

    // Newest first, paginated.
    let walked = pages(2, |p| {
        let (ns, app) = (ns.clone(), app.clone());
        async move { store.list_releases(&ns, &app, &p).await }
    })
    .await;
    let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 1]);
    let ids: Vec<i64> = walked.iter().flatten().map(|r| r.id).collect();
    assert_eq!(ids, [third.id, second.id, first.id]);
    let states: Vec<ReleaseState> = walked.iter().flatten().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            ReleaseState::Pending,
            ReleaseState::Aborted,
            ReleaseState::Succeeded
        ]
    );

    let created: Vec<serde_json::Value> = events(
        store,
        EventFilter {
            kind: Some("ReleaseCreated".into()),
            ..app_filter("rel", "svc")
        },
    )
    .await
    .into_iter()
    .map(|e| e.details)
    .collect();
    assert_eq!(
        created,
        [
            json!({"release": first.id, "from_versions": []}),
            json!({"release": second.id, "from_versions": [1]}),
            json!({"release": third.id, "from_versions": [1]}),
        ]
    );
    assert_eq!(
        app_event_kinds(store, "rel", "svc").await,
        [
            "AppCreated",
            "VersionCreated",
            "VersionCreated",
            "VersionCreated",
            "ReleaseCreated",
            "ReleaseProgressing",
            "ReleaseSucceeded",
            "ReleaseCreated",
            "ReleaseAborted",
            "ReleaseCreated"
        ]
    );
}

async fn case_policy(store: &dyn Store) {
    namespace_with_app(store, "pol", "web", None).await;
    namespace_with_app(store, "pol", "api", None).await;
    let (ns, web) = (name("pol"), name("web"));
    assert!(store
        .get_policy(&ns, &web)
        .await
        .expect("get policy")
        .is_none());
    assert_err!(
        store.get_policy(&ns, &name("nope")).await,
        StoreError::NotFound { kind: "app", .. }
    );
    assert_err!(
        store
            .put_policy(
                &ns,
                &name("nope"),
                &policy(json!({"min": 1, "max": 2})),
                None,
                event("PolicyUpdated")
            )
            .await,
        StoreError::NotFound { kind: "app", .. }
    );

    let first = policy(json!({"min": 1, "max": 5, "metrics": [{"type": "rps", "target": 50}]}));
    let created = store
        .put_policy(
            &ns,
            &web,
            &first,
            Some(0),
            app_event("PolicyUpdated", "pol", "web"),
        )
        .await
        .expect("create with If-Match 0");
    assert_eq!(created.generation, 1);
    assert_eq!(created.policy, first);
    let got = store
        .get_policy(&ns, &web)
        .await
        .expect("get policy")
        .expect("a stored policy");
    assert_eq!(got.policy, first, "the policy round-trips exactly");
    assert_eq!(got.generation, 1);
    assert_eq!(got.updated_at, created.updated_at);

    let second = policy(json!({
        "min": 0,
        "max": 40,
        "metrics": [
            {"type": "concurrency", "target": 10},
            {"type": "cpu", "target": 75.5},
            {"type": "custom", "target": 3, "name": "queue_depth"}
        ],
        "stable_window_secs": 30,
        "panic_window_percent": 12.5,
        "panic_threshold_percent": 150,
        "max_scale_up_rate": 4,
        "max_scale_down_rate": 1.5,
        "scale_down_delay_secs": 90,
        "scale_to_zero": true,
        "schedules": [{
            "cron": "0 9 * * 1-5",
            "timezone": "Asia/Shanghai",
            "duration_secs": 36000,
            "min": 4,
            "max": 40,
            "priority": 2
        }]
    }));
    let before = event_count(store).await;
    for stale in [0, 2, 7] {
        match store
            .put_policy(
                &ns,
                &web,
                &second,
                Some(stale),
                app_event("PolicyUpdated", "pol", "web"),
            )
            .await
        {
            Err(StoreError::PreconditionFailed { expected, current }) => {
                assert_eq!((expected, current), (stale, 1));
            }
            other => panic!(
                "put with stale generation {stale}: expected PreconditionFailed, got {other:?}"
            ),
        }
    }
    assert_eq!(
        event_count(store).await,
        before,
        "refused puts record nothing"
    );
    let got = store
        .get_policy(&ns, &web)
        .await
        .expect("get")
        .expect("policy");
    assert_eq!(got.policy, first, "refused puts change nothing");
    assert_eq!(got.generation, 1);

    let overwritten = store
        .put_policy(
            &ns,
            &web,
            &second,
            None,
            app_event("PolicyUpdated", "pol", "web"),
        )
        .await
        .expect("unpinned put");
    assert_eq!(overwritten.generation, 2);
    let got = store
        .get_policy(&ns, &web)
        .await
        .expect("get")
        .expect("policy");
    assert_eq!(got.policy, second, "a full policy round-trips exactly");
    assert_eq!(got.generation, 2);
    assert!(got.updated_at > created.updated_at);

    let pinned = store
        .put_policy(
            &ns,
            &web,
            &first,
            Some(2),
            app_event("PolicyUpdated", "pol", "web"),
        )
        .await
        .expect("put with the current generation");
    assert_eq!(pinned.generation, 3);
    assert_eq!(
        store
            .get_policy(&ns, &web)
            .await
            .expect("get")
            .expect("policy")
            .policy,
        first
    );

    // Policies are per app; an unpinned put creates.
    assert!(store
        .get_policy(&ns, &name("api"))
        .await
        .expect("get")
        .is_none());
    let api = store
        .put_policy(
            &ns,
            &name("api"),
            &second,
            None,
            app_event("PolicyUpdated", "pol", "api"),
        )
        .await
        .expect("unpinned create");
    assert_eq!(api.generation, 1);

    assert_eq!(
        app_event_kinds(store, "pol", "web").await,
        [
            "AppCreated",
            "PolicyUpdated",
            "PolicyUpdated",
            "PolicyUpdated"
        ]
    );
}

async fn case_tokens(store: &dyn Store) {
    assert_eq!(store.count_tokens().await.expect("count"), 0);
    assert_eq!(store.principal_by_hash("h-ci").await.expect("lookup"), None);

    let scoped = vec!["dev".to_owned(), "staging".to_owned()];
    let ci = store
        .create_token(
            &name("ci"),
            Role::Deployer,
            Some(&scoped),
            "h-ci",
            event("TokenCreated"),
        )
        .await
        .expect("create token");
    assert_eq!(ci.name, "ci");
    assert_eq!(ci.role, Role::Deployer);
    assert_eq!(ci.namespaces.as_ref(), Some(&scoped));
    assert_eq!(ci.revoked_at, None);
    let principal = store
        .principal_by_hash("h-ci")
        .await
        .expect("lookup")
        .expect("a live token is found by its hash");
    assert_eq!(principal.token_id, ci.id);
    assert_eq!(principal.name, "ci");
    assert_eq!(principal.role, Role::Deployer);
    assert_eq!(principal.namespaces, Some(scoped.clone()));

    let admin = store
        .create_token(
            &name("root"),
            Role::Admin,
            None,
            "h-root",
            event("TokenCreated"),
        )
        .await
        .expect("create token");
    let principal = store
        .principal_by_hash("h-root")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(principal.role, Role::Admin);
    assert_eq!(
        principal.namespaces, None,
        "an unscoped token sees every namespace"
    );
    assert_eq!(
        store.principal_by_hash("h-unknown").await.expect("lookup"),
        None
    );

    let before = event_count(store).await;
    assert_err!(
        store
            .create_token(
                &name("ci"),
                Role::Viewer,
                None,
                "h-ci-2",
                event("TokenCreated")
            )
            .await,
        StoreError::AlreadyExists { kind: "token", .. }
    );
    assert_eq!(store.count_tokens().await.expect("count"), 2);
    assert_eq!(
        event_count(store).await,
        before,
        "a refused token records nothing"
    );
    assert_eq!(
        store.principal_by_hash("h-ci-2").await.expect("lookup"),
        None
    );

    // Revoking disables the secret; twice is harmless.
    let revoked = store
        .revoke_token(ci.id, event("TokenRevoked"))
        .await
        .expect("revoke");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.id, ci.id);
    assert_eq!(store.principal_by_hash("h-ci").await.expect("lookup"), None);
    let again = store
        .revoke_token(ci.id, event("TokenRevoked"))
        .await
        .expect("revoke twice");
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "the first revocation time stays"
    );
    assert_err!(
        store
            .revoke_token(ci.id + 1000, event("TokenRevoked"))
            .await,
        StoreError::NotFound { kind: "token", .. }
    );

    // The name of a revoked token can be reused.
    let ci2 = store
        .create_token(
            &name("ci"),
            Role::Viewer,
            None,
            "h-ci-2",
            event("TokenCreated"),
        )
        .await
        .expect("reuse a revoked token's name");
    assert!(ci2.id > admin.id);
    let principal = store
        .principal_by_hash("h-ci-2")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(principal.token_id, ci2.id);
    assert_eq!(principal.role, Role::Viewer);
    assert_eq!(store.principal_by_hash("h-ci").await.expect("lookup"), None);
    assert_eq!(
        store.count_tokens().await.expect("count"),
        3,
        "revoked tokens count"
    );

    let walked = pages(2, |p| async move { store.list_tokens(&p).await }).await;
    let sizes: Vec<usize> = walked.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 1]);
    let listed: Vec<_> = walked.into_iter().flatten().collect();
    let ids: Vec<i64> = listed.iter().map(|t| t.id).collect();
    assert_eq!(ids, [ci2.id, admin.id, ci.id], "newest first");
    assert!(same(&listed[1], &admin));
    assert!(
        same(&listed[2], &revoked),
        "a revoked token lists as revoked"
    );

    let token_events: Vec<String> = events(store, EventFilter::default())
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        token_events,
        [
            "TokenCreated",
            "TokenCreated",
            "TokenRevoked",
            "TokenCreated"
        ],
        "revoking twice records one revocation"
    );
}

async fn case_events(store: &dyn Store) {
    let (a, b, web, api) = (name("ev-a"), name("ev-b"), name("web"), name("api"));
    assert!(store
        .list_events(&EventFilter {
            limit: 10,
            ..EventFilter::default()
        })
        .await
        .expect("list events")
        .items
        .is_empty());

    // One successful mutation of each kind.
    store
        .ensure_namespace(&a, event("NamespaceCreated").namespace("ev-a"))
        .await
        .expect("ensure");
    store
        .create_namespace(
            &b,
            &Labels::new(),
            event("NamespaceCreated").namespace("ev-b"),
        )
        .await
        .expect("create namespace");
    for (ns, n) in [(&a, "web"), (&a, "api"), (&b, "web")] {
        store
            .create_app(
                ns,
                &app_create(n, None),
                app_event("AppCreated", ns.as_str(), n),
            )
            .await
            .expect("create app");
    }
    store
        .update_app(&a, &web, Some(1), &|app: &mut App| {
            app.description = "v2".into();
            Ok(app_event("AppUpdated", "ev-a", "web"))
        })
        .await
        .expect("update app");
    store
        .create_version(
            &a,
            &web,
            &version_create(1),
            VersionState::Ready,
            app_event("VersionCreated", "ev-a", "web").details(json!({})),
        )
        .await
        .expect("create version");
    let release = store
        .create_release(
            &a,
            &web,
            1,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "ev-a", "web").details(json!({})),
        )
        .await
        .expect("create release");
    store
        .transition_release(
            release.id,
            release.generation,
            &transition(ReleaseState::Progressing, Some(1)),
            app_event("ReleaseProgressing", "ev-a", "web"),
        )
        .await
        .expect("transition");
    store
        .put_policy(
            &a,
            &web,
            &policy(json!({"min": 1, "max": 3})),
            None,
            app_event("PolicyUpdated", "ev-a", "web"),
        )
        .await
        .expect("put policy");
    store
        .update_namespace(
            &b,
            None,
            &labels(&[("k", "v")]),
            event("NamespaceUpdated").namespace("ev-b"),
        )
        .await
        .expect("update namespace");
    store
        .create_token(&name("ci"), Role::Viewer, None, "h", event("TokenCreated"))
        .await
        .expect("create token");
    let note_details = json!({"nested": {"list": [1, 2, 3], "flag": true}, "text": "ünïcødé"});
    let note = store
        .append_event(
            NewEvent::new("OperatorNote", "someone", "a free-form note")
                .details(note_details.clone()),
        )
        .await
        .expect("append event");

    // Failed mutations record nothing.
    let before = event_count(store).await;
    assert!(store
        .create_app(
            &a,
            &app_create("web", None),
            app_event("AppCreated", "ev-a", "web")
        )
        .await
        .is_err());
    assert!(store
        .update_app(&a, &web, Some(1), &|_app: &mut App| Ok(app_event(
            "AppUpdated",
            "ev-a",
            "web"
        )))
        .await
        .is_err());
    assert!(store
        .create_release(
            &a,
            &web,
            9,
            &Strategy::Immediate,
            app_event("ReleaseCreated", "ev-a", "web")
        )
        .await
        .is_err());
    assert!(store
        .put_policy(
            &a,
            &web,
            &policy(json!({"min": 1, "max": 3})),
            Some(0),
            app_event("PolicyUpdated", "ev-a", "web")
        )
        .await
        .is_err());
    assert!(store
        .delete_namespace(&a, None, event("NamespaceDeleted").namespace("ev-a"))
        .await
        .is_err());
    assert!(store
        .create_token(&name("ci"), Role::Viewer, None, "h2", event("TokenCreated"))
        .await
        .is_err());
    assert!(store
        .create_namespace(
            &b,
            &Labels::new(),
            event("NamespaceCreated").namespace("ev-b")
        )
        .await
        .is_err());
    assert_eq!(
        event_count(store).await,
        before,
        "failed mutations appended events"
    );

    store
        .delete_app(&a, &api, None, app_event("AppDeleted", "ev-a", "api"))
        .await
        .expect("delete app");

    // The whole log, in order.
    let all = events(store, EventFilter::default()).await;
    assert_eq!(
        kinds(&all),
        [
            "NamespaceCreated",
            "NamespaceCreated",
            "AppCreated",
            "AppCreated",
            "AppCreated",
            "AppUpdated",
            "VersionCreated",
            "ReleaseCreated",
            "ReleaseProgressing",
            "PolicyUpdated",
            "NamespaceUpdated",
            "TokenCreated",
            "OperatorNote",
            "AppDeleted"
        ]
    );
    for pair in all.windows(2) {
        assert!(pair[0].time <= pair[1].time, "times follow ids: {pair:?}");
    }
    let stored_note = all
        .iter()
        .find(|e| e.id == note)
        .expect("the appended event is listed under its id");
    assert_eq!(stored_note.kind, "OperatorNote");
    assert_eq!(stored_note.actor, "someone");
    assert_eq!(stored_note.reason, "a free-form note");
    assert_eq!(stored_note.details, note_details, "details round-trip");
    assert_eq!(stored_note.namespace, None);
    assert_eq!(stored_note.app, None);
    assert!(all.iter().all(|e| e.actor == ACTOR || e.id == note));
    let version_event = all
        .iter()
        .find(|e| e.kind == "VersionCreated")
        .expect("version event");
    assert_eq!(version_event.details, json!({"version": 1}));
    let release_event = all
        .iter()
        .find(|e| e.kind == "ReleaseCreated")
        .expect("release event");
    assert_eq!(
        release_event.details,
        json!({"release": release.id, "from_versions": []})
    );

    // Filters.
    assert_eq!(
        kinds(&events(store, app_filter("ev-a", "web")).await),
        [
            "AppCreated",
            "AppUpdated",
            "VersionCreated",
            "ReleaseCreated",
            "ReleaseProgressing",
            "PolicyUpdated"
        ]
    );
    let in_a = events(
        store,
        EventFilter {
            namespace: Some("ev-a".into()),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&in_a),
        [
            "NamespaceCreated",
            "AppCreated",
            "AppCreated",
            "AppUpdated",
            "VersionCreated",
            "ReleaseCreated",
            "ReleaseProgressing",
            "PolicyUpdated",
            "AppDeleted"
        ]
    );
    assert!(in_a.iter().all(|e| e.namespace.as_deref() == Some("ev-a")));
    let created = events(
        store,
        EventFilter {
            kind: Some("AppCreated".into()),
            ..EventFilter::default()
        },
    )
    .await;
    let where_: Vec<(Option<&str>, Option<&str>)> = created
        .iter()
        .map(|e| (e.namespace.as_deref(), e.app.as_deref()))
        .collect();
    assert_eq!(
        where_,
        [
            (Some("ev-a"), Some("web")),
            (Some("ev-a"), Some("api")),
            (Some("ev-b"), Some("web"))
        ]
    );
    let created_in_a = events(
        store,
        EventFilter {
            namespace: Some("ev-a".into()),
            kind: Some("AppCreated".into()),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(created_in_a.len(), 2);
    assert!(events(
        store,
        EventFilter {
            kind: Some("NoSuchKind".into()),
            ..EventFilter::default()
        }
    )
    .await
    .is_empty());

    // `after` pagination serves every event once, in id order, whatever the page size.
    let all_ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    for limit in [1, 3, 5, 13, 14, 15] {
        let paged = events_paged(store, &EventFilter::default(), limit).await;
        let ids: Vec<i64> = paged.iter().map(|e| e.id).collect();
        assert_eq!(ids, all_ids, "pages of {limit}");
    }
    let paged_a: Vec<i64> = events_paged(
        store,
        &EventFilter {
            namespace: Some("ev-a".into()),
            ..EventFilter::default()
        },
        2,
    )
    .await
    .iter()
    .map(|e| e.id)
    .collect();
    assert_eq!(paged_a, in_a.iter().map(|e| e.id).collect::<Vec<_>>());
    let tail = events(
        store,
        EventFilter {
            after: Some(note),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&tail),
        ["AppDeleted"],
        "after the note comes only the delete"
    );
    let last = all.last().expect("events").id;
    assert!(events(
        store,
        EventFilter {
            after: Some(last),
            ..EventFilter::default()
        }
    )
    .await
    .is_empty());

    // A namespace-scoped reader sees only its namespaces, and never global events.
    let only_b = events(
        store,
        EventFilter {
            visible_namespaces: Some(vec!["ev-b".into()]),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&only_b),
        ["NamespaceCreated", "AppCreated", "NamespaceUpdated"]
    );
    assert!(only_b
        .iter()
        .all(|e| e.namespace.as_deref() == Some("ev-b")));
    let both = events(
        store,
        EventFilter {
            visible_namespaces: Some(vec!["ev-a".into(), "ev-b".into()]),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(both.len(), all.len() - 2, "global events are not visible");
    assert!(both.iter().all(|e| e.namespace.is_some()));
    let paged_b: Vec<i64> = events_paged(
        store,
        &EventFilter {
            visible_namespaces: Some(vec!["ev-b".into()]),
            ..EventFilter::default()
        },
        1,
    )
    .await
    .iter()
    .map(|e| e.id)
    .collect();
    assert_eq!(paged_b, only_b.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(
        events(
            store,
            EventFilter {
                namespace: Some("ev-a".into()),
                visible_namespaces: Some(vec!["ev-b".into()]),
                ..EventFilter::default()
            }
        )
        .await
        .is_empty(),
        "a filter cannot widen the visible namespaces"
    );
    let nothing = store
        .list_events(&EventFilter {
            visible_namespaces: Some(vec![]),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .expect("list events");
    assert!(
        nothing.items.is_empty(),
        "no visible namespace sees nothing"
    );
    assert_eq!(nothing.next_cursor, None);
}

async fn case_schema_guard(store: &dyn Store, url: &str) {
    store.ping().await.expect("ping");
    // Connecting again to an up-to-date database is fine.
    let again = SqlStore::connect(url, TickClock::start())
        .await
        .expect("reconnect at the current schema version");
    again.ping().await.expect("ping");
    drop(again);

    // A later Tideway migrated this database.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("connect directly");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(9999_i64)
    .bind("from a newer tideway")
    .bind(true)
    .bind(vec![0u8; 48])
    .bind(0_i64)
    .execute(&mut conn)
    .await
    .expect("record a newer migration");
    let _ = conn.close().await;

    match SqlStore::connect(url, TickClock::start()).await {
        Err(e @ StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, 9999);
            assert!(
                (1..9999).contains(&supported),
                "supported version {supported}"
            );
            let message = e.to_string();
            assert!(message.contains("newer"), "message: {message}");
            assert!(message.contains("9999"), "message: {message}");
        }
        Err(other) => panic!("expected SchemaTooNew, got {other:?}"),
        Ok(_) => panic!("connected to a database whose schema is newer than this build"),
    }
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
