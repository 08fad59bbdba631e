//! Request extractors that turn every malformed input into an [`ApiError`] with a stable
//! code, instead of axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;
use crate::domain::name::Name;

/// A JSON body; unknown fields are refused by the wire types themselves.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A JSON body that may be left out entirely (then `T::default()`), for actions whose body
/// only carries options, like `promote` and `rollback`.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
            || (!req.headers().contains_key(header::CONTENT_TYPE)
                && !req.headers().contains_key(header::TRANSFER_ENCODING)
                && !req.headers().contains_key(header::CONTENT_LENGTH));
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| OptionalJson(v))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::BadRequest {
            code: "invalid_body",
            message: format!(
                "the body does not match the expected shape: {}",
                e.body_text()
            ),
            details: json!({"reason": e.body_text()}),
        },
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
            code: "malformed_json",
            message: format!("the body is not valid JSON: {}", e.body_text()),
            details: json!({"reason": e.body_text()}),
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            code: "payload_too_large",
            message: "the request body is larger than the limit".into(),
        },
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// Query parameters; unknown parameters are refused by the parameter types.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::BadRequest {
                code: "invalid_query",
                message: e.body_text(),
                details: serde_json::Value::Null,
            }),
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

async fn path_strings<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<String>, ApiError> {
    Path::<Vec<String>>::from_request_parts(parts, state)
        .await
        .map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// `{ns}` of a namespaced route.
pub struct NsPath(pub Name);

impl<S: Send + Sync> FromRequestParts<S> for NsPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let segments = path_strings(parts, state).await?;
        let ns = segments
            .first()
            .ok_or_else(|| ApiError::bad_request("invalid_path", "missing namespace"))?;
        Ok(NsPath(Name::parse(ns)?))
    }
}

/// `{ns}/apps/{app}` of an app route.
pub struct AppPath {
    pub ns: Name,
    pub app: Name,
}

impl<S: Send + Sync> FromRequestParts<S> for AppPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let segments = path_strings(parts, state).await?;
        match segments.as_slice() {
            [ns, app, ..] => Ok(AppPath {
                ns: Name::parse(ns)?,
                app: Name::parse(app)?,
            }),
            _ => Err(ApiError::bad_request("invalid_path", "missing app")),
        }
    }
}

/// The third path segment as a number: a version number or a release id.
pub struct NumberPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for NumberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let segments = path_strings(parts, state).await?;
        let raw = segments
            .last()
            .ok_or_else(|| ApiError::bad_request("invalid_path", "missing id"))?;
        // Versions may be written `v3` as the CLI and console show them.
        let digits = raw.strip_prefix('v').unwrap_or(raw);
        digits
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(NumberPath)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_path", format!("'{raw}' is not a positive number"))
            })
    }
}

/// The generation pinned by `If-Match`, if any. `*` pins nothing; an entity tag that is not
/// one of ours can never match, so it pins an impossible generation and yields 412.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let raw = value.to_str().unwrap_or("").trim();
        if raw == "*" {
            return Ok(IfMatch(None));
        }
        let tag = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
        Ok(IfMatch(Some(tag.parse().unwrap_or(-1))))
    }
}

/// The `ETag` header value for a generation.
pub fn etag(generation: i64) -> [(header::HeaderName, String); 1] {
    [(header::ETAG, format!("\"{generation}\""))]
}
