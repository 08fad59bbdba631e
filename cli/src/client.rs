//! A small typed client of `/api/v1`: bearer auth, JSON in and out, and the API's error
//! body turned into [`ApiError`] so users see the server's message rather than a status line.

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tideway_api_types::{ErrorBody, Page};

/// Page size used when walking a whole list; the server caps it anyway.
const PAGE_LIMIT: &str = "100";

/// Whole-request limit of ordinary JSON calls. Uploads and log streams have none: they last
/// as long as the data does.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of a non-API error body to show: enough for a proxy's one-line reason, not a
/// whole HTML error page.
const MAX_RAW_ERROR_CHARS: usize = 300;

/// A non-2xx answer from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The API's stable error code; `None` when the body was not an API error (e.g. a
    /// proxy's page), in which case `message` holds the raw body.
    pub code: Option<String>,
    pub message: String,
    /// The request field a validation error is about (`details.field`), e.g.
    /// `strategy.weights`.
    pub field: Option<String>,
}

impl ApiError {
    /// Whether `err` is an API error with this stable code.
    pub fn has_code(err: &anyhow::Error, code: &str) -> bool {
        err.downcast_ref::<ApiError>()
            .is_some_and(|e| e.code.as_deref() == Some(code))
    }

    /// The field a validation error is about, when `err` is one.
    pub fn field_of(err: &anyhow::Error) -> Option<&str> {
        err.downcast_ref::<ApiError>()?.field.as_deref()
    }

    /// Interprets an error response body, keeping the raw text when it is not the API's
    /// `{"error": {...}}` shape.
    pub fn from_body(status: StatusCode, body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => ApiError {
                status,
                field: error
                    .details
                    .get("field")
                    .and_then(|f| f.as_str())
                    .map(str::to_owned),
                code: Some(error.code),
                message: error.message,
            },
            Err(_) => {
                let trimmed = body.trim();
                let mut message: String = trimmed.chars().take(MAX_RAW_ERROR_CHARS).collect();
                if message.len() < trimmed.len() {
                    message.push('…');
                }
                ApiError {
                    status,
                    code: None,
                    message,
                    field: None,
                }
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.field) {
            // Say which field was refused unless the message already starts with it.
            (Some(code), Some(field)) if !self.message.starts_with(field.as_str()) => {
                write!(f, "{field}: {} ({code})", self.message)
            }
            (Some(code), _) => write!(f, "{} ({code})", self.message),
            (None, _) if self.message.is_empty() => write!(f, "HTTP {}", self.status),
            (None, _) => write!(f, "HTTP {}: {}", self.status, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// Talks to one Tideway server with one token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// `url` is the server root, e.g. `http://127.0.0.1:7070`; it may carry a path prefix
    /// when the server sits behind a reverse proxy.
    pub fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let base = Url::parse(url).with_context(|| format!("invalid server URL {url:?}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("invalid server URL {url:?}: expected http:// or https://");
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("tideway-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            base,
            token: token.to_owned(),
            http,
        })
    }

    /// The server root this client talks to.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `GET /api/v1/<path>`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let resp = self.send(Method::GET, path, query, None::<&()>).await?;
        decode(resp).await
    }

    /// Every item of a paginated list, following `next_cursor` to the last page.
    pub async fn get_all<T: DeserializeOwned>(&self, path: &[&str]) -> anyhow::Result<Vec<T>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", PAGE_LIMIT.to_owned())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page: Page<T> = self.get(path, &query).await?;
            items.extend(page.items);
            match page.next_cursor {
                // A server that hands back the cursor it was given would loop forever.
                Some(next) if cursor.as_ref() == Some(&next) => {
                    bail!("the server returned the same page cursor twice ({next:?})")
                }
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// `POST /api/v1/<path>` with a JSON body.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        decode(self.send(Method::POST, path, &[], Some(body)).await?).await
    }

    /// `POST /api/v1/<path>?<query>` with a JSON body.
    pub async fn post_query<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        body: &B,
    ) -> anyhow::Result<T> {
        decode(self.send(Method::POST, path, query, Some(body)).await?).await
    }

    /// `PUT /api/v1/<path>` with a JSON body.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        decode(self.send(Method::PUT, path, &[], Some(body)).await?).await
    }

