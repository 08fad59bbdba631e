//! The gRPC API for tools (`tideway.v1`: `AppService`, `ReleaseService`) and the conversions
//! between its messages and the REST API's wire types in `tideway_api_types`.
//!
//! The REST types stay the source of truth: the server reads and writes them, and converts
//! at the gRPC edge with the `*_to_proto` functions here. Shapes with many variants (a
//! release strategy, an event's details) travel as the REST API's JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tideway_api_types as wire;

/// Generated messages, clients and servers of `tideway.v1`.
#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tideway.v1");
}

pub use v1::app_service_client::AppServiceClient;
pub use v1::app_service_server::{AppService, AppServiceServer};
pub use v1::release_service_client::ReleaseServiceClient;
pub use v1::release_service_server::{ReleaseService, ReleaseServiceServer};

/// Largest artifact chunk in one `DeployRequest`.
pub const MAX_DEPLOY_CHUNK: usize = 1024 * 1024;

pub fn timestamp_to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        // Below 2e9 by definition, so it fits.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `None` for a timestamp outside chrono's range or with invalid nanoseconds.
pub fn timestamp_from_proto(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

fn labels_to_proto(labels: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn app_to_proto(a: &wire::App) -> v1::App {
    v1::App {
        namespace: a.namespace.clone(),
        name: a.name.clone(),
        description: a.description.clone(),
        labels: labels_to_proto(&a.labels),
        replicas: a.replicas,
        domains: a.domains.clone(),
        path_prefixes: a.path_prefixes.clone(),
        current_version: a.current_version,
        created_at: Some(timestamp_to_proto(a.created_at)),
        updated_at: Some(timestamp_to_proto(a.updated_at)),
        generation: a.generation,
    }
}

/// The REST body of `POST .../apps` for a `CreateAppRequest` (names are checked by the
/// server, as for REST).
pub fn app_create_from_proto(r: v1::CreateAppRequest) -> wire::AppCreate {
    wire::AppCreate {
        name: r.name,
        description: r.description,
        labels: r.labels.into_iter().collect(),
        replicas: r.replicas,
        domains: r.domains,
        path_prefixes: r.path_prefixes,
        registries: Vec::new(),
    }
}

pub fn version_state_to_proto(s: wire::VersionState) -> v1::VersionState {
    match s {
        wire::VersionState::Building => v1::VersionState::Building,
        wire::VersionState::Ready => v1::VersionState::Ready,
        wire::VersionState::BuildFailed => v1::VersionState::BuildFailed,
    }
}

pub fn version_to_proto(v: &wire::Version) -> v1::Version {
    v1::Version {
        namespace: v.namespace.clone(),
        app: v.app.clone(),
        number: v.number,
        artifact_digest: v.artifact_digest.clone(),
        run_command: v.run.command.clone(),
        env: labels_to_proto(&v.env),
        port: v.port.map(u32::from),
        health: Some(v1::HealthCheck {
            http: v.health.http.clone(),
            tcp: v.health.tcp,
            interval_ms: v.health.interval_ms,
            timeout_ms: v.health.timeout_ms,
            healthy_threshold: v.health.healthy_threshold,
            unhealthy_threshold: v.health.unhealthy_threshold,
        }),
        resources: Some(v1::Resources {
            memory_mb: v.resources.memory_mb,
            cpu_millis: v.resources.cpu_millis,
        }),
        build_command: v.build_command.clone(),
        state: version_state_to_proto(v.state).into(),
        created_at: Some(timestamp_to_proto(v.created_at)),
    }
}

pub fn release_state_to_proto(s: wire::ReleaseState) -> v1::ReleaseState {
    match s {
        wire::ReleaseState::Pending => v1::ReleaseState::Pending,
        wire::ReleaseState::Progressing => v1::ReleaseState::Progressing,
        wire::ReleaseState::Paused => v1::ReleaseState::Paused,
        wire::ReleaseState::Succeeded => v1::ReleaseState::Succeeded,
        wire::ReleaseState::Failed => v1::ReleaseState::Failed,
        wire::ReleaseState::Aborted => v1::ReleaseState::Aborted,
        wire::ReleaseState::Superseded => v1::ReleaseState::Superseded,
    }
}

/// Whether a release in this state can still change (the REST `ReleaseState::is_active`).
pub fn release_state_is_final(s: v1::ReleaseState) -> bool {
    matches!(
        s,
        v1::ReleaseState::Succeeded
            | v1::ReleaseState::Failed
            | v1::ReleaseState::Aborted
            | v1::ReleaseState::Superseded
    )
}

pub fn release_to_proto(r: &wire::Release) -> v1::Release {
    let p = &r.progress;
    v1::Release {
        id: r.id,
        namespace: r.namespace.clone(),
        app: r.app.clone(),
        from_versions: r.from_versions.clone(),
        target_version: r.target_version,
        // Serializing a plain data type to a string does not fail.
        strategy_json: serde_json::to_string(&r.strategy).unwrap_or_default(),
        state: release_state_to_proto(r.state).into(),
        reason: r.reason.clone(),
        progress: Some(v1::ReleaseProgress {
            step: p.step,
            step_started_at: p.step_started_at.map(timestamp_to_proto),
            pause_until: p.pause_until.map(timestamp_to_proto),
            paused_by_user: p.paused_by_user,
            stable_version: p.stable_version,
            weight: p.weight,
            target_replicas: p.target_replicas,
            stable_replicas: p.stable_replicas,
            next_check_at: p.next_check_at.map(timestamp_to_proto),
            passed_in_row: p.passed_in_row,
            failed_checks: p.failed_checks,
        }),
        created_at: Some(timestamp_to_proto(r.created_at)),
        updated_at: Some(timestamp_to_proto(r.updated_at)),
        generation: r.generation,
    }
}

pub fn event_to_proto(e: &wire::Event) -> v1::Event {
    v1::Event {
        id: e.id,
        time: Some(timestamp_to_proto(e.time)),
        namespace: e.namespace.clone(),
        app: e.app.clone(),
        r#type: e.kind.clone(),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
        details_json: e.details.to_string(),
    }
}

pub fn instance_state_to_proto(s: wire::InstanceState) -> v1::InstanceState {
    match s {
        wire::InstanceState::Starting => v1::InstanceState::Starting,
        wire::InstanceState::Ready => v1::InstanceState::Ready,
        wire::InstanceState::Unhealthy => v1::InstanceState::Unhealthy,
        wire::InstanceState::Draining => v1::InstanceState::Draining,
        wire::InstanceState::Stopped => v1::InstanceState::Stopped,
        wire::InstanceState::CrashLoop => v1::InstanceState::CrashLoop,
    }
}

pub fn instance_to_proto(i: &wire::Instance) -> v1::Instance {
    v1::Instance {
        id: i.id.clone(),
        version: i.version,
        state: instance_state_to_proto(i.state).into(),
        address: i.address.clone(),
        restarts: i.restarts,
        message: i.message.clone(),
    }
}

pub fn log_line_to_proto(l: &wire::LogLine) -> v1::LogLine {
    v1::LogLine {
        time: Some(timestamp_to_proto(l.time)),
        instance: l.instance.clone(),
        version: l.version,
        stream: match l.stream {
            wire::LogStream::Stdout => v1::LogStream::Stdout,
            wire::LogStream::Stderr => v1::LogStream::Stderr,
        }
        .into(),
        line: l.line.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(timestamp_from_proto(&timestamp_to_proto(t)), Some(t));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(timestamp_from_proto(&bad), None);
    }

    #[test]
    fn release_keeps_its_strategy_as_rest_json() {
        let release: wire::Release = serde_json::from_value(serde_json::json!({
            "id": 7, "namespace": "default", "app": "shop", "from_versions": [1],
            "target_version": 2,
            "strategy": {"type": "canary", "steps": [{"set_weight": 50}]},
            "state": "paused", "reason": "waiting", "progress": {"step": 1, "weight": 50},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:01Z",
            "generation": 3
        }))
        .unwrap();
        let msg = release_to_proto(&release);
        assert_eq!(msg.state(), v1::ReleaseState::Paused);
        assert_eq!(msg.progress.as_ref().map(|p| p.weight), Some(50));
        let strategy: wire::Strategy = serde_json::from_str(&msg.strategy_json).unwrap();
        assert_eq!(strategy, release.strategy);
        assert!(!release_state_is_final(msg.state()));
    }
}
