//! A release: where it is, the timeline of its steps and checks, analysis results, and the
//! controls over it (promote, pause, resume, abort) plus the app's rollback.

use std::collections::HashMap;

use axum::extract::{Path, State as AxumState};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use maud::{html, Markup};
use serde_json::{json, Value};
use tideway_api_types::{CheckFigures, CheckOutcome, Event, Release, ReleaseState};

use super::{csrf_field, frame, html_page, pill, AppPath, Frame, Nav, PageError, PageResult};
use crate::api::{Api, ApiFailure};
use crate::format;
use crate::session::User;
use crate::State;

/// Events of the app that belong to release `id`.
pub fn of_release(events: Vec<Event>, id: i64) -> Vec<Event> {
    events
        .into_iter()
        .filter(|e| {
            e.details.get("release").and_then(Value::as_i64) == Some(id)
                || e.details
                    .get("release")
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_i64)
                    == Some(id)
        })
        .collect()
}

pub async fn load(api: &Api, path: &AppPath, id: i64) -> Result<(Release, Vec<Event>), ApiFailure> {
    let (url, query) = (
        format!("{}/releases/{id}", path.api()),
        format!("namespace={}&app={}", path.ns, path.app),
    );
    let (release, events) = tokio::join!(api.get::<Release>(&url), api.events(&query, 2000));
    Ok((release?, of_release(events?, id)))
}

fn figures(f: &CheckFigures) -> Markup {
    html! {
        (f.requests) " req · " (format::percent(f.success_rate_percent)) " ok · p99 " (format::millis(f.p99_ms))
    }
}

