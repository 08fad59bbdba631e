//! Consul wire formats. Decoding follows Go's `encoding/json` as Consul uses it: field
//! names match case-insensitively, and Consul's snake_case aliases are accepted (we fold
//! both by lower-casing and dropping `_`). Durations are Go strings or nanoseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::model::{
    CheckDefinition, CheckKind, CheckStatus, CheckView, ConsulEntry, ConsulServiceView,
    RegistryConfig, ServiceDefinition, Weights,
};
use crate::text::{format_go_duration, parse_go_duration};

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A JSON object whose fields are looked up the way Consul's decoder matches them.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        let wanted = fold(name);
        self.0
            .iter()
            .find(|(k, _)| fold(k) == wanted)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name}: expected a string, got {other}")),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("{name}: expected a bool, got {other}")),
        }
    }

    fn duration(&self, name: &str) -> Result<Option<Duration>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_go_duration(s)
                .map(Some)
                .ok_or_else(|| format!("{name}: invalid duration {s:?}")),
            Some(Value::Number(n)) => Ok(n.as_u64().map(Duration::from_nanos)),
            Some(other) => Err(format!("{name}: expected a duration, got {other}")),
        }
    }
}

fn string_list(v: Option<&Value>, name: &str) -> Result<Vec<String>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{name}: expected strings"))
            })
            .collect(),
        Some(other) => Err(format!("{name}: expected a list, got {other}")),
    }
}

fn string_map(v: Option<&Value>, name: &str) -> Result<BTreeMap<String, String>, String> {
    match v {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("{name}.{k}: expected a string, got {other}")),
            })
            .collect(),
        Some(other) => Err(format!("{name}: expected an object, got {other}")),
    }
}

/// Kinds of check Consul has that the built-in registry cannot run.
const UNSUPPORTED_CHECKS: &[&str] = &[
    "Args",
    "ScriptArgs",
    "Script",
    "GRPC",
    "DockerContainerID",
    "H2PING",
    "UDP",
    "AliasNode",
    "AliasService",
    "OSService",
];

/// Decodes one check definition (`Check`, an element of `Checks`, or a
/// `/v1/agent/check/register` body).
pub(crate) fn decode_check(v: &Value) -> Result<CheckDefinition, String> {
    let Value::Object(o) = v else {
        return Err("check: expected an object".into());
    };
    let f = Fields(o);
    for kind in UNSUPPORTED_CHECKS {
        if f.get(kind).is_some() {
            return Err(format!(
                "Invalid check: {kind} checks are not supported by the built-in registry (use HTTP, TCP or TTL)"
            ));
        }
    }
    let interval = f.duration("Interval")?;
    let kind = if let Some(url) = f.string("HTTP")?.filter(|s| !s.is_empty()) {
        let headers = match f.get("Header") {
            None => BTreeMap::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| {
                    let values = match v {
                        Value::String(s) => vec![s.clone()],
                        other => string_list(Some(other), "Header")?,
                    };
                    Ok((k.clone(), values))
                })
                .collect::<Result<_, String>>()?,
            Some(other) => return Err(format!("Header: expected an object, got {other}")),
        };
        CheckKind::Http {
            url,
            method: f
                .string("Method")?
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "GET".into()),
            headers,
            body: f.string("Body")?,
            tls_skip_verify: f.bool("TLSSkipVerify")?,
        }
    } else if let Some(address) = f.string("TCP")?.filter(|s| !s.is_empty()) {
        CheckKind::Tcp { address }
    } else if let Some(ttl) = f.duration("TTL")? {
        if ttl.is_zero() {
            return Err("Invalid check: TTL must be > 0 for TTL checks".into());
        }
        CheckKind::Ttl { ttl }
    } else {
        return Err("Invalid check: TTL must be > 0 for TTL checks".into());
    };
    if !matches!(kind, CheckKind::Ttl { .. }) && interval.is_none_or(|i| i.is_zero()) {
        return Err(
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
                .into(),
        );
    }
    let status = match f.string("Status")? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => {
            Some(CheckStatus::parse(&s).ok_or_else(|| format!("Invalid check status: {s:?}"))?)
        }
    };
    Ok(CheckDefinition {
        id: f.string("CheckID")?.or(f.string("ID")?),
        name: f.string("Name")?,
        service_id: f.string("ServiceID")?,
        notes: f.string("Notes")?.unwrap_or_default(),
        status,
        kind,
        interval,
        timeout: f.duration("Timeout")?,
        deregister_critical_after: f.duration("DeregisterCriticalServiceAfter")?,
    })
}

