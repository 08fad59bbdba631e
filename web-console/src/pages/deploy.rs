//! Deploy: upload an artifact as a new version, then start a release with a strategy,
//! after previewing its plan (`?dry_run=true`).

use axum::extract::{Multipart, State as AxumState};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde_json::json;
use tideway_api_types::{App, Page, Release, ReleasePlan, Version, VersionState};

use super::{csrf_field, frame, html_page, pill, AppPath, Frame, Nav, PageError, PageResult};
use crate::api::ApiFailure;
use crate::format;
use crate::session::{forbidden_csrf, User};
use crate::strategy::{self, Form as FormMap};
use crate::State;

fn value<'f>(form: &'f FormMap, k: &str, default: &'f str) -> &'f str {
    form.get(k).map(String::as_str).unwrap_or(default)
}

fn text_field(form: &FormMap, name: &str, label: &str, placeholder: &str, hint: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) value=(value(form, name, "")) placeholder=(placeholder) autocomplete="off";
            @if !hint.is_empty() { span.hint { (hint) } }
        }
    }
}

fn plan_table(plan: &ReleasePlan) -> Markup {
    html! {
        section.card #plan {
            div.card-head {
                h2 { "Plan preview" }
                span.muted { "v" (plan.stable_version.map(|v| v.to_string()).unwrap_or_else(|| "–".into())) " → v" (plan.target_version) " · nothing changed yet" }
            }
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Action" } th scope="col" class="num" { "Weight" }
                    th scope="col" class="num" { "Target inst." } th scope="col" class="num" { "Stable inst." }
                    th scope="col" { "Waits for" }
                } }
                tbody { @for s in &plan.steps {
                    tr {
                        td { (s.index) }
                        td { (s.action) @if !s.rules.is_empty() { " " span.muted { "(" (s.rules.len()) " rules)" } } @if s.preview { " " (pill("info", "preview")) } }
                        td.num { (s.weight) "%" }
                        td.num { (s.target_replicas) }
                        td.num { (s.stable_replicas) }
                        td { (s.waits_for) }
                    }
                } }
            } }
        }
    }
}

