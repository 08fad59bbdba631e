//! The gateway's errors: [`GatewayError`] for starting it, and [`ErrorCode`], the stable
//! codes of the responses it synthesizes itself (rendered as JSON or a short HTML page).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::GatewayBody;
use crate::headers::X_REQUEST_ID;

/// Failure to start the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot bind the gateway listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the gateway listener has no usable address")]
    Listener(#[source] std::io::Error),
}

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 404: no app claims the host or path.
    NoRoute,
    /// 503: the chosen version has no ready instance (and the app does not scale from zero).
    NoReadyInstance,
    /// 504: the upstream did not send response headers within the upstream timeout.
    UpstreamTimeout,
    /// 502: the upstream could not be reached or broke the connection.
    UpstreamUnreachable,
    /// 503: no instance became ready within the activation timeout.
    ActivationTimeout,
    /// 503: too many requests are already waiting for the app to start.
    ActivationQueueFull,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "no_route",
            ErrorCode::NoReadyInstance => "no_ready_instance",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::ActivationTimeout => "activation_timeout",
            ErrorCode::ActivationQueueFull => "activation_queue_full",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NoRoute => StatusCode::NOT_FOUND,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::NoReadyInstance
            | ErrorCode::ActivationTimeout
            | ErrorCode::ActivationQueueFull => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "No app is routed for this host or path.",
            ErrorCode::NoReadyInstance => "The app has no ready instance to serve this request.",
            ErrorCode::UpstreamTimeout => "The app did not answer in time.",
            ErrorCode::UpstreamUnreachable => "The app could not be reached.",
            ErrorCode::ActivationTimeout => "The app did not start in time.",
            ErrorCode::ActivationQueueFull => "Too many requests are waiting for the app to start.",
        }
    }
}

/// Whether the client prefers HTML: its `Accept` names `text/html`, before any
/// `application/json`.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match (accept.find("text/html"), accept.find("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The synthesized response for `code`: JSON `{"error":{"code","message"}}`, or a short
/// HTML page when the client prefers HTML (see [`wants_html`]); always with the request id, and with
/// `Retry-After: 1` on 503.
pub(crate) fn error_response(
    code: ErrorCode,
    html: bool,
    request_id: &HeaderValue,
) -> Response<GatewayBody> {
    let status = code.status();
    let (content_type, body) = if html {
        let reason = status.canonical_reason().unwrap_or("Error");
        let page = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{n} {reason}</title></head>\
             <body><h1>{n} {reason}</h1><p>{msg}</p><p><small>{code} · request {id}</small></p>\
             </body></html>\n",
            n = status.as_u16(),
            msg = code.message(),
            code = code.as_str(),
            id = escape_html(request_id.to_str().unwrap_or("")),
        );
        ("text/html; charset=utf-8", Bytes::from(page))
    } else {
        let json = serde_json::json!({
            "error": { "code": code.as_str(), "message": code.message() }
        });
        ("application/json", Bytes::from(json.to_string()))
    };
    let mut response = Response::new(GatewayBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(&X_REQUEST_ID, request_id.clone());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(code: ErrorCode, accept: Option<&str>) -> (Response<()>, String) {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        let resp = error_response(code, wants_html(&h), &HeaderValue::from_static("rid<1>"));
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn json_by_default() {
        for accept in [None, Some("*/*"), Some("application/json, text/html")] {
            let (resp, body) = render(ErrorCode::NoReadyInstance, accept).await;
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers()["content-type"], "application/json");
            assert_eq!(resp.headers()["retry-after"], "1");
            assert_eq!(resp.headers()["x-request-id"], "rid<1>");
            assert_eq!(
                body,
                r#"{"error":{"code":"no_ready_instance","message":"The app has no ready instance to serve this request."}}"#
            );
        }
    }

    #[tokio::test]
    async fn html_for_browsers() {
        let (resp, body) = render(
            ErrorCode::NoRoute,
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        )
        .await;
        assert_eq!(resp.status(), 404);
        assert!(resp.headers().get("retry-after").is_none());
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert!(body.contains("<h1>404 Not Found</h1>"), "{body}");
        assert!(body.contains("no_route"));
        assert!(body.contains("rid&lt;1&gt;"));
    }

    #[test]
    fn statuses() {
        let table = [
            (ErrorCode::NoRoute, 404, "no_route"),
            (ErrorCode::NoReadyInstance, 503, "no_ready_instance"),
            (ErrorCode::UpstreamTimeout, 504, "upstream_timeout"),
            (ErrorCode::UpstreamUnreachable, 502, "upstream_unreachable"),
            (ErrorCode::ActivationTimeout, 503, "activation_timeout"),
            (ErrorCode::ActivationQueueFull, 503, "activation_queue_full"),
        ];
        for (code, status, name) in table {
            assert_eq!(code.status().as_u16(), status);
            assert_eq!(code.as_str(), name);
        }
    }
}
