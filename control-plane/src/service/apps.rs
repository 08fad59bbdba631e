//! Apps and versions: creating an app, storing an uploaded artifact as a version, and
//! reading an app's captured output.

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;
use tideway_api_types::{App, AppCreate, Version, VersionState};

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::registry::{validate_bindings, BUILTIN};
use crate::domain::spec::{
    validate_description, validate_domains, validate_labels, validate_path_prefixes,
    validate_replicas,
};
use crate::domain::token::{Action, Principal};
use crate::domain::Invalid;
use crate::runtime::{LogFeed, LogQuery};
use crate::store::RegistryObjectKind;

/// Most lines a log read may ask for per instance.
pub const MAX_LOG_TAIL: usize = 10_000;

/// Creates an app in `ns` from the REST body.
pub async fn create_app(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    body: &AppCreate,
) -> Result<App, ApiError> {
    p.authorize(Action::Deploy, Some(ns.as_str()))?;
    let name = Name::parse(&body.name)?;
    validate_description(&body.description)?;
    validate_labels(&body.labels)?;
    validate_replicas(body.replicas.unwrap_or(1))?;
    validate_domains(&body.domains)?;
    validate_path_prefixes(&body.path_prefixes)?;
    ensure_registries_exist(s, ns, &body.registries).await?;
    ensure_routes_free(s, None, &body.domains, &body.path_prefixes).await?;
    let event = NewEvent::new("AppCreated", &p.name, "created through the API")
        .app(ns.as_str(), name.as_str())
        .details(json!({"replicas": body.replicas.unwrap_or(1), "labels": body.labels}));
    let app = s.store.create_app(ns, body, event).await?;
    s.routes_wake.notify_one();
    Ok(app)
}

/// Refuses bindings to registries the namespace does not have.
pub async fn ensure_registries_exist(
    s: &AppState,
    ns: &Name,
    bindings: &[tideway_api_types::RegistryBinding],
) -> Result<(), ApiError> {
    validate_bindings(bindings)?;
    let known: Vec<String> = s
        .store
        .list_registry_objects(Some(ns), RegistryObjectKind::Connection)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    for (i, b) in bindings.iter().enumerate() {
        if b.registry != BUILTIN && !known.contains(&b.registry) {
            return Err(ApiError::Validation(Invalid::new(
                format!("registries[{i}].registry"),
                format!("the namespace has no registry connection '{}'", b.registry),
            )));
        }
    }
    Ok(())
}

/// Refuses domains or path prefixes another app already claims (`except` is the app being
/// changed).
pub async fn ensure_routes_free(
    s: &AppState,
    except: Option<&(String, String)>,
    domains: &[String],
    prefixes: &[String],
) -> Result<(), ApiError> {
    if domains.is_empty() && prefixes.is_empty() {
        return Ok(());
    }
    for other in s.store.routing_state().await? {
        let a = &other.record.app;
        if except.is_some_and(|(ns, name)| *ns == a.namespace && *name == a.name) {
            continue;
        }
        let taken = domains
            .iter()
            .find(|d| a.domains.contains(d))
            .or_else(|| prefixes.iter().find(|p| a.path_prefixes.contains(p)));
        if let Some(route) = taken {
            return Err(ApiError::Conflict {
                code: "route_taken",
                message: format!("'{route}' already routes to {}/{}", a.namespace, a.name),
            });
        }
    }
    Ok(())
}

/// Stores the artifact streamed in `body` (a tar.gz or zip) as the next version of
/// `ns/app`, and starts its build step if it has one. Authorization (`Action::Deploy` in
/// `ns`) is the caller's, before it starts reading the upload.
pub async fn create_version<S, E>(
    s: &AppState,
    ns: &Name,
    app: &Name,
    actor: &str,
    body: S,
) -> Result<Version, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let version = s.intake.create_version(ns, app, actor, body).await?;
    if version.state == VersionState::Building {
        s.build_wake.notify_one();
    }
    Ok(version)
}

/// Which lines of an app's captured output to read.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub instance: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub tail: Option<usize>,
    pub follow: bool,
}

/// The captured output of the app's instances (and, with `follow`, every new line).
pub async fn logs(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    app: &Name,
    request: LogRequest,
) -> Result<LogFeed, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    if request.tail.is_some_and(|t| t > MAX_LOG_TAIL) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("tail must be at most {MAX_LOG_TAIL}"),
        ));
    }
    s.store.get_app(ns, app).await?;
    Ok(s.runtime
        .logs(LogQuery {
            namespace: ns.to_string(),
            app: app.to_string(),
            instance: request.instance,
            since: request.since,
            tail: request.tail,
            follow: request.follow,
        })
        .await?)
}