fn render(
    user: &User,
    path: &AppPath,
    app: &App,
    versions: &[Version],
    form: &FormMap,
    plan: Option<&ReleasePlan>,
    error: Option<&str>,
) -> Markup {
    let ready: Vec<&Version> = versions
        .iter()
        .filter(|v| v.state != VersionState::BuildFailed)
        .collect();
    let chosen = form.get("target_version").cloned().unwrap_or_else(|| {
        ready
            .first()
            .map(|v| v.number.to_string())
            .unwrap_or_default()
    });
    let kind = value(form, "strategy", "immediate");
    let radio = |v: &str, label: &str| {
        html! {
            label.radio {
                input type="radio" name="strategy" value=(v) checked[kind == v];
                span { (label) }
            }
        }
    };
    html! {
        div.grid2 {
            section.card {
                h2 { "1 · Upload a version" }
                p.muted { "A " code { ".tar.gz" } " or " code { ".zip" } " of a directory with " code { "tideway.toml" } " at its root." }
                form method="post" action={(path.url()) "/versions"} enctype="multipart/form-data" #upload {
                    (csrf_field(user))
                    div.field {
                        label for="artifact" { "Artifact" }
                        input #artifact type="file" name="artifact" accept=".tar.gz,.tgz,.zip,application/gzip,application/zip" required;
                    }
                    button.primary type="submit" { "Upload" }
                }
                @if !versions.is_empty() {
                    h3 { "Versions" }
                    ul.plain #version-list {
                        @for v in versions.iter().take(8) {
                            li {
                                "v" (v.number) " "
                                (pill(match v.state { VersionState::Ready => "ok", VersionState::Building => "info", VersionState::BuildFailed => "bad" }, &format::human(&format::wire_name(&v.state))))
                                @if app.current_version == Some(v.number) { " " (pill("ok", "current")) }
                                " " span.mono.small.muted { (v.artifact_digest.get(7..19).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "2 · Release" }
                @if let Some(e) = error { div.notice.bad role="alert" #release-error { (e) } }
                @if ready.is_empty() {
                    p.muted { "Upload a version first." }
                } @else {
                    form method="post" action={(path.url()) "/releases"} #release-form {
                        (csrf_field(user))
                        div.field {
                            label for="target_version" { "Target version" }
                            select #target_version name="target_version" {
                                @for v in &ready {
                                    option value=(v.number) selected[chosen == v.number.to_string()] { "v" (v.number) }
                                }
                            }
                        }
                        fieldset.strategies {
                            legend { "Strategy" }
                            (radio("immediate", "Immediate"))
                            (radio("canary", "Canary"))
                            (radio("gray", "Gray (header rule)"))
                            (radio("batch", "Batch"))
                            (radio("blue_green", "Blue-green"))
                        }
                        fieldset.opts data-strategy="canary" {
                            legend { "Canary" }
                            (text_field(form, "canary_weights", "Weights (%)", "20, 50", "Traffic to the new version at each step."))
                            (text_field(form, "canary_pause_secs", "Pause after each step (s)", "empty: until promoted", ""))
                        }
                        fieldset.opts data-strategy="gray" {
                            legend { "Gray" }
                            (text_field(form, "gray_header", "Header name", "x-beta", ""))
                            (text_field(form, "gray_value", "Header value", "1", "Requests with this header go to the new version."))
                            (text_field(form, "gray_weight", "Share of other requests (%)", "0", ""))
                            (text_field(form, "gray_pause_secs", "Pause (s)", "empty: until promoted", ""))
                        }
                        fieldset.opts data-strategy="batch" {
                            legend { "Batch" }
                            (text_field(form, "batch_batches", "Batches", "2", ""))
                            (text_field(form, "batch_interval_secs", "Interval (s)", "empty: promote each batch", ""))
                            label.check { input type="checkbox" name="batch_beta" checked[form.contains_key("batch_beta")]; " First batch is a beta batch" }
                        }
                        fieldset.opts data-strategy="blue_green" {
                            legend { "Blue-green" }
                            (text_field(form, "bg_preview_host", "Preview host", "preview.example.com", ""))
                            (text_field(form, "bg_auto_promote_secs", "Auto-promote after (s)", "empty: wait", ""))
                            (text_field(form, "bg_keep_old_secs", "Keep old version (s)", "600", ""))
                        }
                        fieldset.opts data-strategy="canary gray batch blue_green" {
                            legend { "Analysis" }
                            label.check { input type="checkbox" name="analysis" checked[form.contains_key("analysis")]; " Compare with the stable version and abort on failure" }
                            (text_field(form, "analysis_interval_secs", "Check every (s)", "60", ""))
                            (text_field(form, "analysis_success_rate", "Min. success rate (%)", "99", ""))
                            (text_field(form, "analysis_min_requests", "Min. requests per check", "20", ""))
                        }
                        label.check { input type="checkbox" name="supersede" checked[form.contains_key("supersede")]; " Take over from an active release" }
                        div.actions {
                            button type="submit" name="action" value="preview" #preview-plan { "Preview plan" }
                            button.primary type="submit" name="action" value="start" #start-release { "Start release" }
                        }
                    }
                }
            }
        }
        @if let Some(plan) = plan { (plan_table(plan)) }
    }
}

async fn show(
    user: &User,
    path: &AppPath,
    form: &FormMap,
    plan: Option<&ReleasePlan>,
    error: Option<&str>,
) -> PageResult {
    let (base, versions_url) = (path.api(), format!("{}/versions?limit=50", path.api()));
    let (app, versions) = tokio::join!(
        user.api.get::<App>(&base),
        user.api.get::<Page<Version>>(&versions_url),
    );
    let body = render(user, path, &app?, &versions?.items, form, plan, error);
    Ok(html_page(frame(
        user,
        Frame {
            title: &format!("Deploy {}", path.app),
            nav: Nav::Deploy,
            app: Some((&path.ns, &path.app)),
            live: None,
        },
        body,
    )))
}

pub async fn page(user: User, path: AppPath) -> PageResult {
    show(&user, &path, &FormMap::new(), None, None).await
}

pub async fn upload(
    AxumState(state): AxumState<State>,
    user: User,
    path: AppPath,
    mut multipart: Multipart,
) -> Response {
    let mut csrf = None;
    let mut artifact = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                match field.bytes().await {
                    Ok(bytes) if name == "csrf" => {
                        csrf = Some(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    Ok(bytes) if name == "artifact" => artifact = Some(bytes.to_vec()),
                    Ok(_) => {}
                    Err(e) => {
                        state.sessions.set_flash(
                            &user.session.id,
                            false,
                            format!("Upload failed: {e}"),
                        );
                        return Redirect::to(&format!("{}/deploy", path.url())).into_response();
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                state
                    .sessions
                    .set_flash(&user.session.id, false, format!("Upload failed: {e}"));
                return Redirect::to(&format!("{}/deploy", path.url())).into_response();
            }
        }
    }
    if user.check_csrf(csrf.as_deref()).is_err() {
        return forbidden_csrf();
    }
    let Some(bytes) = artifact.filter(|b| !b.is_empty()) else {
        state
            .sessions
            .set_flash(&user.session.id, false, "Choose an artifact to upload.");
        return Redirect::to(&format!("{}/deploy", path.url())).into_response();
    };
    match user
        .api
        .upload::<Version>(&format!("{}/versions", path.api()), bytes)
        .await
    {
        Ok(v) => state.sessions.set_flash(
            &user.session.id,
            true,
            format!(
                "Version v{} uploaded ({}).",
                v.number,
                format::wire_name(&v.state)
            ),
        ),
        Err(e) if e.status == 401 => return PageError(e).into_response(),
        Err(e) => state.sessions.set_flash(
            &user.session.id,
            false,
            format!("Upload refused: {}", e.message),
        ),
    }
    Redirect::to(&format!("{}/deploy", path.url())).into_response()
}

fn failure_text(e: &ApiFailure) -> String {
    match e.field() {
        Some(f) => format!("{f}: {}", e.message),
        None => e.message.clone(),
    }
}

pub async fn release(
    AxumState(state): AxumState<State>,
    user: User,
    path: AppPath,
    Form(form): Form<FormMap>,
) -> Response {
    if let Err(r) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return r.into_response();
    }
    let respond = |r: PageResult| r.unwrap_or_else(IntoResponse::into_response);
    let strategy = match strategy::from_form(&form) {
        Ok(s) => s,
        Err(e) => return respond(show(&user, &path, &form, None, Some(&e)).await),
    };
    let Some(target) = form
        .get("target_version")
        .and_then(|v| v.trim().trim_start_matches('v').parse::<u32>().ok())
    else {
        return respond(show(&user, &path, &form, None, Some("Choose a target version.")).await);
    };
    let body = json!({
        "target_version": target,
        "strategy": strategy,
        "supersede": form.contains_key("supersede"),
    });
    let url = format!("{}/releases", path.api());
    if form.get("action").map(String::as_str) == Some("preview") {
        return match user
            .api
            .send::<ReleasePlan>(
                reqwest::Method::POST,
                &format!("{url}?dry_run=true"),
                Some(&body),
            )
            .await
        {
            Ok(plan) => respond(show(&user, &path, &form, Some(&plan), None).await),
            Err(e) if e.status == 401 => PageError(e).into_response(),
            Err(e) => respond(show(&user, &path, &form, None, Some(&failure_text(&e))).await),
        };
    }
    match user
        .api
        .send::<Release>(reqwest::Method::POST, &url, Some(&body))
        .await
    {
        Ok(r) => {
            state.sessions.set_flash(
                &user.session.id,
                true,
                format!("Release #{} to v{} started.", r.id, r.target_version),
            );
            Redirect::to(&format!("{}/releases/{}", path.url(), r.id)).into_response()
        }
        Err(e) if e.status == 401 => PageError(e).into_response(),
        Err(e) => respond(show(&user, &path, &form, None, Some(&failure_text(&e))).await),
    }
}
