//! Autoscaling: the policy editor (JSON, validated by the API, errors shown by field) and
//! "why did it scale?" — the autoscaler's view and its latest decisions with their reasons.

use std::collections::HashMap;

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use maud::{html, Markup};
use serde_json::Value;
use tideway_api_types::{AutoscalingPolicyState, AutoscalingStatus, ScaleDecision};

use super::{csrf_field, frame, html_page, pill, AppPath, Frame, Nav, PageError, PageResult};
use crate::api::ApiFailure;
use crate::format;
use crate::session::User;
use crate::State;

const TEMPLATE: &str = r#"{
  "min": 1,
  "max": 5,
  "metrics": [{ "type": "concurrency", "target": 10 }],
  "stable_window_secs": 60
}"#;

fn decision(d: &ScaleDecision) -> Markup {
    html! {
        li {
            div.decision-head {
                span.time { (format::clock(d.at)) }
                strong { "v" (d.version) ": " (d.from) " → " (d.to) }
                (pill(if d.to > d.from { "info" } else { "muted" }, &format::wire_name(&d.reason.mode)))
            }
            p { (d.reason.summary) }
            ul.plain.small {
                @for m in &d.reason.metrics {
                    li {
                        (format::wire_name(&m.kind)) @if let Some(n) = &m.name { " " (n) }
                        ": stable " (m.stable.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into()))
                        @if let Some(p) = m.panic { " · panic " (format!("{p:.1}")) }
                        " / target " (m.target)
                        @if let Some(d) = m.desired { " → " (d) }
                        @if let Some(n) = &m.note { " (" (n) ")" }
                    }
                }
                @for c in &d.reason.clamps { li { "clamped by " code { (c.by) } ": " (c.from) " → " (c.to) } }
            }
        }
    }
}

/// "Why did it scale?": the live region of the autoscaling page.
pub fn status_card(status: Option<&AutoscalingStatus>) -> Markup {
    html! {
        h2 { "Why did it scale?" }
                @match status {
                    None => p.muted { "The autoscaler status is unavailable." },
                    Some(s) => {
                        p.muted.small {
                            @if s.enabled { (pill("ok", "enabled")) } @else { (pill("muted", "no policy")) }
                            " stable window " (s.stable_window_secs) "s · panic window " (format!("{:.0}", s.panic_window_secs)) "s"
                        }
                        @if !s.versions.is_empty() {
                            div.table-wrap { table {
                                thead { tr { th scope="col" { "Version" } th scope="col" class="num" { "Desired" } th scope="col" class="num" { "Ready" } th scope="col" { "Mode" } th scope="col" { "Latest evaluation" } } }
                                tbody { @for v in &s.versions {
                                    tr {
                                        th scope="row" { "v" (v.version) }
                                        td.num { (v.desired) }
                                        td.num { (v.ready) }
                                        td { (format::wire_name(&v.mode)) }
                                        td.small { (v.last.as_ref().map(|l| l.summary.as_str()).unwrap_or("–")) }
                                    }
                                } }
                            } }
                        }
                        h3 { "Latest decisions" }
                        @if s.decisions.is_empty() { p.muted { "No scaling decisions yet." } } @else {
                            ol.decisions #decisions { @for d in &s.decisions { (decision(d)) } }
                        }
                    }
                }

    }
}

fn render(
    user: &User,
    path: &AppPath,
    text: &str,
    stored: Option<&AutoscalingPolicyState>,
    status: Option<&AutoscalingStatus>,
    error: Option<&ApiFailure>,
) -> Markup {
    let now = Utc::now();
    html! {
        div.grid2 {
            section.card {
                div.card-head {
                    h2 { "Policy" }
                    @match stored {
                        Some(s) => span.muted.small { "generation " (s.generation) " · updated " (format::ago(s.updated_at, now)) },
                        None => span.muted.small { "none set: the app runs its replica count" },
                    }
                }
                @if let Some(e) = error {
                    div.notice.bad role="alert" #policy-error {
                        @if let Some(f) = e.field() { strong { code { (f) } } ": " }
                        (e.message)
                    }
                }
                form method="post" action={(path.url()) "/autoscaling"} #policy-form {
                    (csrf_field(user))
                    label for="policy" { "Policy (JSON)" }
                    textarea #policy name="policy" rows="16" spellcheck="false" readonly[!user.session.can_deploy()]
                        aria-invalid=[error.map(|_| "true")] aria-describedby="policy-help" { (text) }
                    p.hint #policy-help { "Fields: min, max, metrics (concurrency, rps, cpu, memory, custom), windows, rates, scale_to_zero, schedules." }
                    @if user.session.can_deploy() {
                        button.primary type="submit" #save-policy { "Save policy" }
                    }
                }
            }
            section.card #live-autoscaling { (status_card(status)) }
        }
    }
}

async fn show(
    user: &User,
    path: &AppPath,
    text: Option<&str>,
    error: Option<&ApiFailure>,
) -> PageResult {
    let base = path.api();
    let (policy_url, status_url) = (
        format!("{base}/autoscaling"),
        format!("{base}/autoscaling/status"),
    );
    let (stored, status) = tokio::join!(
        user.api.get_opt::<AutoscalingPolicyState>(&policy_url),
        user.api.get::<AutoscalingStatus>(&status_url),
    );
    let stored = stored?;
    let text = match (text, &stored) {
        (Some(t), _) => t.to_string(),
        (None, Some(s)) => serde_json::to_string_pretty(&s.policy).unwrap_or_default(),
        (None, None) => TEMPLATE.to_string(),
    };
    let body = render(
        user,
        path,
        &text,
        stored.as_ref(),
        status.ok().as_ref(),
        error,
    );
    let mut res = html_page(frame(
        user,
        Frame {
            title: &format!("Autoscaling · {}", path.app),
            nav: Nav::Autoscaling,
            app: Some((&path.ns, &path.app)),
            live: Some(format!(
                "/live?view=autoscaling&ns={}&app={}",
                path.ns, path.app
            )),
        },
        body,
    ));
    if error.is_some() {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(res)
}

pub async fn page(user: User, path: AppPath) -> PageResult {
    show(&user, &path, None, None).await
}

pub async fn save(
    AxumState(state): AxumState<State>,
    user: User,
    path: AppPath,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return r.into_response();
    }
    let text = form.get("policy").cloned().unwrap_or_default();
    let respond = |r: PageResult| r.unwrap_or_else(IntoResponse::into_response);
    let policy: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let failure = ApiFailure {
                status: 400,
                code: "malformed_json".into(),
                message: format!("not valid JSON: {e}"),
                details: Value::Null,
            };
            return respond(show(&user, &path, Some(&text), Some(&failure)).await);
        }
    };
    match user
        .api
        .send::<AutoscalingPolicyState>(
            reqwest::Method::PUT,
            &format!("{}/autoscaling", path.api()),
            Some(&policy),
        )
        .await
    {
        Ok(s) => {
            state.sessions.set_flash(
                &user.session.id,
                true,
                format!("Policy saved (generation {}).", s.generation),
            );
            Redirect::to(&format!("{}/autoscaling", path.url())).into_response()
        }
        Err(e) if e.status == 401 => PageError(e).into_response(),
        Err(e) => respond(show(&user, &path, Some(&text), Some(&e)).await),
    }
}