pub fn render(r: &Release, events: &[Event]) -> Markup {
    let now = Utc::now();
    let p = &r.progress;
    html! {
        section.card {
            div.card-head {
                h2 { "Release #" (r.id) " → v" (r.target_version) }
                span #release-state data-state=(format::wire_name(&r.state)) { (pill(format::tone_of_release(r.state), &format::wire_name(&r.state))) }
            }
            p { (r.reason) }
            div.stats {
                div.stat { span.label { "Strategy" } span.value { (super::app::strategy_name(&r.strategy)) } }
                div.stat { span.label { "Step" } span.value { (p.step) } }
                div.stat { span.label { "Weight to v" (r.target_version) } span.value #release-weight { (p.weight) "%" } }
                div.stat { span.label { "Instances (target / stable)" } span.value { (p.target_replicas) " / " (p.stable_replicas) } }
                div.stat { span.label { "Checks passed / failed" } span.value { (p.passed_in_row) " / " (p.failed_checks) } }
            }
            p.muted.small {
                "From " @for v in &r.from_versions { "v" (v) " " }
                @if let Some(s) = p.stable_version { "· stable v" (s) " " }
                @if let Some(t) = p.pause_until { "· paused until " (format::clock(t)) " " }
                @if p.paused_by_user { "· paused by a user " }
                "· started " (format::ago(r.created_at, now))
            }
        }
        div.grid2 {
            section.card {
                h2 { "Timeline" }
                @if events.is_empty() { p.muted { "No events yet." } } @else {
                    ol.timeline #timeline {
                        @for e in events.iter().rev() {
                            li {
                                span.time { (format::clock(e.time)) }
                                span.kind { (e.kind) }
                                span.reason { (e.reason) }
                                span.actor.muted.small { (e.actor) }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Analysis" }
                @if p.checks.is_empty() { p.muted { "No checks have run." } } @else {
                    div.table-wrap { table #checks {
                        thead { tr { th scope="col" { "At" } th scope="col" { "Outcome" } th scope="col" { "Target" } th scope="col" { "Stable" } } }
                        tbody { @for c in p.checks.iter().rev() {
                            tr {
                                td { (format::clock(c.at)) }
                                td {
                                    (pill(match c.outcome { CheckOutcome::Passed => "ok", CheckOutcome::Failed => "bad", CheckOutcome::Inconclusive => "muted" }, &format::wire_name(&c.outcome)))
                                    @for f in &c.failures { div.small { (f) } }
                                }
                                td.small { (figures(&c.target)) }
                                td.small { (figures(&c.stable)) }
                            }
                        } }
                    } }
                }
            }
        }
    }
}

fn release_id(map: &HashMap<String, String>) -> Option<i64> {
    map.get("id")?.parse().ok().filter(|n: &i64| *n > 0)
}

fn not_found() -> PageError {
    PageError(ApiFailure {
        status: 404,
        code: "not_found".into(),
        message: "no such release".into(),
        details: Value::Null,
    })
}

pub async fn page(
    user: User,
    path: AppPath,
    Path(map): Path<HashMap<String, String>>,
) -> PageResult {
    let id = release_id(&map).ok_or_else(not_found)?;
    let (release, events) = load(&user.api, &path, id).await?;
    let url = format!("{}/releases/{id}", path.url());
    let control = |action: &str, label: &str, class: &str, confirm: Option<&str>| {
        html! {
            form method="post" action={(url) "/" (action)} data-confirm=[confirm] {
                (csrf_field(&user))
                @if action == "promote-full" { input type="hidden" name="full" value="true"; }
                button class=(class) type="submit" #{"do-" (action)} { (label) }
            }
        }
    };
    let active = release.state.is_active();
    let body = html! {
        div.toolbar {
            a href=(path.url()) { "← " (path.app) }
            @if user.session.can_deploy() {
                div.actions {
                    @if active {
                        (control("promote", "Promote", "primary", None))
                        (control("promote-full", "Promote fully", "", Some("Skip every remaining step?")))
                        @if release.state == ReleaseState::Paused { (control("resume", "Resume", "", None)) }
                        @else { (control("pause", "Pause", "", None)) }
                        (control("abort", "Abort", "danger", Some("Abort and send all traffic back to the stable version?")))
                    }
                    form method="post" action={(path.url()) "/rollback"} data-confirm="Roll back to the version that served before?" {
                        (csrf_field(&user))
                        button.danger type="submit" #do-rollback { "Roll back app" }
                    }
                }
            }
        }
        div #live-release data-fragment="release" { (render(&release, &events)) }
    };
    Ok(html_page(frame(
        &user,
        Frame {
            title: &format!("{} · release #{id}", path.app),
            nav: Nav::App,
            app: Some((&path.ns, &path.app)),
            live: Some(format!(
                "/live?view=release&ns={}&app={}&id={id}",
                path.ns, path.app
            )),
        },
        body,
    )))
}

pub async fn control(
    AxumState(state): AxumState<State>,
    user: User,
    path: AppPath,
    Path(map): Path<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return r.into_response();
    }
    let Some(id) = release_id(&map) else {
        return not_found().into_response();
    };
    let (action, body) = match map.get("action").map(String::as_str) {
        Some("promote") => ("promote", Some(json!({}))),
        Some("promote-full") => ("promote", Some(json!({"full": true}))),
        Some(a @ ("pause" | "resume" | "abort")) => (a, None),
        _ => return not_found().into_response(),
    };
    let result = user
        .api
        .send::<Release>(
            reqwest::Method::POST,
            &format!("{}/releases/{id}/{action}", path.api()),
            body.as_ref(),
        )
        .await;
    match result {
        Ok(r) => state.sessions.set_flash(
            &user.session.id,
            true,
            format!(
                "Release #{id}: {action} done; now {}.",
                format::wire_name(&r.state)
            ),
        ),
        Err(e) if e.status == 401 => return PageError(e).into_response(),
        Err(e) => state.sessions.set_flash(
            &user.session.id,
            false,
            format!("Could not {action}: {}", e.message),
        ),
    }
    Redirect::to(&format!("{}/releases/{id}", path.url())).into_response()
}

pub async fn rollback(
    AxumState(state): AxumState<State>,
    user: User,
    path: AppPath,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return r.into_response();
    }
    match user
        .api
        .send::<Release>(
            reqwest::Method::POST,
            &format!("{}/rollback", path.api()),
            Some(&json!({})),
        )
        .await
    {
        Ok(r) => {
            state.sessions.set_flash(
                &user.session.id,
                true,
                format!("Rolling back to v{} (release #{}).", r.target_version, r.id),
            );
            Redirect::to(&format!("{}/releases/{}", path.url(), r.id)).into_response()
        }
        Err(e) if e.status == 401 => PageError(e).into_response(),
        Err(e) => {
            state.sessions.set_flash(
                &user.session.id,
                false,
                format!("Could not roll back: {}", e.message),
            );
            Redirect::to(&path.url()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn event(id: i64, details: Value) -> Event {
        Event {
            id,
            time: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            namespace: Some("default".into()),
            app: Some("hello".into()),
            kind: "ReleaseStepCompleted".into(),
            actor: "release".into(),
            reason: "r".into(),
            details,
        }
    }

    #[test]
    fn keeps_only_the_release_events() {
        let events = vec![
            event(1, json!({"release": 3})),
            event(2, json!({"release": 4})),
            event(3, json!({"release": {"id": 3}})),
            event(4, json!({})),
        ];
        let ids: Vec<i64> = of_release(events, 3).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 3]);
    }
}
