//! What the bridge wants registered ([`DesiredRegistration`]), what it found
//! ([`ObservedRegistration`]), and the metadata vocabulary both sides share: the
//! platform's keys, the ownership markers and the sync markers.
//!
//! **Ownership.** The bridge only ever changes entries that carry its marker: metadata
//! `tideway-managed=true` plus `tideway-bridge=<connector name>`, so two connectors (or two
//! Tideway installations) writing into one registry never touch each other's entries, and
//! native registrations are never touched. Sync copies carry a different marker,
//! `tideway-sync-job=<job name>`, with `tideway-sync-origin` and `tideway-sync-source-id`;
//! a copy never carries the bridge's marker, so no connector mistakes a copy for one of
//! its registrations.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::InstanceStatus;

/// Metadata key: the Tideway namespace of the app.
pub const META_NAMESPACE: &str = "tideway-namespace";
/// Metadata key: the Tideway application.
pub const META_APP: &str = "tideway-app";
/// Metadata key: the platform's instance ID.
pub const META_INSTANCE: &str = "tideway-instance";
/// Metadata key: the version the instance runs.
pub const META_VERSION: &str = "version";
/// Metadata key: the lane (`stable`, `canary`, or a release lane).
pub const META_LANE: &str = "lane";
/// Ownership marker: present (`true`) on every entry a connector registered.
pub const META_MANAGED: &str = "tideway-managed";
/// Ownership marker: the name of the connector that registered the entry.
pub const META_BRIDGE: &str = "tideway-bridge";
/// Sync marker: where a copy came from (`consul:<dc>`, `eureka:<zone>`, …). Entries
/// carrying it are never copied again, by any job.
pub const META_SYNC_ORIGIN: &str = "tideway-sync-origin";
/// Sync marker: the instance ID of the original.
pub const META_SYNC_SOURCE_ID: &str = "tideway-sync-source-id";
/// Sync marker: the job that owns a copy; only that job changes or deletes it.
pub const META_SYNC_JOB: &str = "tideway-sync-job";

/// The lane an instance serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The baseline.
    Stable,
    /// The canary of a release.
    Canary,
    /// A named release lane (feature environment).
    Release(String),
}

impl Lane {
    /// The metadata value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
            Self::Release(name) => name,
        }
    }
}

/// The platform identity of an instance, written into its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// Tideway namespace.
    pub namespace: String,
    /// Tideway application.
    pub app: String,
    /// Version the instance runs.
    pub version: String,
    /// Lane it serves.
    pub lane: Lane,
}

/// One registration the bridge wants in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredRegistration {
    /// Service (Eureka app) name. Matched case-insensitively: Eureka upper-cases it.
    pub service: String,
    /// Instance ID (Eureka instance ID, Consul service ID), unique in the registry.
    pub instance_id: String,
    /// IP address or host name.
    pub address: String,
    /// Serving port.
    pub port: u16,
    /// Eureka metadata / Consul Meta.
    pub metadata: BTreeMap<String, String>,
    /// Consul tags (Eureka has none).
    pub tags: Vec<String>,
    /// `Up`, or `OutOfService` while draining. Anything else is treated as out of
    /// service: kept out of traffic, never newly registered.
    #[serde(serialize_with = "ser_status", deserialize_with = "de_status")]
    pub status: InstanceStatus,
    /// The instance's health endpoint, written as Eureka `healthCheckUrl`.
    pub health_url: Option<String>,
}

impl DesiredRegistration {
    /// A ready platform instance with the platform's metadata (`tideway-namespace`,
    /// `tideway-app`, `tideway-instance`, `version`, `lane`).
    pub fn ready(
        service: impl Into<String>,
        instance_id: impl Into<String>,
        address: impl Into<String>,
        port: u16,
        identity: &InstanceIdentity,
    ) -> Self {
        let instance_id = instance_id.into();
        let metadata = BTreeMap::from([
            (META_NAMESPACE.to_owned(), identity.namespace.clone()),
            (META_APP.to_owned(), identity.app.clone()),
            (META_INSTANCE.to_owned(), instance_id.clone()),
            (META_VERSION.to_owned(), identity.version.clone()),
            (META_LANE.to_owned(), identity.lane.as_str().to_owned()),
        ]);
        Self {
            service: service.into(),
            instance_id,
            address: address.into(),
            port,
            metadata,
            tags: Vec::new(),
            status: InstanceStatus::Up,
            health_url: None,
        }
    }

    /// The same registration, draining (taken out of traffic, still registered).
    #[must_use]
    pub fn draining(mut self) -> Self {
        self.status = InstanceStatus::OutOfService;
        self
    }

