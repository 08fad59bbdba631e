//! The web console: a server-rendered operations UI, served by the control plane on its API
//! port.
//!
//! It owns pages and their live updates. It speaks only the public REST API
//! (`tideway-api-types`), never the store: every page is rendered by calling `/api/v1` over
//! loopback HTTP with the signed-in user's own token, so the console can show and do exactly
//! what that token can through the CLI, and nothing more. Live regions are refreshed over
//! Server-Sent Events that re-render them each second; charts are SVG drawn in Rust; the
//! little JavaScript there is (`assets/console.js`) only swaps fragments and tails logs.

mod api;
mod chart;
mod format;
mod live;
mod pages;
mod session;
mod strategy;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use session::Sessions;

/// Where the console finds the API it renders.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Base URL of the control plane's REST API, e.g. `http://127.0.0.1:7070` (no trailing
    /// slash). In `tideway server` this is the API's own bound address.
    pub api_base: String,
}

/// Largest artifact the deploy form accepts.
const UPLOAD_LIMIT: usize = 512 * 1024 * 1024;

/// Shared by every console handler.
pub(crate) struct Console {
    pub config: ConsoleConfig,
    pub http: reqwest::Client,
    pub sessions: Sessions,
}

pub(crate) type State = Arc<Console>;

/// The console's pages, assets and live endpoints, to be merged at `/` beside `/api/v1`
/// (into a router of any state: the console carries its own).
pub fn router<S: Clone + Send + Sync + 'static>(config: ConsoleConfig) -> Router<S> {
    let state: State = Arc::new(Console {
        config,
        http: reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_default(),
        sessions: Sessions::default(),
    });
    let app = "/apps/{ns}/{app}";
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/namespaces/{ns}/apps", post(pages::overview::create_app))
        .route(app, get(pages::app::page))
        .route(&format!("{app}/logs"), get(pages::app::logs))
        .route(&format!("{app}/deploy"), get(pages::deploy::page))
        .route(
            &format!("{app}/versions"),
            post(pages::deploy::upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route(&format!("{app}/releases"), post(pages::deploy::release))
        .route(&format!("{app}/releases/{{id}}"), get(pages::release::page))
        .route(
            &format!("{app}/releases/{{id}}/{{action}}"),
            post(pages::release::control),
        )
        .route(&format!("{app}/rollback"), post(pages::release::rollback))
        .route(
            &format!("{app}/autoscaling"),
            get(pages::autoscaling::page).post(pages::autoscaling::save),
        )
        .route("/registries", get(pages::registries::page))
        .route("/events", get(pages::events::page))
        .route("/live", get(live::stream))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .with_state(state)
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/console.js"),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    fn console() -> Router {
        router(ConsoleConfig {
            api_base: "http://127.0.0.1:9".into(),
        })
    }

    #[tokio::test]
    async fn pages_need_a_session() {
        let res = console()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()["location"], "/login");
    }

    #[tokio::test]
    async fn login_form_sets_a_strict_csrf_cookie() {
        let res = console()
            .oneshot(Request::get("/login").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res.headers()["set-cookie"].to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
    }

    #[tokio::test]
    async fn posts_without_a_csrf_token_are_refused() {
        let res = console()
            .oneshot(
                Request::post("/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from("token=abc"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn assets_are_embedded() {
        let res = console()
            .oneshot(
                Request::get("/assets/console.css")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
