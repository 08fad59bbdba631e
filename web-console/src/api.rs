//! A small client of the public REST API, used with the signed-in user's token. Every
//! failure keeps the API's status and its stable error body, so pages can show the
//! field and message of a 422 as they are.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tideway_api_types::{ErrorBody, Event, Page};

/// An API call that did not succeed.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    /// HTTP status; 0 when the API could not be reached.
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Value,
}

impl ApiFailure {
    fn unreachable(e: &reqwest::Error) -> ApiFailure {
        ApiFailure {
            status: 0,
            code: "unreachable".into(),
            message: format!("the API did not answer: {e}"),
            details: Value::Null,
        }
    }

    /// The field a validation error names, if any.
    pub fn field(&self) -> Option<&str> {
        self.details.get("field").and_then(Value::as_str)
    }
}

/// The API as one user sees it.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, token: &str) -> Api {
        Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(30))
    }

    async fn finish<T: DeserializeOwned>(
        res: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ApiFailure> {
        let res = res.map_err(|e| ApiFailure::unreachable(&e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| ApiFailure::unreachable(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ApiFailure {
                status: status.as_u16(),
                code: "unexpected_body".into(),
                message: format!("the API answered something the console cannot read: {e}"),
                details: Value::Null,
            });
        }
        Err(failure(status, &bytes))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        Self::finish(self.request(Method::GET, path).send().await).await
    }

    /// A GET that answers `None` on 404.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ApiFailure> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status == StatusCode::NOT_FOUND.as_u16() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list endpoint (at most `pages` pages of 500).
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        pages: usize,
    ) -> Result<Vec<T>, ApiFailure> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..pages.max(1) {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=500&cursor={}", encode(c)),
                None => format!("{path}{sep}limit=500"),
            };
            let page: Page<T> = self.get(&url).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(items)
    }

    /// Events matching `query` (e.g. `namespace=default&app=hello`), oldest first, the newest
    /// `keep` of at most 20 pages.
    pub async fn events(&self, query: &str, keep: usize) -> Result<Vec<Event>, ApiFailure> {
        let mut items: Vec<Event> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let url = match &after {
                Some(a) => format!("/events?{query}&limit=500&after={}", encode(a)),
                None => format!("/events?{query}&limit=500"),
            };
            let page: Page<Event> = self.get(&url).await?;
            items.extend(page.items);
            if items.len() > keep {
                items.drain(..items.len() - keep);
            }
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        Ok(items)
    }

    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ApiFailure> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        Self::finish(req.send().await).await
    }

    /// Uploads an artifact as the raw request body.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<T, ApiFailure> {
        let req = self
            .request(Method::POST, path)
            .timeout(std::time::Duration::from_secs(600))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        Self::finish(req.send().await).await
    }

    /// An open streaming response (Server-Sent Events), for the log tail.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ApiFailure> {
        let res = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| ApiFailure::unreachable(&e))?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let bytes = res.bytes().await.unwrap_or_default();
        Err(failure(status, &bytes))
    }
}

/// The failure an error answer describes.
fn failure(status: StatusCode, bytes: &[u8]) -> ApiFailure {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ApiFailure {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
            details: body.error.details,
        },
        Err(_) => ApiFailure {
            status: status.as_u16(),
            code: "http_error".into(),
            message: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            details: Value::Null,
        },
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("MTIz-_.~"), "MTIz-_.~");
    }
}
