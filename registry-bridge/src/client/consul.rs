//! A thin typed Consul client: agent service registration, deregistration and
//! maintenance, TTL check updates, and the agent, catalog and health reads the bridge
//! needs (see the [module docs](super) for why it is hand-written).
//!
//! * **ACL.** The token goes in `X-Consul-Token` on every request.
//! * **Datacenter.** `?dc=` is added to catalog and health reads. Agent endpoints act on
//!   the agent answering, which belongs to one datacenter, so they take no `dc`.
//! * **Agent locality.** Agent registrations live on the agent that took them. The
//!   client sticks to the address that answered last and only moves when it stops
//!   answering; entries left on an agent we moved away from stop getting TTL passes and
//!   are removed by Consul after `DeregisterCriticalServiceAfter`.
//! * **Blocking reads.** [`QueryOptions`] carries `index` and `wait`; the request timeout
//!   is stretched to cover the wait plus Consul's jitter (`wait/16`).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    base_url, encode_segment, http_client, join, json_body, status_error, ClientError, Failover,
    REQUEST_TIMEOUT,
};
use crate::model::CheckStatus;
use crate::text::format_go_duration;

/// Where and how to reach Consul. The token is never serialized or printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsulConfig {
    /// Agent addresses, `http://host:port` (a bare `host:port` means http); tried in
    /// order when one does not answer.
    pub addresses: Vec<String>,
    /// ACL token, sent as `X-Consul-Token`.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Datacenter for catalog and health reads (`?dc=`); the agent's own when unset.
    pub datacenter: Option<String>,
}

impl std::fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("addresses", &self.addresses)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datacenter", &self.datacenter)
            .finish()
    }
}

/// The Consul client. Cheap to clone.
#[derive(Clone)]
pub struct ConsulClient {
    http: reqwest::Client,
    endpoints: std::sync::Arc<Failover>,
    token: Option<String>,
    datacenter: Option<String>,
}

impl std::fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulClient")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datacenter", &self.datacenter)
            .finish_non_exhaustive()
    }
}

/// A value read with its `X-Consul-Index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed<T> {
    /// `X-Consul-Index` (0 when the header was missing).
    pub index: u64,
    /// The body.
    pub value: T,
}

/// Options for catalog and health reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Block until the resource's index exceeds this.
    pub index: Option<u64>,
    /// How long to block at most (Consul: default 5 min, at most 10 min).
    pub wait: Option<Duration>,
    /// A Consul filter expression (`?filter=`).
    pub filter: Option<String>,
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Service weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceWeights {
    /// Weight while passing.
    #[serde(rename = "Passing", default)]
    pub passing: u32,
    /// Weight while warning.
    #[serde(rename = "Warning", default)]
    pub warning: u32,
}

/// A service as `/v1/agent/services` and the `Service` of `/v1/health/service` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentService {
    /// `ID`.
    #[serde(rename = "ID")]
    pub id: String,
    /// `Service` (the name).
    #[serde(rename = "Service")]
    pub service: String,
    /// `Tags`.
    #[serde(rename = "Tags", default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    /// `Meta`.
    #[serde(rename = "Meta", default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
    /// `Port`.
    #[serde(rename = "Port", default)]
    pub port: u16,
    /// `Address` (may be empty: the node's address applies).
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
    /// `Datacenter` (agent view only).
    #[serde(rename = "Datacenter", default, deserialize_with = "nullable")]
    pub datacenter: String,
    /// `Weights`.
    #[serde(rename = "Weights", default)]
    pub weights: Option<ServiceWeights>,
    /// `Kind` (empty for a typical service).
    #[serde(rename = "Kind", default, deserialize_with = "nullable")]
    pub kind: String,
    /// `CreateIndex` (health view only).
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    /// `ModifyIndex` (health view only).
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
}

/// A check as `/v1/agent/checks` and `/v1/health/*` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `Node`.
    #[serde(rename = "Node", default, deserialize_with = "nullable")]
    pub node: String,
    /// `CheckID`.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// `Name`.
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    /// `Status`: `passing`, `warning` or `critical`.
    #[serde(rename = "Status")]
    pub status: String,
    /// `Notes`.
    #[serde(rename = "Notes", default, deserialize_with = "nullable")]
    pub notes: String,
    /// `Output`.
    #[serde(rename = "Output", default, deserialize_with = "nullable")]
    pub output: String,
    /// `ServiceID` (empty for node checks).
    #[serde(rename = "ServiceID", default, deserialize_with = "nullable")]
    pub service_id: String,
    /// `ServiceName`.
    #[serde(rename = "ServiceName", default, deserialize_with = "nullable")]
    pub service_name: String,
    /// `Type` (`ttl`, `http`, …; empty on old servers).
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    pub check_type: String,
}

