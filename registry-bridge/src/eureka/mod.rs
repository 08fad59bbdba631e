//! The Eureka REST server: `/eureka/…`, `/eureka/v2/…` (and `/eureka/v1/…`), each route
//! with and without a trailing slash.
//!
//! Responses are JSON when the `Accept` header contains `json` and XML otherwise (also
//! when there is no `Accept`), with a matching `Content-Type`. Status codes are the ones
//! Eureka's Jersey resources return and clients check: 204 on register, 200 on renew,
//! cancel and status changes, 404 for unknown instances (a renewal's 404 makes the client
//! re-register), 400 with Eureka's plain-text reasons for bad registrations.

mod codec;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::Error;
use crate::model::{EurekaStatus, Registry, Renewal};
use crate::text::{decode_segment, query_get, query_pairs};

pub(crate) use codec::{decode_registration_json, decode_registration_xml};

/// The Eureka router over a registry. Every path is handled by one dispatcher, so the
/// base paths and trailing-slash variants behave the same.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().fallback(dispatch).with_state(registry)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

fn format_of(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.to_ascii_lowercase().contains("json") {
        Format::Json
    } else {
        Format::Xml
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn empty(status: StatusCode) -> Response {
    status.into_response()
}

fn error_response(err: &Error) -> Response {
    match err {
        Error::Invalid(msg) => text(StatusCode::BAD_REQUEST, msg.clone()),
        Error::NotFound(_) => empty(StatusCode::NOT_FOUND),
        Error::PlatformOwned(_) => text(StatusCode::CONFLICT, err.to_string()),
        _ => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn document(
    format: Format,
    json: impl FnOnce() -> serde_json::Value,
    xml: impl FnOnce() -> String,
) -> Response {
    match format {
        Format::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json().to_string(),
        )
            .into_response(),
        Format::Xml => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/xml")],
            xml(),
        )
            .into_response(),
    }
}

/// Splits `/eureka[/v1|/v2]/a/b/` into decoded segments `["a","b"]`.
fn route_segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("/eureka")?;
    let rest = rest
        .strip_prefix("/v2/")
        .or_else(|| rest.strip_prefix("/v1/"))
        .or_else(|| rest.strip_prefix('/'))?;
    let mut segments: Vec<String> = rest.split('/').map(decode_segment).collect();
    if segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    if segments.iter().any(String::is_empty) {
        return None;
    }
    Some(segments)
}

fn millis_param(pairs: &[(String, String)], key: &str) -> Option<u64> {
    query_get(pairs, key).and_then(|v| v.trim().parse().ok())
}

async fn dispatch(
    State(registry): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(segments) = route_segments(uri.path()) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let pairs = query_pairs(uri.query());
    let format = format_of(&headers);
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["apps"]) => {
            let apps = registry.eureka_apps();
            document(
                format,
                || codec::apps_json(&apps),
                || codec::apps_xml(&apps),
            )
        }
        (&Method::GET, ["apps", "delta"]) => {
            let apps = registry.eureka_delta();
            document(
                format,
                || codec::apps_json(&apps),
                || codec::apps_xml(&apps),
            )
        }
        (&Method::GET, ["apps", app]) => match registry.eureka_app(app) {
            Some(app) => document(
                format,
                || codec::app_doc_json(&app),
                || codec::app_doc_xml(&app),
            ),
            None => empty(StatusCode::NOT_FOUND),
        },
        (&Method::POST, ["apps", app]) => register(&registry, app, &headers, &body),
        (&Method::GET, ["apps", app, id]) => instance(&registry, Some(app), id, format),
        (&Method::GET, ["instances", id]) => instance(&registry, None, id, format),
        (&Method::PUT, ["apps", app, id]) => {
            match registry.eureka_renew(app, id, millis_param(&pairs, "lastDirtyTimestamp")) {
                Renewal::Renewed => empty(StatusCode::OK),
                Renewal::NotFound => empty(StatusCode::NOT_FOUND),
            }
        }
        (&Method::DELETE, ["apps", app, id]) => match registry.eureka_cancel(app, id) {
            Ok(()) => empty(StatusCode::OK),
            Err(e) => error_response(&e),
        },
        (&Method::PUT, ["apps", app, id, "status"]) => {
            let Some(status) = query_get(&pairs, "value").and_then(EurekaStatus::parse) else {
                return text(StatusCode::BAD_REQUEST, "Invalid status value");
            };
            let dirty = millis_param(&pairs, "lastDirtyTimestamp");
            match registry.eureka_status_override(app, id, status, dirty) {
                Ok(()) => empty(StatusCode::OK),
                Err(e) => error_response(&e),
            }
        }
        (&Method::DELETE, ["apps", app, id, "status"]) => {
            let value = query_get(&pairs, "value").and_then(EurekaStatus::parse);
            let dirty = millis_param(&pairs, "lastDirtyTimestamp");
            match registry.eureka_delete_override(app, id, value, dirty) {
                Ok(()) => empty(StatusCode::OK),
                Err(e) => error_response(&e),
            }
        }
        (&Method::PUT, ["apps", app, id, "metadata"]) => {
            match registry.eureka_update_metadata(app, id, pairs) {
                Ok(()) => empty(StatusCode::OK),
                Err(e) => error_response(&e),
            }
        }
        (&Method::GET, ["vips", vip]) => {
            let apps = registry.eureka_vip(vip, false);
            document(
                format,
                || codec::apps_json(&apps),
                || codec::apps_xml(&apps),
            )
        }
        (&Method::GET, ["svips", svip]) => {
            let apps = registry.eureka_vip(svip, true);
            document(
                format,
                || codec::apps_json(&apps),
                || codec::apps_xml(&apps),
            )
        }
        _ => empty(StatusCode::NOT_FOUND),
    }
}

fn instance(registry: &Registry, app: Option<&str>, id: &str, format: Format) -> Response {
    match registry.eureka_instance(app, id) {
        Some(v) => document(
            format,
            || codec::instance_doc_json(&v),
            || codec::instance_doc_xml(&v),
        ),
        None => empty(StatusCode::NOT_FOUND),
    }
}

fn register(registry: &Registry, app: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let Ok(body) = std::str::from_utf8(body) else {
        return text(StatusCode::BAD_REQUEST, "Request body is not UTF-8");
    };
    let looks_xml = content_type.contains("xml")
        || (!content_type.contains("json") && body.trim_start().starts_with('<'));
    let decoded = if looks_xml {
        decode_registration_xml(body)
    } else {
        serde_json::from_str(body)
            .map_err(|e| e.to_string())
            .and_then(|doc| decode_registration_json(&doc))
    };
    let registration = match decoded {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Cannot decode instance: {e}"),
            )
        }
    };
    match registry.eureka_register(app, registration) {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => error_response(&e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_base_paths_and_trailing_slashes() {
        let expect = |p: &str| route_segments(p);
        assert_eq!(expect("/eureka/apps"), Some(vec!["apps".to_owned()]));
        assert_eq!(expect("/eureka/apps/"), Some(vec!["apps".to_owned()]));
        assert_eq!(expect("/eureka/v2/apps/"), Some(vec!["apps".to_owned()]));
        assert_eq!(
            expect("/eureka/v2/apps/ORDER/10.0.0.5%3Aorder%3A8080/status"),
            Some(vec![
                "apps".to_owned(),
                "ORDER".to_owned(),
                "10.0.0.5:order:8080".to_owned(),
                "status".to_owned()
            ])
        );
        assert_eq!(expect("/eurekax/apps"), None);
        assert_eq!(expect("/eureka/apps//x"), None);
    }
}