fn tagged_addresses(v: Option<&Value>) -> Result<BTreeMap<String, (String, u16)>, String> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(o) = v else {
        return Err(format!("TaggedAddresses: expected an object, got {v}"));
    };
    o.iter()
        .map(|(name, value)| match value {
            Value::String(address) => Ok((name.clone(), (address.clone(), 0))),
            Value::Object(a) => {
                let f = Fields(a);
                let address = f.string("Address")?.unwrap_or_default();
                let port = f
                    .get("Port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0);
                Ok((name.clone(), (address, port)))
            }
            other => Err(format!("TaggedAddresses.{name}: unexpected {other}")),
        })
        .collect()
}

/// Decodes a `/v1/agent/service/register` body.
pub(crate) fn decode_service(v: &Value) -> Result<ServiceDefinition, String> {
    let Value::Object(o) = v else {
        return Err("expected a JSON object".into());
    };
    let f = Fields(o);
    let port = match f.get("Port") {
        None => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("Port: invalid port {n}"))?,
        Some(other) => return Err(format!("Port: expected a number, got {other}")),
    };
    let mut checks = Vec::new();
    if let Some(check) = f.get("Check") {
        checks.push(decode_check(check)?);
    }
    match f.get("Checks") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                checks.push(decode_check(item)?);
            }
        }
        Some(other) => return Err(format!("Checks: expected a list, got {other}")),
    }
    let weights = match f.get("Weights") {
        Some(Value::Object(w)) => {
            let w = Fields(w);
            let number = |name: &str| {
                w.get(name)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
            };
            Some(Weights {
                passing: number("Passing").unwrap_or(1),
                warning: number("Warning").unwrap_or(1),
            })
        }
        _ => None,
    };
    Ok(ServiceDefinition {
        id: f.string("ID")?,
        name: f.string("Name")?.unwrap_or_default(),
        tags: string_list(f.get("Tags"), "Tags")?,
        address: f.string("Address")?.unwrap_or_default(),
        port,
        meta: string_map(f.get("Meta"), "Meta")?,
        checks,
        weights,
        enable_tag_override: f.bool("EnableTagOverride")?,
        tagged_addresses: tagged_addresses(f.get("TaggedAddresses"))?,
        kind: f.string("Kind")?.unwrap_or_default(),
    })
}