impl HealthCheck {
    /// The parsed status; an unknown word counts as critical.
    pub fn status(&self) -> CheckStatus {
        CheckStatus::parse(&self.status).unwrap_or(CheckStatus::Critical)
    }

    /// Whether this is a service or node maintenance check.
    pub fn is_maintenance(&self) -> bool {
        self.check_id.starts_with("_service_maintenance:") || self.check_id == "_node_maintenance"
    }
}

/// The node of a health entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthNode {
    /// `ID`.
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    /// `Node` (the name).
    #[serde(rename = "Node")]
    pub node: String,
    /// `Address`.
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
    /// `Datacenter`.
    #[serde(rename = "Datacenter", default, deserialize_with = "nullable")]
    pub datacenter: String,
    /// `Meta`.
    #[serde(rename = "Meta", default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
}

/// One `/v1/health/service/:name` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEntry {
    /// The node.
    #[serde(rename = "Node")]
    pub node: HealthNode,
    /// The service.
    #[serde(rename = "Service")]
    pub service: AgentService,
    /// Node and service checks.
    #[serde(rename = "Checks", default, deserialize_with = "nullable")]
    pub checks: Vec<HealthCheck>,
}

impl HealthEntry {
    /// The service address, or the node's when the service has none (as Consul's DNS
    /// and Prometheus do).
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// Whether service or node maintenance is on.
    pub fn in_maintenance(&self) -> bool {
        self.checks.iter().any(HealthCheck::is_maintenance)
    }

    /// The aggregated status: the worst of all checks (none means passing).
    pub fn aggregated_status(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(HealthCheck::status)
            .max()
            .unwrap_or(CheckStatus::Passing)
    }
}

/// One `/v1/catalog/service/:name` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    /// `Node`.
    #[serde(rename = "Node")]
    pub node: String,
    /// `Address` (the node's).
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
    /// `Datacenter`.
    #[serde(rename = "Datacenter", default, deserialize_with = "nullable")]
    pub datacenter: String,
    /// `ServiceID`.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// `ServiceName`.
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    /// `ServiceTags`.
    #[serde(rename = "ServiceTags", default, deserialize_with = "nullable")]
    pub service_tags: Vec<String>,
    /// `ServiceAddress` (may be empty).
    #[serde(rename = "ServiceAddress", default, deserialize_with = "nullable")]
    pub service_address: String,
    /// `ServicePort`.
    #[serde(rename = "ServicePort", default)]
    pub service_port: u16,
    /// `ServiceMeta`.
    #[serde(rename = "ServiceMeta", default, deserialize_with = "nullable")]
    pub service_meta: BTreeMap<String, String>,
    /// `CreateIndex`.
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
}

/// A check in a service registration. Durations are sent as Go duration strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRegistration {
    /// `CheckID`.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
    /// `Notes`.
    #[serde(rename = "Notes", skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// `TTL`, for a TTL check.
    #[serde(
        rename = "TTL",
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_duration"
    )]
    pub ttl: Option<Duration>,
    /// `HTTP`, for an HTTP check.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// `Interval`, for an HTTP check.
    #[serde(
        rename = "Interval",
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_duration"
    )]
    pub interval: Option<Duration>,
    /// `Timeout`, for an HTTP check.
    #[serde(
        rename = "Timeout",
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_duration"
    )]
    pub timeout: Option<Duration>,
    /// Initial `Status` (Consul: critical when absent).
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `DeregisterCriticalServiceAfter`.
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_duration"
    )]
    pub deregister_critical_after: Option<Duration>,
}

fn go_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_go_duration(*d)),
        None => s.serialize_none(),
    }
}

/// A `/v1/agent/service/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRegistration {
    /// `ID`.
    #[serde(rename = "ID")]
    pub id: String,
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
    /// `Tags`.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// `Address`.
    #[serde(rename = "Address")]
    pub address: String,
    /// `Port`.
    #[serde(rename = "Port")]
    pub port: u16,
    /// `Meta`.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// `Check`.
    #[serde(rename = "Check", skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckRegistration>,
}

/// The parts of `/v1/agent/self` the bridge reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentSelf {
    /// `Config`.
    #[serde(rename = "Config")]
    pub config: AgentSelfConfig,
}

/// `/v1/agent/self` `Config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentSelfConfig {
    /// `Datacenter`.
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    /// `NodeName`.
    #[serde(rename = "NodeName", default, deserialize_with = "nullable")]
    pub node_name: String,
}

impl ConsulClient {
    /// A client for the configured agents.
    pub fn new(config: ConsulConfig) -> Result<Self, ClientError> {
        let bases = config
            .addresses
            .iter()
            .map(|a| base_url(a, "/"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            http: http_client()?,
            endpoints: std::sync::Arc::new(Failover::new(bases)?),
            token: config.token.filter(|t| !t.is_empty()),
            datacenter: config.datacenter.filter(|d| !d.is_empty()),
        })
    }

