//! `/api/v1/tokens`: admin-managed API tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;
use tideway_api_types::{Page, TokenCreate, TokenCreated, TokenInfo, WhoAmI};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, NumberPath};
use super::params::ListParams;
use super::{AppState, CommonErrors};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::token::{mint_secret, role_str, secret_hash, Action, Principal};
use crate::domain::Invalid;

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(ListParams),
    responses((status = 200, description = "Tokens, newest first, without secrets", body = Page<TokenInfo>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<TokenInfo>>, ApiError> {
    p.authorize(Action::Administer, None)?;
    let page = s.store.list_tokens(&params.page()?).await?;
    Ok(Json(Page {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenCreate,
    responses((status = 201, description = "Created; `token` is shown only this once", body = TokenCreated), CommonErrors),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<TokenCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Administer, None)?;
    let name = Name::parse(&body.name)?;
    if let Some(list) = &body.namespaces {
        if list.is_empty() {
            return Err(Invalid::new(
                "namespaces",
                "omit the field for all namespaces; an empty list would allow none",
            )
            .into());
        }
        for ns in list {
            Name::parse(ns)?;
        }
    }
    let secret = mint_secret();
    let event = NewEvent::new("TokenCreated", &p.name, "created through the API").details(
        json!({"name": name.as_str(), "role": role_str(body.role), "namespaces": body.namespaces}),
    );
    let info = s
        .store
        .create_token(
            &name,
            body.role,
            body.namespaces.as_deref(),
            &secret_hash(&secret),
            event,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: secret,
            info,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, description = "Revoked (revoking twice is harmless)", body = TokenInfo), CommonErrors),
    security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NumberPath(id): NumberPath,
) -> Result<Json<TokenInfo>, ApiError> {
    p.authorize(Action::Administer, None)?;
    let event = NewEvent::new("TokenRevoked", &p.name, "revoked through the API")
        .details(json!({"id": id}));
    let info = s.store.revoke_token(id, event).await?;
    // The revoked token must stop working now, not when its cache entry expires.
    s.tokens.clear();
    Ok(Json(info))
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "tokens",
    responses((status = 200, description = "The calling token's name, role and namespaces", body = WhoAmI), CommonErrors),
    security(("bearer" = [])))]
pub async fn whoami(Extension(p): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: p.name,
        role: p.role,
        namespaces: p.namespaces,
    })
}
