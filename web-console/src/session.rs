//! Sign-in sessions: a random session id in an `HttpOnly`, `SameSite=Strict` cookie maps to
//! the user's API token, kept only in this process's memory. Every session has its own CSRF
//! token, put in a hidden field of every form and checked on every POST.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use tideway_api_types::Role;
use tokio::time::Instant;

use crate::api::Api;
use crate::State;

pub const SESSION_COOKIE: &str = "tideway_session";
/// Double-submit cookie that protects the sign-in form, before there is a session.
pub const LOGIN_CSRF_COOKIE: &str = "tideway_login_csrf";
/// A session ends this long after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 10_000;

/// A signed-in user.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    /// The API token; never rendered.
    pub token: String,
    pub name: String,
    pub role: Role,
    pub namespaces: Option<Vec<String>>,
    pub csrf: String,
    /// A message for the next page, e.g. "Version v2 created".
    pub flash: Option<Flash>,
    created: Instant,
}

/// A one-time notice shown at the top of the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

impl Session {
    pub fn can_deploy(&self) -> bool {
        self.role >= Role::Deployer
    }
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session and answers its id.
    pub fn create(
        &self,
        token: String,
        name: String,
        role: Role,
        namespaces: Option<Vec<String>>,
    ) -> String {
        let id = random_token();
        let session = Session {
            id: id.clone(),
            token,
            name,
            role,
            namespaces,
            csrf: random_token(),
            flash: None,
            created: Instant::now(),
        };
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= MAX_SESSIONS {
                map.retain(|_, s| s.created.elapsed() < SESSION_TTL);
            }
            map.insert(id.clone(), session);
        }
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.inner.lock().ok()?;
        match map.get(id) {
            Some(s) if s.created.elapsed() < SESSION_TTL => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(id);
        }
    }

    pub fn set_flash(&self, id: &str, ok: bool, text: impl Into<String>) {
        if let Ok(mut map) = self.inner.lock() {
            if let Some(s) = map.get_mut(id) {
                s.flash = Some(Flash {
                    ok,
                    text: text.into(),
                });
            }
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.inner.lock().ok()?.get_mut(id)?.flash.take()
    }
}

/// 32 random bytes, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a submitted CSRF token matches the expected one (an empty one never does).
pub fn csrf_ok(expected: &str, submitted: Option<&str>) -> bool {
    match submitted {
        Some(s) if !expected.is_empty() => constant_time_eq(expected, s),
        _ => false,
    }
}

/// Whether the browser reached us over TLS (directly or through a TLS-terminating proxy).
pub fn is_tls(headers: &HeaderMap, scheme: Option<&str>) -> bool {
    scheme == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .next()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
            })
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The value of a request cookie.
pub fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Sets a cookie on a response.
pub fn with_cookie(mut res: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The signed-in user of a page request, with the API as they see it. Without a session
/// the request is sent to `/login`.
pub struct User {
    pub session: Session,
    pub api: Api,
    pub flash: Option<Flash>,
}

impl User {
    /// Checks the CSRF field of a submitted form.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), CsrfRefused> {
        if csrf_ok(&self.session.csrf, submitted) {
            Ok(())
        } else {
            Err(CsrfRefused)
        }
    }
}

/// A form whose CSRF token is missing or wrong: answered 403.
#[derive(Debug)]
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        forbidden_csrf()
    }
}

pub fn forbidden_csrf() -> Response {
    (
        axum::http::StatusCode::FORBIDDEN,
        "The form is stale or did not come from this console (CSRF check failed). Reload the page and try again.",
    )
        .into_response()
}

impl FromRequestParts<State> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let session = read_cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| state.sessions.get(id))
            .ok_or_else(|| Redirect::to("/login").into_response())?;
        let flash = if parts.method == axum::http::Method::GET
            && !parts.uri.path().starts_with("/live")
            && !parts.uri.path().ends_with("/logs")
        {
            state.sessions.take_flash(&session.id)
        } else {
            None
        };
        let api = Api::new(state.http.clone(), &state.config.api_base, &session.token);
        Ok(User {
            session,
            api,
            flash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_attributes() {
        let c = cookie(SESSION_COOKIE, "abc", false, None);
        assert_eq!(c, "tideway_session=abc; Path=/; HttpOnly; SameSite=Strict");
        let c = cookie(SESSION_COOKIE, "abc", true, None);
        assert!(c.ends_with("; Secure"), "{c}");
        let gone = cookie(SESSION_COOKIE, "", true, Some(0));
        assert!(gone.contains("Max-Age=0") && gone.contains("HttpOnly"));
    }

    #[test]
    fn tls_is_detected_from_the_proxy_header() {
        let mut h = HeaderMap::new();
        assert!(!is_tls(&h, None));
        assert!(is_tls(&h, Some("https")));
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        assert!(is_tls(&h, None));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!is_tls(&h, None));
    }

    #[test]
    fn csrf_check() {
        let t = random_token();
        assert_eq!(t.len(), 64);
        assert!(csrf_ok(&t, Some(&t)));
        assert!(!csrf_ok(&t, None));
        assert!(!csrf_ok(&t, Some("")));
        assert!(!csrf_ok(&t, Some(&t[..63])));
        assert!(!csrf_ok("", Some("")));
        assert_ne!(random_token(), t);
    }

    #[test]
    fn reads_cookies_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tideway_session=xyz; b=2"),
        );
        assert_eq!(read_cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(read_cookie(&h, "c"), None);
    }

    #[tokio::test]
    async fn sessions_keep_flash_once() {
        let s = Sessions::default();
        let id = s.create("tw_x".into(), "admin".into(), Role::Admin, None);
        assert!(s.get(&id).is_some_and(|s| s.can_deploy()));
        s.set_flash(&id, true, "done");
        assert_eq!(s.take_flash(&id).map(|f| f.text), Some("done".into()));
        assert_eq!(s.take_flash(&id), None);
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }
}
