//! The overview: every namespace and app the token sees, with health, instances, traffic
//! and running releases, refreshed live.

use axum::extract::{Path, State as AxumState};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use futures_util::future::join_all;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;
use tideway_api_types::name::dns_label_error;
use tideway_api_types::{
    App, AppMetrics, AutoscalingStatus, Instance, InstanceState, Namespace, Page, Release,
};

use super::{csrf_field, frame, html_page, pill, Frame, Nav, PageResult};
use crate::api::{Api, ApiFailure};
use crate::format::{self, summarize, Summary};
use crate::session::User;
use crate::State;

/// One app's line of the overview.
pub struct AppRow {
    pub app: App,
    pub ready: u32,
    pub desired: u32,
    pub failing: bool,
    pub summary: Summary,
    pub release: Option<Release>,
}

async fn app_row(api: &Api, app: App) -> Result<AppRow, ApiFailure> {
    let base = format!("/namespaces/{}/apps/{}", app.namespace, app.name);
    let urls = [
        format!("{base}/instances?limit=500"),
        format!("{base}/metrics?step=1"),
        format!("{base}/releases?limit=5"),
        format!("{base}/autoscaling/status"),
    ];
    let (instances, metrics, releases, scaling) = tokio::join!(
        api.get::<Page<Instance>>(&urls[0]),
        api.get::<AppMetrics>(&urls[1]),
        api.get::<Page<Release>>(&urls[2]),
        api.get::<AutoscalingStatus>(&urls[3]),
    );
    let instances = instances?.items;
    let ready = instances
        .iter()
        .filter(|i| i.state == InstanceState::Ready)
        .count() as u32;
    let failing = instances
        .iter()
        .any(|i| matches!(i.state, InstanceState::CrashLoop | InstanceState::Unhealthy));
    let release = releases?.items.into_iter().find(|r| r.state.is_active());
    let scaling = scaling.ok();
    let desired = match (&scaling, &release) {
        (Some(s), _) if s.enabled && !s.versions.is_empty() => {
            s.versions.iter().map(|v| v.desired).sum()
        }
        (_, Some(r)) => r.progress.target_replicas + r.progress.stable_replicas,
        _ if app.current_version.is_some() => app.replicas,
        _ => 0,
    };
    Ok(AppRow {
        summary: metrics.map(|m| summarize(&m, 5)).unwrap_or_default(),
        app,
        ready,
        desired,
        failing,
        release,
    })
}

/// The namespaces the token sees, with their apps.
pub async fn load(api: &Api) -> Result<Vec<(Namespace, Vec<AppRow>)>, ApiFailure> {
    let namespaces: Vec<Namespace> = api.list("/namespaces", 4).await?;
    let mut out = Vec::new();
    for ns in namespaces {
        let apps: Vec<App> = match api.list(&format!("/namespaces/{}/apps", ns.name), 4).await {
            Ok(apps) => apps,
            Err(e) if e.status == 403 => continue,
            Err(e) => return Err(e),
        };
        let rows = join_all(apps.into_iter().map(|a| app_row(api, a))).await;
        out.push((ns, rows.into_iter().collect::<Result<Vec<_>, _>>()?));
    }
    Ok(out)
}

fn status_pill(row: &AppRow) -> Markup {
    if row.app.current_version.is_none() && row.release.is_none() {
        pill("muted", "no release yet")
    } else if row.failing {
        pill("bad", "failing")
    } else if row.desired == 0 && row.ready == 0 {
        pill("muted", "scaled to zero")
    } else if row.ready >= row.desired {
        pill("ok", "healthy")
    } else {
        pill("warn", "converging")
    }
}

