//! The app page: versions, the traffic split, per-second charts with scaling decisions on
//! the timeline, instances, recent releases and a live log tail.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::extract::Query;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use tideway_api_types::{
    App, AppMetrics, AutoscalingStatus, Instance, InstanceState, Page, Release, ReleaseState,
    ScaleDecision, Strategy, TrafficPolicyState, Version,
};

use super::{csrf_field, frame, html_page, pill, raw, AppPath, Frame, Nav, PageError, PageResult};
use crate::api::{encode, Api, ApiFailure};
use crate::chart::{Chart, Marker, Series};
use crate::format::{self, summarize};
use crate::session::User;

/// Seconds of history the charts show.
pub const WINDOW_SECS: i64 = 300;

/// Everything the app page shows.
pub struct AppData {
    pub app: App,
    pub versions: Vec<Version>,
    pub instances: Vec<Instance>,
    pub traffic: TrafficPolicyState,
    pub releases: Vec<Release>,
    pub metrics: AppMetrics,
    pub scaling: Option<AutoscalingStatus>,
}

pub async fn load(api: &Api, path: &AppPath) -> Result<AppData, ApiFailure> {
    let base = path.api();
    let urls = [
        format!("{base}/versions?limit=50"),
        format!("{base}/instances?limit=500"),
        format!("{base}/traffic"),
        format!("{base}/releases?limit=10"),
        format!("{base}/metrics?step=1"),
        format!("{base}/autoscaling/status"),
    ];
    let (app, versions, instances, traffic, releases, metrics, scaling) = tokio::join!(
        api.get::<App>(&base),
        api.get::<Page<Version>>(&urls[0]),
        api.get::<Page<Instance>>(&urls[1]),
        api.get::<TrafficPolicyState>(&urls[2]),
        api.get::<Page<Release>>(&urls[3]),
        api.get::<AppMetrics>(&urls[4]),
        api.get::<AutoscalingStatus>(&urls[5]),
    );
    Ok(AppData {
        app: app?,
        versions: versions?.items,
        instances: instances?.items,
        traffic: traffic?,
        releases: releases?.items,
        metrics: metrics?,
        scaling: scaling.ok(),
    })
}

/// Which version gets which share of unmatched traffic now.
pub fn split(app: &App, traffic: &TrafficPolicyState, active: Option<&Release>) -> Vec<(u32, u32)> {
    if let Some(r) = active {
        if let Some(stable) = r.progress.stable_version.filter(|s| *s != r.target_version) {
            let w = r.progress.weight.min(100);
            return [(stable, 100 - w), (r.target_version, w)]
                .into_iter()
                .filter(|(_, w)| *w > 0)
                .collect();
        }
    }
    if !traffic.policy.weights.is_empty() {
        return traffic
            .policy
            .weights
            .iter()
            .filter(|w| w.weight > 0)
            .map(|w| (w.version, w.weight))
            .collect();
    }
    app.current_version
        .map(|v| vec![(v, 100)])
        .unwrap_or_default()
}

fn seconds_before(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (t - now).num_milliseconds() as f64 / 1000.0
}

/// The decisions in the chart window, as markers that explain themselves.
fn markers(decisions: &[ScaleDecision], now: DateTime<Utc>) -> Vec<Marker> {
    decisions
        .iter()
        .map(|d| Marker {
            x: seconds_before(d.at, now),
            label: format!(
                "{} v{}: {} → {} instances — {}",
                format::clock(d.at),
                d.version,
                d.from,
                d.to,
                d.reason.summary
            ),
        })
        .collect()
}

/// One series per version of a per-point figure; the newest, still filling point is left
/// out.
fn metric_series(
    m: &AppMetrics,
    now: DateTime<Utc>,
    f: impl Fn(&tideway_api_types::MetricPoint, f64) -> Option<f64>,
) -> Vec<Series> {
    let step = f64::from(m.step_secs.max(1));
    m.series
        .iter()
        .map(|s| Series {
            label: format!("v{}", s.version),
            points: s
                .points
                .iter()
                .take(s.points.len().saturating_sub(1))
                .map(|p| (seconds_before(p.time, now), f(p, step)))
                .collect(),
        })
        .collect()
}

