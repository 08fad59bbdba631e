//! The gRPC API for tools (`tideway.v1`): the service value both `AppService` and
//! `ReleaseService` are implemented on, and what their handlers share — authentication,
//! reading names, pages and strategies out of requests.
//!
//! Handlers follow the REST handlers' order: authenticate, read the request (a malformed
//! field is `InvalidArgument` before any authorization), then call the same
//! [`crate::service`] function or store method the REST handler calls, and convert the
//! result with `tideway_proto::api`.

use std::sync::Arc;

use serde_json::json;
use tideway_api_types::Strategy;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::api::error::ApiError;
use crate::api::params::{check_limit, ListParams};
use crate::api::AppState;
use crate::domain::name::Name;
use crate::domain::token::{secret_hash, Action, Principal};
use crate::store::PageRequest;

/// Serves `AppService` and `ReleaseService` from the API's shared state.
pub struct ToolsApi {
    pub state: Arc<AppState>,
    /// Ends open watch and log streams so a graceful shutdown does not wait on them.
    pub shutdown: CancellationToken,
}

impl ToolsApi {
    /// The caller behind the `authorization: Bearer <token>` metadata, as REST resolves it.
    /// Tokens are checked when a call starts; an open stream is not cut when its token is
    /// revoked later.
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let secret = bearer(request).ok_or(ApiError::Unauthenticated)?;
        match self
            .state
            .store
            .principal_by_hash(&secret_hash(secret))
            .await
        {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(ApiError::Unauthenticated.into()),
            Err(e) => Err(ApiError::from(e).into()),
        }
    }
}

/// The bearer token of a request's `authorization` metadata, if any.
pub fn bearer<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Checks that `p` may do `action` in `ns`.
pub fn authorize(p: &Principal, action: Action, ns: &Name) -> Result<(), Status> {
    p.authorize(action, Some(ns.as_str()))
        .map_err(|d| ApiError::from(d).into())
}

/// A malformed request field (REST's `invalid_path`, `invalid_query`, `invalid_body`).
pub fn invalid_argument(field: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    ApiError::BadRequest {
        code: "invalid_argument",
        details: json!({"field": field, "reason": message}),
        message,
    }
    .into()
}

/// A namespace (empty means `default`).
pub fn namespace(ns: &str) -> Result<Name, Status> {
    if ns.is_empty() {
        return Ok(Name::default_namespace());
    }
    Ok(Name::parse(ns).map_err(ApiError::from)?)
}

/// A namespace and an app name.
pub fn app_names(ns: &str, app: &str) -> Result<(Name, Name), Status> {
    Ok((namespace(ns)?, Name::parse(app).map_err(ApiError::from)?))
}

/// A release id (positive).
pub fn release_id(id: i64) -> Result<i64, Status> {
    if id > 0 {
        Ok(id)
    } else {
        Err(invalid_argument("id", format!("{id} is not a release id")))
    }
}

/// The page a `page_size` (0: the default) and `page_token` ask for, with REST's limits.
pub fn page(page_size: u32, page_token: String) -> Result<PageRequest, Status> {
    let limit = check_limit((page_size != 0).then_some(page_size))
        .map_err(|e| invalid_argument("page_size", e.to_string()))?;
    // The token is checked as REST checks `cursor` (`invalid_cursor`).
    let params = ListParams {
        limit: None,
        cursor: (!page_token.is_empty()).then_some(page_token),
    };
    Ok(PageRequest {
        limit,
        ..params.page()?
    })
}

/// A strategy given as the REST API's JSON (empty: none, i.e. immediate). Only its shape is
/// checked here; its rules are checked where releases are created.
pub fn strategy_from_json(json: &str) -> Result<Option<Strategy>, Status> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(json).map(Some).map_err(|e| {
        invalid_argument(
            "strategy_json",
            format!("strategy_json is not a release strategy: {e}"),
        )
    })
}
