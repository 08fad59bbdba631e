//! The pages: the shared frame (sidebar, top bar, notices), error pages and the pieces
//! every page uses.

pub mod app;
pub mod autoscaling;
pub mod deploy;
pub mod events;
pub mod login;
pub mod overview;
pub mod registries;
pub mod release;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use tideway_api_types::name::dns_label_error;

use crate::api::ApiFailure;
use crate::session::{Flash, User};
use crate::State;

/// Which sidebar entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    App,
    Deploy,
    Autoscaling,
    Events,
    Registries,
}

/// What a page is about, for the frame.
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: Nav,
    /// `(ns, app)` when the page belongs to an app: adds its sub-navigation.
    pub app: Option<(&'a str, &'a str)>,
    /// The `/live?...` URL of the page's live regions.
    pub live: Option<String>,
}

pub fn csrf_field(user: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.session.csrf); }
}

fn nav_link(href: &str, label: &str, current: bool) -> Markup {
    html! {
        a href=(href) aria-current=[current.then_some("page")] { (label) }
    }
}

/// The whole page around `body`.
pub fn frame(user: &User, f: Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (f.title) " · Tideway" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body data-live=[f.live.as_deref()] {
                a.skip href="#main" { "Skip to content" }
                div.shell {
                    nav.sidebar aria-label="Main" {
                        a.brand href="/" {
                            span.logo aria-hidden="true" { "≈" }
                            span { "Tideway" }
                        }
                        div.navgroup {
                            (nav_link("/", "Overview", f.nav == Nav::Overview))
                            (nav_link("/events", "Events", f.nav == Nav::Events))
                            (nav_link("/registries", "Registries", f.nav == Nav::Registries))
                        }
                        @if let Some((ns, app)) = f.app {
                            div.navgroup {
                                div.navlabel { (ns) " / " (app) }
                                (nav_link(&format!("/apps/{ns}/{app}"), "App", f.nav == Nav::App))
                                @if user.session.can_deploy() {
                                    (nav_link(&format!("/apps/{ns}/{app}/deploy"), "Deploy", f.nav == Nav::Deploy))
                                }
                                (nav_link(&format!("/apps/{ns}/{app}/autoscaling"), "Autoscaling", f.nav == Nav::Autoscaling))
                            }
                        }
                    }
                    div.content {
                        header.topbar {
                            h1 { (f.title) }
                            div.who {
                                @if f.live.is_some() {
                                    span.live-dot #live-status title="Live updates" { "live" }
                                }
                                span.user { (user.session.name) }
                                span class={"pill role-" (crate::format::wire_name(&user.session.role))} { (crate::format::wire_name(&user.session.role)) }
                                form method="post" action="/logout" {
                                    (csrf_field(user))
                                    button.ghost type="submit" { "Sign out" }
                                }
                            }
                        }
                        main #main tabindex="-1" {
                            @if let Some(flash) = &user.flash { (notice(flash)) }
                            (body)
                        }
                    }
                }
            }
        }
    }
}

pub fn notice(flash: &Flash) -> Markup {
    html! {
        div class={"notice " (if flash.ok { "ok" } else { "bad" })} role=(if flash.ok { "status" } else { "alert" }) {
            (flash.text)
        }
    }
}

pub fn html_page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

pub fn pill(tone: &str, text: &str) -> Markup {
    html! { span class={"pill " (tone)} { (text) } }
}

/// An API failure as a page: 401 signs the user out, the rest explain themselves.
pub struct PageError(pub ApiFailure);

impl From<ApiFailure> for PageError {
    fn from(e: ApiFailure) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status == 401 {
            return Redirect::to("/login").into_response();
        }
        let (status, title) = match e.status {
            403 => (StatusCode::FORBIDDEN, "Not allowed"),
            404 => (StatusCode::NOT_FOUND, "Not found"),
            0 => (StatusCode::BAD_GATEWAY, "The API did not answer"),
            _ => (StatusCode::BAD_GATEWAY, "Something went wrong"),
        };
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Tideway" }
                    link rel="stylesheet" href="/assets/console.css";
                }
                body.center {
                    main.card.narrow {
                        h1 { (title) }
                        p { (e.message) }
                        p.muted { "code: " code { (e.code) } }
                        p { a href="/" { "Back to the overview" } }
                    }
                }
            }
        };
        (status, Html(markup.into_string())).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// `{ns}/{app}` of a console path, checked to be names before they go into an API URL.
pub struct AppPath {
    pub ns: String,
    pub app: String,
}

impl FromRequestParts<State> for AppPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let Path(map) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        let (ns, app) = (get("ns"), get("app"));
        if dns_label_error(&ns).is_some() || dns_label_error(&app).is_some() {
            return Err(PageError(ApiFailure {
                status: 404,
                code: "not_found".into(),
                message: "no such app".into(),
                details: serde_json::Value::Null,
            })
            .into_response());
        }
        Ok(AppPath { ns, app })
    }
}

impl AppPath {
    /// The app's API path, e.g. `/namespaces/default/apps/hello`.
    pub fn api(&self) -> String {
        format!("/namespaces/{}/apps/{}", self.ns, self.app)
    }

    /// The app's console path, e.g. `/apps/default/hello`.
    pub fn url(&self) -> String {
        format!("/apps/{}/{}", self.ns, self.app)
    }
}

/// Raw HTML produced by the chart renderer (escaped there).
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}