/// Decodes a `/v1/agent/check/update/:id` body: (status, output).
pub(crate) fn decode_check_update(v: &Value) -> Result<(CheckStatus, String), String> {
    let Value::Object(o) = v else {
        return Err("expected a JSON object".into());
    };
    let f = Fields(o);
    let status = f.string("Status")?.unwrap_or_default();
    let status =
        CheckStatus::parse(&status).ok_or_else(|| format!("Invalid check status: {status:?}"))?;
    Ok((status, f.string("Output")?.unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------
// Encoding.

fn weights_json(w: Weights) -> Value {
    json!({ "Passing": w.passing, "Warning": w.warning })
}

fn tagged_json(t: &BTreeMap<String, (String, u16)>) -> Value {
    Value::Object(
        t.iter()
            .map(|(k, (address, port))| (k.clone(), json!({ "Address": address, "Port": port })))
            .collect(),
    )
}

fn meta_json(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// A stable, UUID-shaped node ID derived from the node name.
pub(crate) fn node_id(config: &RegistryConfig) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in config.node_name.bytes() {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let hex = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `GET /v1/agent/services` entry.
pub(crate) fn agent_service_json(s: &ConsulServiceView, config: &RegistryConfig) -> Value {
    let mut o = json!({
        "ID": s.id,
        "Service": s.service,
        "Tags": s.tags,
        "Meta": meta_json(&s.meta),
        "Port": s.port,
        "Address": s.address,
        "Weights": weights_json(s.weights),
        "EnableTagOverride": s.enable_tag_override,
        "Datacenter": config.datacenter,
    });
    if !s.tagged_addresses.is_empty() {
        o["TaggedAddresses"] = tagged_json(&s.tagged_addresses);
    }
    if !s.kind.is_empty() {
        o["Kind"] = json!(s.kind);
    }
    o
}

/// A check (`/v1/agent/checks`, `/v1/health/*`).
pub(crate) fn check_json(c: &CheckView, config: &RegistryConfig) -> Value {
    json!({
        "Node": config.node_name,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status.as_str(),
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": c.service_tags,
        "Type": c.check_type,
        "Interval": c.interval.map(format_go_duration).unwrap_or_default(),
        "Timeout": c.timeout.map(format_go_duration).unwrap_or_default(),
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// The node's `serfHealth` check, always passing.
pub(crate) fn serf_check(index: u64) -> CheckView {
    CheckView {
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: CheckStatus::Passing,
        notes: String::new(),
        output: "Agent alive and reachable".into(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: String::new(),
        interval: None,
        timeout: None,
        create_index: index,
        modify_index: index,
    }
}

fn node_tagged(config: &RegistryConfig) -> Value {
    json!({
        "lan": config.node_address,
        "lan_ipv4": config.node_address,
        "wan": config.node_address,
        "wan_ipv4": config.node_address,
    })
}

/// The registry's one node, as `/v1/catalog/nodes` and health entries show it.
pub(crate) fn node_json(config: &RegistryConfig) -> Value {
    json!({
        "ID": node_id(config),
        "Node": config.node_name,
        "Address": config.node_address,
        "Datacenter": config.datacenter,
        "TaggedAddresses": node_tagged(config),
        "Meta": { "consul-network-segment": "" },
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })
}

/// `GET /v1/health/service/:name` entry.
pub(crate) fn health_entry_json(
    e: &ConsulEntry,
    serf: &CheckView,
    config: &RegistryConfig,
) -> Value {
    let s = &e.service;
    let mut service = json!({
        "ID": s.id,
        "Service": s.service,
        "Tags": s.tags,
        "Address": s.address,
        "Meta": meta_json(&s.meta),
        "Port": s.port,
        "Weights": weights_json(s.weights),
        "EnableTagOverride": s.enable_tag_override,
        "Datacenter": config.datacenter,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    });
    if !s.tagged_addresses.is_empty() {
        service["TaggedAddresses"] = tagged_json(&s.tagged_addresses);
    }
    if !s.kind.is_empty() {
        service["Kind"] = json!(s.kind);
    }
    let checks: Vec<Value> = std::iter::once(serf)
        .chain(e.checks.iter())
        .map(|c| check_json(c, config))
        .collect();
    json!({ "Node": node_json(config), "Service": service, "Checks": checks })
}

/// `GET /v1/catalog/service/:name` entry.
pub(crate) fn catalog_entry_json(s: &ConsulServiceView, config: &RegistryConfig) -> Value {
    json!({
        "ID": node_id(config),
        "Node": config.node_name,
        "Address": config.node_address,
        "Datacenter": config.datacenter,
        "TaggedAddresses": node_tagged(config),
        "NodeMeta": { "consul-network-segment": "" },
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.service,
        "ServiceTags": s.tags,
        "ServiceAddress": s.address,
        "ServiceTaggedAddresses": tagged_json(&s.tagged_addresses),
        "ServiceWeights": weights_json(s.weights),
        "ServiceMeta": meta_json(&s.meta),
        "ServicePort": s.port,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": { "MeshGateway": {}, "Expose": {} },
        "ServiceConnect": {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_py_consul_lower_case_body() {
        let body = json!({
            "name": "web", "id": "web-1", "address": "127.0.0.1", "port": 8080,
            "tags": ["a"], "meta": {"lane": "canary"},
            "checks": [
                {"http": "http://127.0.0.1:1/health", "interval": "1s", "timeout": "500ms",
                 "DeregisterCriticalServiceAfter": "1m"},
                {"tcp": "127.0.0.1:1", "interval": "2s"},
                {"ttl": "10s"}
            ],
            "enabletagoverride": true
        });
        let d = decode_service(&body).unwrap();
        assert_eq!(d.name, "web");
        assert_eq!(d.id.as_deref(), Some("web-1"));
        assert!(d.enable_tag_override);
        assert_eq!(d.checks.len(), 3);
        assert_eq!(d.checks[0].interval, Some(Duration::from_secs(1)));
        assert_eq!(
            d.checks[0].deregister_critical_after,
            Some(Duration::from_secs(60))
        );
        assert!(matches!(d.checks[1].kind, CheckKind::Tcp { .. }));
        assert_eq!(
            d.checks[2].kind,
            CheckKind::Ttl {
                ttl: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn decodes_pascal_and_snake_case() {
        let body = json!({"Name": "db", "Check": {"CheckID": "db-ttl", "TTL": "5s", "Status": "passing",
            "deregister_critical_service_after": "90m"}, "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 5}}});
        let d = decode_service(&body).unwrap();
        assert_eq!(d.checks[0].id.as_deref(), Some("db-ttl"));
        assert_eq!(d.checks[0].status, Some(CheckStatus::Passing));
        assert_eq!(
            d.checks[0].deregister_critical_after,
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            d.tagged_addresses.get("lan"),
            Some(&("10.0.0.1".to_owned(), 5))
        );
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let grpc = json!({"Name": "x", "Check": {"GRPC": "127.0.0.1:1", "Interval": "1s"}});
        assert!(decode_service(&grpc).unwrap_err().contains("GRPC"));
        let no_interval = json!({"Name": "x", "Check": {"HTTP": "http://x"}});
        assert!(decode_service(&no_interval)
            .unwrap_err()
            .contains("Interval"));
        let nothing = json!({"Name": "x", "Check": {}});
        assert!(decode_service(&nothing).unwrap_err().contains("TTL"));
        let bad_status = json!({"Status": "green"});
        assert!(decode_check_update(&bad_status).is_err());
    }
}
