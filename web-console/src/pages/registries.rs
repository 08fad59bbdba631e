//! Service registries of a namespace: connections with their status, what each holds, and
//! the sync jobs between them.

use axum::extract::Query;
use futures_util::future::join_all;
use maud::html;
use serde::Deserialize;
use tideway_api_types::name::dns_label_error;
use tideway_api_types::{Namespace, RegistryConnection, RegistryEntry, RegistrySync};

use super::{frame, html_page, pill, Frame, Nav, PageResult};
use crate::format;
use crate::session::User;

#[derive(Deserialize)]
pub struct RegistryQuery {
    #[serde(default)]
    ns: Option<String>,
}

fn status_text(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "–".into(),
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(" · "),
        Some(other) => other.to_string(),
    }
}

pub async fn page(user: User, Query(q): Query<RegistryQuery>) -> PageResult {
    let namespaces: Vec<Namespace> = user.api.list("/namespaces", 4).await?;
    let ns =
        q.ns.filter(|n| dns_label_error(n).is_none())
            .or_else(|| namespaces.first().map(|n| n.name.clone()))
            .unwrap_or_else(|| "default".into());
    let base = format!("/namespaces/{ns}/registries");
    let sync_url = format!("{base}/sync");
    let (connections, syncs) = tokio::join!(
        user.api.get::<Vec<RegistryConnection>>(&base),
        user.api.get::<Vec<RegistrySync>>(&sync_url),
    );
    let connections = connections?;
    let entry_urls: Vec<String> = connections
        .iter()
        .map(|c| format!("{base}/{}/instances", c.name))
        .collect();
    let entries = join_all(
        entry_urls
            .iter()
            .map(|u| user.api.get::<Vec<RegistryEntry>>(u)),
    )
    .await;
    let syncs = syncs.unwrap_or_default();
    let body = html! {
        form.inline method="get" action="/registries" {
            label for="reg-ns" { "Namespace" }
            select #reg-ns name="ns" {
                @for n in &namespaces { option value=(n.name) selected[n.name == ns] { (n.name) } }
            }
            button type="submit" { "Show" }
        }
        @for (c, e) in connections.iter().zip(entries.iter()) {
            section.card.registry {
                div.card-head {
                    h2 { span.mono { (c.name) } " " (pill("info", &format::wire_name(&c.kind))) }
                    span.muted.small { (c.addresses.join(", ")) }
                }
                p.muted.small { (status_text(&c.status)) }
                @match e {
                    Err(err) => p.muted { "Could not list instances: " (err.message) },
                    Ok(list) if list.is_empty() => p.muted { "No instances registered." },
                    Ok(list) => div.table-wrap { table {
                        thead { tr { th scope="col" { "Service" } th scope="col" { "Instance" } th scope="col" { "Address" } th scope="col" { "Status" } th scope="col" { "Origin" } } }
                        tbody { @for i in list {
                            tr {
                                th scope="row" { (i.service) }
                                td.mono.small { (i.instance_id) }
                                td.mono.small { (i.address) ":" (i.port) }
                                td { (pill(if i.status == "UP" { "ok" } else { "warn" }, &i.status)) }
                                td { (i.origin) }
                            }
                        } }
                    } },
                }
            }
        }
        section.card {
            h2 { "Sync jobs" }
            @if syncs.is_empty() { p.muted { "No sync jobs." } } @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "From → to" } th scope="col" { "Services" } th scope="col" { "Status" } } }
                    tbody { @for s in &syncs {
                        tr {
                            th scope="row" { (s.name) }
                            td { (s.from) " → " (s.to) }
                            td { (s.services.join(", ")) }
                            td.small { (status_text(&s.status)) }
                        }
                    } }
                } }
            }
        }
    };
    Ok(html_page(frame(
        &user,
        Frame {
            title: "Registries",
            nav: Nav::Registries,
            app: None,
            live: None,
        },
        body,
    )))
}