    /// The same registration with a health URL.
    #[must_use]
    pub fn with_health_url(mut self, url: impl Into<String>) -> Self {
        self.health_url = Some(url.into());
        self
    }

    /// The same registration with Consul tags.
    #[must_use]
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// Whether it should receive traffic.
    pub fn is_up(&self) -> bool {
        self.status == InstanceStatus::Up
    }
}

/// One entry found in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedRegistration {
    /// Service name as the registry shows it (Eureka: upper-cased).
    pub service: String,
    /// Instance ID.
    pub instance_id: String,
    /// Address (for Consul, the node's when the service has none).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata / Meta.
    pub metadata: BTreeMap<String, String>,
    /// Consul tags; `None` where the registry has no tags (Eureka), so they are not
    /// compared.
    pub tags: Option<Vec<String>>,
    /// Effective status: `OutOfService` for an Eureka override or Consul maintenance,
    /// `Down` for a failing check or a DOWN/UNKNOWN Eureka status.
    #[serde(serialize_with = "ser_status")]
    pub status: InstanceStatus,
    /// Whether the observer's owner marker is on it; `diff` only touches owned entries.
    pub owned: bool,
}

/// Whose entries a connector or sync job may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Owner {
    /// A connector registering platform instances (`tideway-managed`, `tideway-bridge`).
    Bridge(String),
    /// A sync job writing copies (`tideway-sync-job`).
    SyncJob(String),
}

impl Owner {
    /// The marker pairs written on every entry this owner registers.
    pub fn markers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Bridge(name) => vec![
                (META_MANAGED, "true".to_owned()),
                (META_BRIDGE, name.clone()),
            ],
            Self::SyncJob(name) => vec![(META_SYNC_JOB, name.clone())],
        }
    }

    /// Whether an entry with this metadata belongs to this owner.
    pub fn owns(&self, metadata: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Bridge(name) => {
                metadata.get(META_MANAGED).map(String::as_str) == Some("true")
                    && metadata.get(META_BRIDGE) == Some(name)
            }
            Self::SyncJob(name) => {
                metadata.get(META_SYNC_JOB) == Some(name) && metadata.contains_key(META_SYNC_ORIGIN)
            }
        }
    }
}

/// Whether the metadata marks a sync copy (of any job).
pub fn is_sync_copy(metadata: &BTreeMap<String, String>) -> bool {
    metadata.contains_key(META_SYNC_ORIGIN) || metadata.contains_key(META_SYNC_JOB)
}

/// Whether the metadata marks a connector registration (of any connector).
pub fn is_managed(metadata: &BTreeMap<String, String>) -> bool {
    metadata.get(META_MANAGED).map(String::as_str) == Some("true")
}

/// The wire name of a status in reports.
pub fn status_name(status: InstanceStatus) -> &'static str {
    crate::model::EurekaStatus::from(status).as_str()
}

/// Parses a status name (Eureka spelling, case-insensitive).
pub fn parse_status(s: &str) -> Option<InstanceStatus> {
    match s.trim().to_ascii_uppercase().as_str() {
        "UP" => Some(InstanceStatus::Up),
        "OUT_OF_SERVICE" => Some(InstanceStatus::OutOfService),
        "DOWN" => Some(InstanceStatus::Down),
        "STARTING" => Some(InstanceStatus::Starting),
        _ => None,
    }
}

pub(crate) fn ser_status<S: Serializer>(status: &InstanceStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status_name(*status))
}

fn de_status<'de, D: Deserializer<'de>>(d: D) -> Result<InstanceStatus, D::Error> {
    let s = String::deserialize(d)?;
    parse_status(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown status {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_carries_platform_metadata_and_round_trips() {
        let identity = InstanceIdentity {
            namespace: "prod".into(),
            app: "order".into(),
            version: "1.2.0".into(),
            lane: Lane::Canary,
        };
        let d =
            DesiredRegistration::ready("order", "order-7f", "10.0.0.5", 8080, &identity).draining();
        assert_eq!(d.metadata[META_LANE], "canary");
        assert_eq!(d.metadata[META_INSTANCE], "order-7f");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["status"], "OUT_OF_SERVICE");
        let back: DesiredRegistration = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn owners_only_recognise_their_own_marker() {
        let bridge = Owner::Bridge("tem".into());
        let mut meta: BTreeMap<String, String> = bridge
            .markers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert!(bridge.owns(&meta));
        assert!(!Owner::Bridge("other".into()).owns(&meta));
        assert!(!Owner::SyncJob("tem".into()).owns(&meta));
        meta.insert(META_MANAGED.into(), "false".into());
        assert!(!bridge.owns(&meta));
    }
}
