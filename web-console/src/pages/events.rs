//! The event log (the audit trail of every change and decision), filtered by namespace, app
//! and type, newest first.

use axum::extract::Query;
use chrono::Utc;
use maud::html;
use serde::Deserialize;

use super::{frame, html_page, Frame, Nav, PageResult};
use crate::api::encode;
use crate::format;
use crate::session::User;

#[derive(Deserialize, Default)]
pub struct EventQuery {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    app: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub async fn page(user: User, Query(q): Query<EventQuery>) -> PageResult {
    let mut query = Vec::new();
    for (k, v) in [
        ("namespace", &q.namespace),
        ("app", &q.app),
        ("type", &q.kind),
    ] {
        if let Some(v) = non_empty(v) {
            query.push(format!("{k}={}", encode(v)));
        }
    }
    let (events, error) = match user.api.events(&query.join("&"), 200).await {
        Ok(e) => (e, None),
        Err(e) if e.status == 400 || e.status == 403 => (Vec::new(), Some(e.message)),
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    let body = html! {
        form.filters method="get" action="/events" aria-label="Filter events" {
            div.field { label for="f-ns" { "Namespace" } input #f-ns name="namespace" value=(non_empty(&q.namespace).unwrap_or("")) placeholder="any"; }
            div.field { label for="f-app" { "App" } input #f-app name="app" value=(non_empty(&q.app).unwrap_or("")) placeholder="any"; }
            div.field { label for="f-type" { "Type" } input #f-type name="type" value=(non_empty(&q.kind).unwrap_or("")) placeholder="e.g. ReleaseSucceeded"; }
            button.primary type="submit" { "Filter" }
            a.button href="/events" { "Clear" }
        }
        @if let Some(e) = error { div.notice.bad role="alert" { (e) } }
        section.card {
            div.card-head { h2 { "Latest events" } span.muted { (events.len()) " shown" } }
            @if events.is_empty() { p.muted { "No events match." } } @else {
                div.table-wrap { table #events {
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "Type" } th scope="col" { "App" }
                        th scope="col" { "Actor" } th scope="col" { "Reason" }
                    } }
                    tbody { @for e in events.iter().rev() {
                        tr {
                            td.small title=(e.time.to_rfc3339()) { (format::clock(e.time)) br; span.muted { (format::ago(e.time, now)) } }
                            td { a href={"/events?type=" (encode(&e.kind))} { code { (e.kind) } } }
                            td {
                                @if let (Some(ns), Some(app)) = (&e.namespace, &e.app) {
                                    a href={"/apps/" (ns) "/" (app)} { (ns) "/" (app) }
                                } @else if let Some(ns) = &e.namespace { (ns) } @else { span.muted { "–" } }
                            }
                            td { (e.actor) }
                            td {
                                (e.reason)
                                @if !e.details.is_null() && e.details != serde_json::json!({}) {
                                    details { summary.small { "details" } pre.small { (serde_json::to_string_pretty(&e.details).unwrap_or_default()) } }
                                }
                            }
                        }
                    } }
                } }
            }
        }
    };
    Ok(html_page(frame(
        &user,
        Frame {
            title: "Events",
            nav: Nav::Events,
            app: None,
            live: None,
        },
        body,
    )))
}
