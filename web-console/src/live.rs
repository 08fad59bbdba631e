//! Live updates: one Server-Sent Events stream per open page. Each second it asks the API
//! again (with the user's token), re-renders the page's live region and sends it when it
//! changed (`event: fragment`, `{"id", "html"}`), plus a `tick` so the page knows it is live.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tideway_api_types::name::dns_label_error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{Api, ApiFailure};
use crate::pages::{self, AppPath};
use crate::session::User;

const PERIOD: Duration = Duration::from_secs(1);

#[derive(Deserialize, Clone)]
pub struct LiveQuery {
    view: String,
    #[serde(default)]
    ns: Option<String>,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    id: Option<i64>,
}

/// What a page's live region is.
#[derive(Clone)]
enum View {
    Overview,
    App(AppPathOwned),
    Release(AppPathOwned, i64),
    Autoscaling(AppPathOwned),
}

#[derive(Clone)]
struct AppPathOwned {
    ns: String,
    app: String,
}

impl AppPathOwned {
    fn path(&self) -> AppPath {
        AppPath {
            ns: self.ns.clone(),
            app: self.app.clone(),
        }
    }
}

fn view_of(q: &LiveQuery) -> Option<View> {
    let app = || {
        let (ns, app) = (q.ns.clone()?, q.app.clone()?);
        (dns_label_error(&ns).is_none() && dns_label_error(&app).is_none())
            .then_some(AppPathOwned { ns, app })
    };
    match q.view.as_str() {
        "overview" => Some(View::Overview),
        "app" => Some(View::App(app()?)),
        "autoscaling" => Some(View::Autoscaling(app()?)),
        "release" => Some(View::Release(app()?, q.id.filter(|i| *i > 0)?)),
        _ => None,
    }
}

/// The `(element id, inner HTML)` of the view's live region now.
async fn render(api: &Api, view: &View) -> Result<(&'static str, String), ApiFailure> {
    Ok(match view {
        View::Overview => {
            let data = pages::overview::load(api).await?;
            (
                "live-overview",
                pages::overview::render(&data).into_string(),
            )
        }
        View::App(a) => {
            let d = pages::app::load(api, &a.path()).await?;
            (
                "live-app",
                pages::app::render(&d, &a.ns, Utc::now()).into_string(),
            )
        }
        View::Release(a, id) => {
            let (r, events) = pages::release::load(api, &a.path(), *id).await?;
            (
                "live-release",
                pages::release::render(&r, &events).into_string(),
            )
        }
        View::Autoscaling(a) => {
            let status = api
                .get::<tideway_api_types::AutoscalingStatus>(&format!(
                    "{}/autoscaling/status",
                    a.path().api()
                ))
                .await?;
            (
                "live-autoscaling",
                pages::autoscaling::status_card(Some(&status)).into_string(),
            )
        }
    })
}

pub async fn stream(user: User, Query(q): Query<LiveQuery>) -> Response {
    let Some(view) = view_of(&q) else {
        return (axum::http::StatusCode::BAD_REQUEST, "unknown live view").into_response();
    };
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(4);
    let api = user.api;
    tokio::spawn(async move {
        let mut last = String::new();
        let mut ticker = tokio::time::interval(PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let event = match render(&api, &view).await {
                Ok((id, html)) if html != last => {
                    let e = Event::default()
                        .event("fragment")
                        .data(json!({"id": id, "html": html}).to_string());
                    last = html;
                    e
                }
                Ok(_) => Event::default()
                    .event("tick")
                    .data(Utc::now().format("%H:%M:%S").to_string()),
                Err(e) if e.status == 401 => {
                    let _ = tx
                        .send(Ok(Event::default().event("expired").data("signed out")))
                        .await;
                    return;
                }
                Err(e) => Event::default().event("problem").data(e.message),
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