/// Desired instances per version over the window, reconstructed from the decisions and
/// ending at today's count.
fn instance_series(d: &AppData, now: DateTime<Utc>) -> Vec<Series> {
    let mut current: BTreeMap<u32, u32> = BTreeMap::new();
    for i in d
        .instances
        .iter()
        .filter(|i| i.state != InstanceState::Stopped)
    {
        *current.entry(i.version).or_default() += 1;
    }
    let decisions: &[ScaleDecision] = d.scaling.as_ref().map_or(&[], |s| &s.decisions);
    if let Some(s) = &d.scaling {
        for v in &s.versions {
            current.insert(v.version, v.desired);
        }
    }
    let start = -(WINDOW_SECS as f64);
    current
        .iter()
        .map(|(&version, &now_count)| {
            let mut mine: Vec<&ScaleDecision> = decisions
                .iter()
                .filter(|x| x.version == version && seconds_before(x.at, now) >= start)
                .collect();
            mine.sort_by_key(|x| x.at);
            let initial = mine.first().map_or(now_count, |x| x.from);
            let mut points = vec![(start, Some(f64::from(initial)))];
            points.extend(
                mine.iter()
                    .map(|x| (seconds_before(x.at, now), Some(f64::from(x.to)))),
            );
            if mine.is_empty() {
                points.push((0.0, Some(f64::from(now_count))));
            }
            Series {
                label: format!("v{version}"),
                points,
            }
        })
        .collect()
}

fn split_bar(parts: &[(u32, u32)], versions: &[u32]) -> Markup {
    let index = |v: u32| versions.iter().position(|x| *x == v).unwrap_or(0) % 6;
    html! {
        @if parts.is_empty() {
            p.muted { "No version serves traffic yet." }
        } @else {
            div.split role="img" aria-label={ @for (v, w) in parts { "v" (v) " " (w) "% " } } {
                @for (v, w) in parts {
                    div class={"seg s" (index(*v))} style={"flex-grow:" (w)} { "v" (v) " " (w) "%" }
                }
            }
        }
    }
}