/// The live region of the overview.
pub fn render(data: &[(Namespace, Vec<AppRow>)]) -> Markup {
    let total_apps: usize = data.iter().map(|(_, a)| a.len()).sum();
    let total_rps: f64 = data
        .iter()
        .flat_map(|(_, a)| a.iter())
        .map(|r| r.summary.rps)
        .sum();
    let releasing = data
        .iter()
        .flat_map(|(_, a)| a.iter())
        .filter(|r| r.release.is_some())
        .count();
    let ready: u32 = data
        .iter()
        .flat_map(|(_, a)| a.iter())
        .map(|r| r.ready)
        .sum();
    html! {
        div.stats {
            div.stat { span.label { "Apps" } span.value { (total_apps) } }
            div.stat { span.label { "Ready instances" } span.value { (ready) } }
            div.stat { span.label { "Requests/s" } span.value data-total-rps { (format::rate(total_rps)) } }
            div.stat { span.label { "Running releases" } span.value { (releasing) } }
        }
        @for (ns, rows) in data {
            section.card {
                div.card-head {
                    h2 { "Namespace " span.mono { (ns.name) } }
                    span.muted { (rows.len()) " apps" }
                }
                @if rows.is_empty() {
                    p.muted { "No apps yet." }
                } @else {
                    div.table-wrap {
                        table.apps {
                            thead { tr {
                                th scope="col" { "App" }
                                th scope="col" { "Status" }
                                th scope="col" { "Version" }
                                th scope="col" class="num" { "Ready / desired" }
                                th scope="col" class="num" { "Requests/s" }
                                th scope="col" class="num" { "Errors" }
                                th scope="col" class="num" { "p99" }
                                th scope="col" { "Release" }
                            } }
                            tbody {
                                @for row in rows {
                                    tr data-app=(row.app.name) {
                                        th scope="row" {
                                            a href={"/apps/" (row.app.namespace) "/" (row.app.name)} { (row.app.name) }
                                        }
                                        td { (status_pill(row)) }
                                        td { @if let Some(v) = row.app.current_version { "v" (v) } @else { span.muted { "–" } } }
                                        td.num data-ready=(row.ready) { (row.ready) " / " (row.desired) }
                                        td.num data-rps { (format::rate(row.summary.rps)) }
                                        td.num { (format::percent(row.summary.error_rate)) }
                                        td.num { (format::millis(row.summary.p99_ms)) }
                                        td {
                                            @if let Some(r) = &row.release {
                                                a href={"/apps/" (row.app.namespace) "/" (row.app.name) "/releases/" (r.id)} {
                                                    (pill(format::tone_of_release(r.state), &format!("#{} → v{} {}", r.id, r.target_version, format::wire_name(&r.state))))
                                                }
                                                @if r.progress.weight > 0 && r.progress.weight < 100 {
                                                    " " span.muted { (r.progress.weight) "%" }
                                                }
                                            } @else { span.muted { "–" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn page(user: User) -> PageResult {
    let data = load(&user.api).await?;
    let namespaces: Vec<&str> = data.iter().map(|(n, _)| n.name.as_str()).collect();
    let body = html! {
        div #live-overview data-fragment="overview" { (render(&data)) }
        @if user.session.can_deploy() {
            section.card {
                h2 { "Create an app" }
                form.inline method="post" action={"/namespaces/" (namespaces.first().copied().unwrap_or("default")) "/apps"} #create-app {
                    (csrf_field(&user))
                    div.field {
                        label for="app-name" { "Name" }
                        input #app-name name="name" required pattern="[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" placeholder="hello" autocomplete="off";
                    }
                    div.field {
                        label for="app-ns" { "Namespace" }
                        select #app-ns name="namespace" {
                            @for ns in &namespaces { option value=(ns) { (ns) } }
                        }
                    }
                    div.field {
                        label for="app-replicas" { "Replicas" }
                        input #app-replicas name="replicas" type="number" min="0" max="100" value="1";
                    }
                    button.primary type="submit" { "Create app" }
                }
            }
        }
    };
    Ok(html_page(frame(
        &user,
        Frame {
            title: "Overview",
            nav: Nav::Overview,
            app: None,
            live: Some("/live?view=overview".into()),
        },
        body,
    )))
}

#[derive(Deserialize)]
pub struct CreateApp {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    replicas: Option<String>,
}

pub async fn create_app(
    AxumState(state): AxumState<State>,
    user: User,
    Path(ns): Path<String>,
    Form(form): Form<CreateApp>,
) -> Response {
    if let Err(r) = user.check_csrf(form.csrf.as_deref()) {
        return r.into_response();
    }
    let ns = form.namespace.unwrap_or(ns);
    if dns_label_error(&ns).is_some() {
        state
            .sessions
            .set_flash(&user.session.id, false, "Unknown namespace.");
        return Redirect::to("/").into_response();
    }
    let replicas = form
        .replicas
        .as_deref()
        .and_then(|r| r.trim().parse::<u32>().ok())
        .unwrap_or(1);
    let body = json!({"name": form.name.trim(), "replicas": replicas});
    match user
        .api
        .send::<App>(
            reqwest::Method::POST,
            &format!("/namespaces/{ns}/apps"),
            Some(&body),
        )
        .await
    {
        Ok(app) => {
            state.sessions.set_flash(
                &user.session.id,
                true,
                format!("App {} created. Upload a version to deploy it.", app.name),
            );
            Redirect::to(&format!("/apps/{ns}/{}/deploy", app.name)).into_response()
        }
        Err(e) => {
            state.sessions.set_flash(
                &user.session.id,
                false,
                format!("Could not create the app: {}", e.message),
            );
            Redirect::to("/").into_response()
        }
    }
}