    /// The configured datacenter, if any.
    pub fn datacenter(&self) -> Option<&str> {
        self.datacenter.as_deref()
    }

    /// The agent requests currently go to.
    pub fn current_address(&self) -> String {
        self.endpoints.current().to_string()
    }

    /// Every configured agent address.
    pub fn addresses(&self) -> Vec<String> {
        self.endpoints.bases().iter().map(Url::to_string).collect()
    }

    fn request(
        &self,
        method: &Method,
        base: &Url,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<RequestBuilder, ClientError> {
        let url = join(base, path)?;
        let mut request = self.http.request(method.clone(), url);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        Ok(request)
    }

    /// A write: 2xx is success, anything else an error.
    async fn put(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(), ClientError> {
        let (url, response) = self
            .endpoints
            .send(|base| {
                let request = self.request(&Method::PUT, base, path, query)?;
                Ok(match body {
                    Some(b) => request.json(b),
                    None => request,
                })
            })
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&url, response).await)
        }
    }

    /// A read with the index header.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&str, String)>,
        timeout: Duration,
    ) -> Result<Indexed<T>, ClientError> {
        let (url, response) = self
            .endpoints
            .send(|base| {
                Ok(self
                    .request(&Method::GET, base, path, &query)?
                    .timeout(timeout))
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(&url, response).await);
        }
        let index = response
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let body = json_body(&url, response).await?;
        let value = serde_json::from_value(body).map_err(|e| ClientError::Decode {
            endpoint: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Indexed { index, value })
    }

    fn read_query(&self, options: &QueryOptions) -> (Vec<(&'static str, String)>, Duration) {
        let mut query = Vec::new();
        if let Some(dc) = &self.datacenter {
            query.push(("dc", dc.clone()));
        }
        if let Some(filter) = &options.filter {
            query.push(("filter", filter.clone()));
        }
        let mut timeout = REQUEST_TIMEOUT;
        if let Some(index) = options.index {
            query.push(("index", index.to_string()));
            let wait = options.wait.unwrap_or(Duration::from_secs(5 * 60));
            query.push(("wait", format_go_duration(wait)));
            timeout = wait + wait / 16 + REQUEST_TIMEOUT;
        }
        (query, timeout)
    }

    /// `PUT /v1/agent/service/register[?replace-existing-checks=true]`.
    pub async fn register_service(
        &self,
        registration: &ServiceRegistration,
        replace_existing_checks: bool,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_value(registration)
            .map_err(|e| ClientError::Config(format!("cannot encode registration: {e}")))?;
        let query: Vec<(&str, String)> = if replace_existing_checks {
            vec![("replace-existing-checks", "true".to_owned())]
        } else {
            Vec::new()
        };
        self.put("v1/agent/service/register", &query, Some(&body))
            .await
    }

    /// `PUT /v1/agent/service/deregister/:id`. `Ok(false)` when the agent did not know the
    /// service (current Consul answers 404, older versions 200).
    pub async fn deregister_service(&self, service_id: &str) -> Result<bool, ClientError> {
        let path = format!("v1/agent/service/deregister/{}", encode_segment(service_id));
        match self.put(&path, &[], None).await {
            Ok(()) => Ok(true),
            Err(ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
    pub async fn set_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let path = format!(
            "v1/agent/service/maintenance/{}",
            encode_segment(service_id)
        );
        let mut query = vec![("enable", enable.to_string())];
        if let Some(reason) = reason {
            query.push(("reason", reason.to_owned()));
        }
        self.put(&path, &query, None).await
    }

    /// `PUT /v1/agent/check/{pass,warn,fail}/:id?note=`: sets a TTL check and restarts
    /// its timer. A non-TTL check gives Consul's 500 `does not have associated TTL`,
    /// reported as [`ClientError::NotFound`] (the caller re-registers, as Spring Cloud
    /// Consul does).
    pub async fn update_ttl(
        &self,
        check_id: &str,
        status: CheckStatus,
        note: Option<&str>,
    ) -> Result<(), ClientError> {
        let verb = match status {
            CheckStatus::Passing => "pass",
            CheckStatus::Warning => "warn",
            CheckStatus::Critical => "fail",
        };
        let path = format!("v1/agent/check/{verb}/{}", encode_segment(check_id));
        let query: Vec<(&str, String)> = note
            .map(|n| vec![("note", n.to_owned())])
            .unwrap_or_default();
        match self.put(&path, &query, None).await {
            Err(ClientError::Unavailable { reason, .. })
                if reason.contains("does not have associated TTL") =>
            {
                Err(ClientError::NotFound(reason))
            }
            other => other,
        }
    }

    /// `GET /v1/agent/services[?filter=]`: the agent's services by ID.
    pub async fn agent_services(
        &self,
        filter: Option<&str>,
    ) -> Result<BTreeMap<String, AgentService>, ClientError> {
        let query = filter
            .map(|f| vec![("filter", f.to_owned())])
            .unwrap_or_default();
        Ok(self
            .get("v1/agent/services", query, REQUEST_TIMEOUT)
            .await?
            .value)
    }

    /// `GET /v1/agent/checks`: the agent's checks by ID.
    pub async fn agent_checks(&self) -> Result<BTreeMap<String, HealthCheck>, ClientError> {
        Ok(self
            .get("v1/agent/checks", Vec::new(), REQUEST_TIMEOUT)
            .await?
            .value)
    }

    /// `GET /v1/agent/self`.
    pub async fn agent_self(&self) -> Result<AgentSelf, ClientError> {
        Ok(self
            .get("v1/agent/self", Vec::new(), REQUEST_TIMEOUT)
            .await?
            .value)
    }

    /// `GET /v1/catalog/services`: service name → tags.
    pub async fn catalog_services(
        &self,
        options: &QueryOptions,
    ) -> Result<Indexed<BTreeMap<String, Vec<String>>>, ClientError> {
        let (query, timeout) = self.read_query(options);
        let raw: Indexed<BTreeMap<String, Option<Vec<String>>>> =
            self.get("v1/catalog/services", query, timeout).await?;
        Ok(Indexed {
            index: raw.index,
            value: raw
                .value
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        })
    }

    /// `GET /v1/catalog/service/:name`.
    pub async fn catalog_service(
        &self,
        name: &str,
        options: &QueryOptions,
    ) -> Result<Indexed<Vec<CatalogService>>, ClientError> {
        let (query, timeout) = self.read_query(options);
        let path = format!("v1/catalog/service/{}", encode_segment(name));
        let raw: Indexed<Option<Vec<CatalogService>>> = self.get(&path, query, timeout).await?;
        Ok(Indexed {
            index: raw.index,
            value: raw.value.unwrap_or_default(),
        })
    }

    /// `GET /v1/health/service/:name[?passing]`.
    pub async fn health_service(
        &self,
        name: &str,
        passing_only: bool,
        options: &QueryOptions,
    ) -> Result<Indexed<Vec<HealthEntry>>, ClientError> {
        let (mut query, timeout) = self.read_query(options);
        if passing_only {
            query.push(("passing", "true".to_owned()));
        }
        let path = format!("v1/health/service/{}", encode_segment(name));
        let raw: Indexed<Option<Vec<HealthEntry>>> = self.get(&path, query, timeout).await?;
        Ok(Indexed {
            index: raw.index,
            value: raw.value.unwrap_or_default(),
        })
    }
}

/// The index to send on the next blocking read, following Consul's client rules: reset
/// to 0 when the index went backwards, and never send 0 after a successful read.
pub fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous {
        0
    } else {
        returned.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_encodes_pascal_case_and_go_durations() {
        let reg = ServiceRegistration {
            id: "web-1".into(),
            name: "web".into(),
            tags: vec!["lane=canary".into()],
            address: "10.0.0.1".into(),
            port: 8080,
            meta: BTreeMap::from([("lane".to_owned(), "canary".to_owned())]),
            check: Some(CheckRegistration {
                check_id: "tideway-ttl:web-1".into(),
                name: "Tideway readiness".into(),
                notes: String::new(),
                ttl: Some(Duration::from_secs(90)),
                http: None,
                interval: None,
                timeout: None,
                status: Some("passing".into()),
                deregister_critical_after: Some(Duration::from_secs(600)),
            }),
        };
        let v = serde_json::to_value(&reg).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ID": "web-1", "Name": "web", "Tags": ["lane=canary"], "Address": "10.0.0.1",
                "Port": 8080, "Meta": {"lane": "canary"},
                "Check": {"CheckID": "tideway-ttl:web-1", "Name": "Tideway readiness",
                          "TTL": "1m30s", "Status": "passing",
                          "DeregisterCriticalServiceAfter": "10m0s"}
            })
        );
    }

    #[test]
    fn the_token_is_not_printed_or_serialized() {
        let config = ConsulConfig {
            addresses: vec!["127.0.0.1:8500".into()],
            token: Some("hunter2".into()),
            datacenter: None,
        };
        let client = ConsulClient::new(config.clone()).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{client:?}"),
            serde_json::to_string(&config).unwrap(),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn index_rules() {
        assert_eq!(next_index(10, 12), 12);
        assert_eq!(next_index(10, 3), 0);
        assert_eq!(next_index(0, 0), 1);
    }
}