/// The live region of the app page.
pub fn render(d: &AppData, ns: &str, now: DateTime<Utc>) -> Markup {
    let active = d.releases.iter().find(|r| r.state.is_active());
    let parts = split(&d.app, &d.traffic, active);
    let mut all_versions: BTreeSet<u32> = d.metrics.series.iter().map(|s| s.version).collect();
    all_versions.extend(d.instances.iter().map(|i| i.version));
    all_versions.extend(parts.iter().map(|p| p.0));
    let summary = summarize(&d.metrics, 5);
    let decisions: &[ScaleDecision] = d.scaling.as_ref().map_or(&[], |s| &s.decisions);
    let marks = markers(decisions, now);
    let range = (-(WINDOW_SECS as f64), 0.0);
    let chart =
        |id: &str, title: &str, headline: String, unit: &str, series: Vec<Series>, step: bool| {
            raw(Chart {
                id: id.into(),
                title: title.into(),
                headline,
                unit: unit.into(),
                x_range: range,
                series,
                markers: marks.clone(),
                step,
            }
            .render())
        };
    let ready = d
        .instances
        .iter()
        .filter(|i| i.state == InstanceState::Ready)
        .count();
    let rules: Vec<String> = match active.map(|r| &r.strategy) {
        Some(Strategy::Gray(g)) => g
            .rules
            .iter()
            .filter_map(|r| r.header.as_ref())
            .map(|h| {
                format!(
                    "header {} = {} → v{}",
                    h.name,
                    h.exact.as_deref().or(h.prefix.as_deref()).unwrap_or("*"),
                    active.map_or(0, |r| r.target_version)
                )
            })
            .collect(),
        _ => d
            .traffic
            .policy
            .rules
            .iter()
            .filter_map(|r| {
                r.header
                    .as_ref()
                    .map(|h| format!("header {} → v{}", h.name, r.version))
            })
            .collect(),
    };
    html! {
        section.card {
            div.card-head {
                h2 { "Traffic split" }
                @if let Some(r) = active {
                    a href={"/apps/" (ns) "/" (d.app.name) "/releases/" (r.id)} {
                        (pill(format::tone_of_release(r.state), &format!("release #{} {}", r.id, format::wire_name(&r.state))))
                    }
                }
            }
            div #split data-split={ @for (v, w) in &parts { "v" (v) "=" (w) ";" } } {
                (split_bar(&parts, &all_versions.iter().copied().collect::<Vec<_>>()))
            }
            @for r in &rules { p.muted { "Rule: " (r) } }
            div.stats {
                div.stat { span.label { "Requests/s" } span.value #stat-rps data-value=(summary.rps) { (format::rate(summary.rps)) } }
                div.stat { span.label { "Error rate" } span.value { (format::percent(summary.error_rate)) } }
                div.stat { span.label { "p99" } span.value { (format::millis(summary.p99_ms)) } }
                div.stat { span.label { "Ready instances" } span.value #stat-ready data-value=(ready) { (ready) } }
            }
        }
        section.charts {
            (chart("chart-rps", "Requests/s", format!("{} req/s", format::rate(summary.rps)), "",
                metric_series(&d.metrics, now, |p, step| Some(p.requests as f64 / step)), false))
            (chart("chart-errors", "Error rate (5xx)", format::percent(summary.error_rate), "%",
                metric_series(&d.metrics, now, |p, _| (p.requests > 0).then(|| p.responses_5xx as f64 * 100.0 / p.requests as f64)), false))
            (chart("chart-p99", "p99 latency", format::millis(summary.p99_ms), " ms",
                metric_series(&d.metrics, now, |p, _| p.p99_ms), false))
            (chart("chart-instances", "Instances (desired)", format!("{ready} ready"), "",
                instance_series(d, now), true))
        }
        section.card {
            div.card-head { h2 { "Instances" } span.muted { (d.instances.len()) } }
            @if d.instances.is_empty() {
                p.muted { "No instances." }
            } @else {
                div.table-wrap { table #instances {
                    thead { tr {
                        th scope="col" { "Instance" } th scope="col" { "Version" } th scope="col" { "State" }
                        th scope="col" class="num" { "Restarts" } th scope="col" class="num" { "CPU" }
                        th scope="col" class="num" { "Memory" } th scope="col" { "Address" } th scope="col" { "Since" }
                    } }
                    tbody {
                        @for i in &d.instances {
                            tr data-instance=(i.id) data-state=(format::wire_name(&i.state)) {
                                th scope="row" .mono { (i.id) }
                                td { "v" (i.version) }
                                td {
                                    (pill(format::tone_of_instance(i.state), &format::human(&format::wire_name(&i.state))))
                                    @if let Some(m) = &i.message { " " span.muted.small { (m) } }
                                }
                                td.num { (i.restarts) }
                                td.num { @if let Some(c) = i.cpu_percent { (format!("{c:.1}%")) } @else { "–" } }
                                td.num { (format::bytes(i.memory_bytes)) }
                                td.mono.small { (i.address.as_deref().unwrap_or("–")) }
                                td.small { (format::ago(i.created_at, now)) }
                            }
                        }
                    }
                } }
            }
        }
        div.grid2 {
            section.card {
                div.card-head { h2 { "Versions" } }
                @if d.versions.is_empty() { p.muted { "No versions yet." } } @else {
                    div.table-wrap { table #versions {
                        thead { tr { th scope="col" { "Version" } th scope="col" { "State" } th scope="col" { "Artifact" } th scope="col" { "Created" } } }
                        tbody { @for v in &d.versions {
                            tr {
                                th scope="row" { "v" (v.number)
                                    @if d.app.current_version == Some(v.number) { " " (pill("ok", "current")) } }
                                td { (pill(match v.state { tideway_api_types::VersionState::Ready => "ok", tideway_api_types::VersionState::Building => "info", tideway_api_types::VersionState::BuildFailed => "bad" }, &format::human(&format::wire_name(&v.state)))) }
                                td.mono.small title=(v.artifact_digest) { (v.artifact_digest.get(7..19).unwrap_or(&v.artifact_digest)) }
                                td.small { (format::ago(v.created_at, now)) }
                            }
                        } }
                    } }
                }
            }
            section.card {
                div.card-head { h2 { "Releases" } }
                @if d.releases.is_empty() { p.muted { "No releases yet." } } @else {
                    div.table-wrap { table #releases {
                        thead { tr { th scope="col" { "Release" } th scope="col" { "Strategy" } th scope="col" { "State" } th scope="col" { "Updated" } } }
                        tbody { @for r in &d.releases {
                            tr {
                                th scope="row" { a href={"/apps/" (ns) "/" (d.app.name) "/releases/" (r.id)} { "#" (r.id) " → v" (r.target_version) } }
                                td { (strategy_name(&r.strategy)) }
                                td { (pill(format::tone_of_release(r.state), &format::wire_name(&r.state))) }
                                td.small { (format::ago(r.updated_at, now)) }
                            }
                        } }
                    } }
                }
            }
        }
    }
}

pub fn strategy_name(s: &Strategy) -> &'static str {
    match s {
        Strategy::Immediate => "immediate",
        Strategy::Canary(_) => "canary",
        Strategy::Gray(_) => "gray",
        Strategy::Batch(_) => "batch",
        Strategy::BlueGreen(_) => "blue-green",
    }
}

