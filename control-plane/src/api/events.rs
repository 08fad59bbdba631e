//! `/api/v1/events`: the append-only log of changes and decisions.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use tideway_api_types::{Event, Page};

use super::error::ApiError;
use super::extract::ApiQuery;
use super::params::{check_limit, EventParams};
use super::{AppState, CommonErrors};
use crate::domain::name::Name;
use crate::domain::token::{Action, Principal};
use crate::store::EventFilter;

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventParams),
    responses((status = 200, description = "Events in id order; pass next_cursor as ?after=", body = Page<Event>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<Page<Event>>, ApiError> {
    if let Some(ns) = &params.namespace {
        Name::parse(ns)?;
    }
    if let Some(app) = &params.app {
        Name::parse(app)?;
    }
    if params.kind.as_ref().is_some_and(|k| k.len() > 128) {
        return Err(ApiError::bad_request("invalid_query", "type is too long"));
    }
    if params.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("invalid_query", "after must be >= 0"));
    }
    p.authorize(Action::Read, params.namespace.as_deref())?;
    let filter = EventFilter {
        namespace: params.namespace,
        app: params.app,
        kind: params.kind,
        after: params.after,
        limit: check_limit(params.limit)?,
        visible_namespaces: p.namespaces.clone(),
        newest_first: false,
    };
    let page = s.store.list_events(&filter).await?;
    Ok(Json(Page {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