    /// `PATCH /api/v1/<path>` with a JSON merge body.
    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        decode(self.send(Method::PATCH, path, &[], Some(body)).await?).await
    }

    /// `DELETE /api/v1/<path>`; any 2xx counts as done.
    pub async fn delete(&self, path: &[&str]) -> anyhow::Result<()> {
        self.send(Method::DELETE, path, &[], None::<&()>).await?;
        Ok(())
    }

    /// `GET /api/v1/<path>` of a `text/plain` resource, e.g. a build log.
    pub async fn get_text(&self, path: &[&str]) -> anyhow::Result<String> {
        let req = self
            .request(Method::GET, path, &[])?
            .header(ACCEPT, "text/plain")
            .timeout(REQUEST_TIMEOUT);
        let resp = self.execute(req).await?;
        let url = resp.url().clone();
        resp.text()
            .await
            .with_context(|| format!("reading the response from {url}"))
    }

    /// `POST /api/v1/<path>` with a raw body of `content_type`, typically streamed, and a
    /// JSON answer. `length` is sent as `Content-Length` so the server can refuse an
    /// oversized body before it arrives. No overall timeout: an upload takes as long as it
    /// takes.
    pub async fn post_body<T: DeserializeOwned>(
        &self,
        path: &[&str],
        content_type: &str,
        length: u64,
        body: reqwest::Body,
    ) -> anyhow::Result<T> {
        let req = self
            .request(Method::POST, path, &[])?
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, length)
            .body(body);
        decode(self.execute(req).await?).await
    }

    /// `GET /api/v1/<path>` whose body is read incrementally by the caller (e.g. a log
    /// stream), with `accept` as the `Accept` header. No overall timeout.
    pub async fn get_stream(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        accept: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let req = self
            .request(Method::GET, path, query)?
            .header(ACCEPT, accept);
        self.execute(req).await
    }

    /// Builds `<base>/api/v1/<segments>`, percent-encoding each segment so user input can
    /// never change which route is hit.
    fn url(&self, path: &[&str]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("server URL {} cannot take a path", self.base))?
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(path);
        Ok(url)
    }

    /// An authenticated request to `/api/v1/<path>?<query>`.
    fn request(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<RequestBuilder> {
        Ok(self
            .http
            .request(method, self.url(path)?)
            .bearer_auth(&self.token)
            .query(query))
    }

    /// An ordinary JSON call, bounded by [`REQUEST_TIMEOUT`].
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.request(method, path, query)?.timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.execute(req).await
    }

    /// Sends `req`, turning any non-2xx answer into an [`ApiError`].
    async fn execute(&self, req: RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("could not reach the Tideway server at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading the {status} response from {}", self.base))?;
        Err(ApiError::from_body(status, &body).into())
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
    let url = resp.url().clone();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("reading the response from {url}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("unexpected response from {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_error_body() {
        let body = r#"{"error":{"code":"not_found","message":"app \"web\" not found","details":{"app":"web"}}}"#;
        let err = ApiError::from_body(StatusCode::NOT_FOUND, body);
        assert_eq!(err.code.as_deref(), Some("not_found"));
        assert_eq!(err.to_string(), r#"app "web" not found (not_found)"#);
    }

    #[test]
    fn validation_errors_name_their_field() {
        let body = r#"{"error":{"code":"validation_failed","message":"weights must increase","details":{"field":"strategy.weights","reason":"weights must increase"}}}"#;
        let err = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(err.field.as_deref(), Some("strategy.weights"));
        assert_eq!(
            err.to_string(),
            "strategy.weights: weights must increase (validation_failed)"
        );

        // The server's message usually names the field already; it is not repeated.
        let body = r#"{"error":{"code":"validation_failed","message":"strategy.weights: weights must increase","details":{"field":"strategy.weights"}}}"#;
        let err = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            err.to_string(),
            "strategy.weights: weights must increase (validation_failed)"
        );
        assert_eq!(ApiError::field_of(&err.into()), Some("strategy.weights"));
    }

    #[test]
    fn details_are_optional() {
        let body = r#"{"error":{"code":"unauthorized","message":"missing token"}}"#;
        let err = ApiError::from_body(StatusCode::UNAUTHORIZED, body);
        assert_eq!(err.to_string(), "missing token (unauthorized)");
    }

    #[test]
    fn falls_back_to_status_and_raw_text() {
        let err = ApiError::from_body(StatusCode::BAD_GATEWAY, "  upstream connect error\n");
        assert_eq!(err.code, None);
        assert_eq!(
            err.to_string(),
            "HTTP 502 Bad Gateway: upstream connect error"
        );

        // JSON that is not the error shape is still shown verbatim.
        let err = ApiError::from_body(StatusCode::BAD_REQUEST, r#"{"msg":"nope"}"#);
        assert_eq!(err.to_string(), r#"HTTP 400 Bad Request: {"msg":"nope"}"#);

        let err = ApiError::from_body(StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(err.to_string(), "HTTP 503 Service Unavailable");
    }

    #[test]
    fn long_raw_bodies_are_cut() {
        let body = "é".repeat(MAX_RAW_ERROR_CHARS + 10);
        let err = ApiError::from_body(StatusCode::INTERNAL_SERVER_ERROR, &body);
        assert_eq!(err.message.chars().count(), MAX_RAW_ERROR_CHARS + 1);
        assert!(err.message.ends_with('…'));
    }

    #[test]
    fn urls_are_rooted_at_api_v1_and_encoded() {
        let client = ApiClient::new("http://h:7070", "t").unwrap();
        let url = client
            .url(&["namespaces", "default", "apps", "a/b c"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:7070/api/v1/namespaces/default/apps/a%2Fb%20c"
        );

        let behind_proxy = ApiClient::new("https://h/tideway/", "t").unwrap();
        let url = behind_proxy.url(&["events"]).unwrap();
        assert_eq!(url.as_str(), "https://h/tideway/api/v1/events");
    }

    #[test]
    fn rejects_non_http_urls() {
        assert!(ApiClient::new("ftp://h", "t").is_err());
        assert!(ApiClient::new("127.0.0.1:7070", "t").is_err());
    }
}