pub async fn page(user: User, path: AppPath) -> PageResult {
    let d = load(&user.api, &path).await?;
    let now = Utc::now();
    let can_rollback = user.session.can_deploy()
        && d.releases
            .iter()
            .any(|r| r.state == ReleaseState::Succeeded);
    let body = html! {
        div.toolbar {
            div {
                span.muted { "Namespace " span.mono { (path.ns) } }
                " · " span.muted { "serving " @if let Some(v) = d.app.current_version { "v" (v) } @else { "nothing yet" } }
                " · " a href={"http://" (path.app) "." (path.ns) ".localhost"} { (path.app) "." (path.ns) ".localhost" }
            }
            div.actions {
                @if user.session.can_deploy() {
                    a.button.primary href={(path.url()) "/deploy"} { "Deploy" }
                }
                a.button href={(path.url()) "/autoscaling"} { "Autoscaling" }
                a.button href={"/events?namespace=" (path.ns) "&app=" (path.app)} { "Events" }
                @if can_rollback {
                    form method="post" action={(path.url()) "/rollback"} data-confirm="Roll back to the version that served before?" {
                        (csrf_field(&user))
                        button.danger type="submit" { "Roll back" }
                    }
                }
            }
        }
        div #live-app data-fragment="app" { (render(&d, &path.ns, now)) }
        section.card #logs {
            div.card-head {
                h2 { "Logs" }
                div.inline {
                    label for="log-instance" { "Instance" }
                    select #log-instance {
                        option value="" { "All instances" }
                        @for i in &d.instances { option value=(i.id) { (i.id) " (v" (i.version) ")" } }
                    }
                    button.ghost type="button" #log-pause aria-pressed="false" { "Pause" }
                }
            }
            ol.logs #log-lines data-src={(path.url()) "/logs"} aria-live="off" aria-label="Log lines" {}
            p.muted.small #log-status { "Connecting…" }
        }
    };
    Ok(html_page(frame(
        &user,
        Frame {
            title: &path.app,
            nav: Nav::App,
            app: Some((&path.ns, &path.app)),
            live: Some(format!("/live?view=app&ns={}&app={}", path.ns, path.app)),
        },
        body,
    )))
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    instance: Option<String>,
}

/// Proxies the API's log stream (Server-Sent Events of `LogLine` JSON) to the browser.
pub async fn logs(user: User, path: AppPath, Query(q): Query<LogQuery>) -> Response {
    let mut url = format!("{}/logs?follow=true&tail=100", path.api());
    if let Some(i) = q.instance.as_deref().filter(|i| !i.is_empty()) {
        url.push_str(&format!("&instance={}", encode(i)));
    }
    match user.api.stream(&url).await {
        Ok(res) => (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(res.bytes_stream()),
        )
            .into_response(),
        Err(e) => PageError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use tideway_api_types::{ReleaseProgress, TrafficPolicy, VersionWeight};

    use super::*;

    fn app(current: Option<u32>) -> App {
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        App {
            namespace: "default".into(),
            name: "hello".into(),
            description: String::new(),
            labels: Default::default(),
            replicas: 1,
            domains: vec![],
            path_prefixes: vec![],
            registries: vec![],
            current_version: current,
            created_at: t,
            updated_at: t,
            generation: 1,
        }
    }

    fn traffic(weights: Vec<VersionWeight>) -> TrafficPolicyState {
        TrafficPolicyState {
            policy: TrafficPolicy {
                weights,
                ..Default::default()
            },
            generation: 0,
            updated_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn split_follows_the_release_then_the_policy_then_the_current_version() {
        assert_eq!(split(&app(None), &traffic(vec![]), None), vec![]);
        assert_eq!(split(&app(Some(1)), &traffic(vec![]), None), vec![(1, 100)]);
        let policy = traffic(vec![
            VersionWeight {
                version: 1,
                weight: 90,
            },
            VersionWeight {
                version: 2,
                weight: 10,
            },
        ]);
        assert_eq!(split(&app(Some(1)), &policy, None), vec![(1, 90), (2, 10)]);
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let release = Release {
            id: 2,
            namespace: "default".into(),
            app: "hello".into(),
            from_versions: vec![1],
            target_version: 2,
            strategy: Strategy::Immediate,
            state: ReleaseState::Paused,
            reason: String::new(),
            progress: ReleaseProgress {
                stable_version: Some(1),
                weight: 20,
                ..Default::default()
            },
            created_at: t,
            updated_at: t,
            generation: 1,
        };
        assert_eq!(
            split(&app(Some(1)), &policy, Some(&release)),
            vec![(1, 80), (2, 20)]
        );
    }
}
