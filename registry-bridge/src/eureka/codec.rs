//! Eureka wire formats: lenient decoding of registrations (JSON as the Jackson codec,
//! eureka-js-client and py-eureka-client write it, or XML) and strict encoding of
//! instances and applications in JSON and XML (`EurekaJacksonCodec`, `Converters`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::model::{
    DataCenter, EurekaApp, EurekaApps, EurekaInstanceView, EurekaRegistration, EurekaStatus,
    DEFAULT_DATA_CENTER_CLASS,
};
use crate::text::{is_xml_name, parse_xml, xml_escape, XmlElement};

/// The Jackson marker Eureka writes for empty metadata.
const EMPTY_MAP_CLASS: &str = "java.util.Collections$EmptyMap";

// ---------------------------------------------------------------------------------------
// Decoding.

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn u64_of(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_of(v: Option<&Value>) -> Option<bool> {
    match v {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        Some(Value::Number(n)) => n.as_u64().map(|n| n != 0),
        _ => None,
    }
}

/// `{"$":8080,"@enabled":"true"}`, `{"$":"8080","@enabled":true}` or a bare `8080`.
fn port_of(v: Option<&Value>, default_port: u16, default_enabled: bool) -> (u16, bool) {
    match v {
        Some(Value::Object(o)) => {
            let port = u64_of(o.get("$"))
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(default_port);
            let enabled = bool_of(o.get("@enabled")).unwrap_or(default_enabled);
            (port, enabled)
        }
        other => (
            u64_of(other)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(default_port),
            default_enabled,
        ),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(o)) => o
            .iter()
            .filter(|(k, _)| k.as_str() != "@class")
            .map(|(k, v)| (k.clone(), text_of(Some(v))))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Decodes an `{"instance":{…}}` document (or a bare instance object).
pub(crate) fn decode_registration_json(doc: &Value) -> Result<EurekaRegistration, String> {
    let instance = match doc.get("instance") {
        Some(Value::Object(o)) => o,
        Some(_) => return Err("instance is not an object".into()),
        None => match doc {
            Value::Object(o) if o.contains_key("app") || o.contains_key("hostName") => o,
            _ => return Err("missing instance".into()),
        },
    };
    Ok(decode_instance(instance))
}

fn decode_instance(o: &Map<String, Value>) -> EurekaRegistration {
    let (port, port_enabled) = port_of(o.get("port"), 7001, true);
    let (secure_port, secure_port_enabled) = port_of(o.get("securePort"), 7002, false);
    let data_center = match o.get("dataCenterInfo") {
        Some(Value::Object(dc)) => Some(DataCenter {
            class: Some(text_of(dc.get("@class")))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| DEFAULT_DATA_CENTER_CLASS.to_owned()),
            name: text_of(dc.get("name")),
            metadata: string_map(dc.get("metadata")),
        }),
        _ => None,
    };
    let lease = o.get("leaseInfo").and_then(Value::as_object);
    let overridden = o
        .get("overriddenStatus")
        .or_else(|| o.get("overriddenstatus"));
    EurekaRegistration {
        instance_id: text_of(o.get("instanceId")),
        app: text_of(o.get("app")),
        host_name: text_of(o.get("hostName")),
        ip_addr: text_of(o.get("ipAddr")),
        status: EurekaStatus::parse(&text_of(o.get("status"))),
        overridden_status: EurekaStatus::parse(&text_of(overridden)),
        port,
        port_enabled,
        secure_port,
        secure_port_enabled,
        country_id: u64_of(o.get("countryId")).unwrap_or(1),
        data_center,
        renewal_interval_secs: lease
            .and_then(|l| u64_of(l.get("renewalIntervalInSecs")))
            .unwrap_or(0),
        duration_secs: lease
            .and_then(|l| u64_of(l.get("durationInSecs")))
            .unwrap_or(0),
        metadata: string_map(o.get("metadata")),
        home_page_url: text_of(o.get("homePageUrl")),
        status_page_url: text_of(o.get("statusPageUrl")),
        health_check_url: text_of(o.get("healthCheckUrl")),
        secure_health_check_url: text_of(o.get("secureHealthCheckUrl")),
        vip_address: text_of(o.get("vipAddress")),
        secure_vip_address: text_of(o.get("secureVipAddress")),
        coordinating: bool_of(o.get("isCoordinatingDiscoveryServer")).unwrap_or(false),
        last_dirty: u64_of(o.get("lastDirtyTimestamp")).unwrap_or(0),
        app_group_name: text_of(o.get("appGroupName")),
        asg_name: text_of(o.get("asgName")),
        sid: text_of(o.get("sid")),
    }
}

/// Converts an XML element to the JSON shape Eureka's Jackson codec uses: attributes
/// become `@name`, the text of an element with attributes becomes `$`.
fn xml_to_json(el: &XmlElement) -> Value {
    if el.children.is_empty() && el.attributes.is_empty() {
        return Value::String(el.text.trim().to_owned());
    }
    let mut o = Map::new();
    for (k, v) in &el.attributes {
        o.insert(format!("@{k}"), Value::String(v.clone()));
    }
    if el.children.is_empty() {
        o.insert("$".into(), Value::String(el.text.trim().to_owned()));
    }
    for child in &el.children {
        o.insert(child.name.clone(), xml_to_json(child));
    }
    Value::Object(o)
}

/// Decodes an `<instance>` document.
pub(crate) fn decode_registration_xml(body: &str) -> Result<EurekaRegistration, String> {
    let root = parse_xml(body)?;
    if root.name != "instance" {
        return Err(format!("expected <instance>, found <{}>", root.name));
    }
    match xml_to_json(&root) {
        Value::Object(o) => Ok(decode_instance(&o)),
        _ => Err("empty instance".into()),
    }
}

// ---------------------------------------------------------------------------------------
// JSON encoding.

fn metadata_json(m: &BTreeMap<String, String>) -> Value {
    if m.is_empty() {
        return json!({ "@class": EMPTY_MAP_CLASS });
    }
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

pub(crate) fn instance_json(v: &EurekaInstanceView) -> Value {
    let mut dc = json!({ "@class": v.data_center.class, "name": v.data_center.name });
    if !v.data_center.metadata.is_empty() {
        dc["metadata"] = metadata_json(&v.data_center.metadata);
    }
    let mut o = json!({
        "instanceId": v.instance_id,
        "hostName": v.host_name,
        "app": v.app,
        "ipAddr": v.ip_addr,
        "status": v.status.as_str(),
        "overriddenStatus": v.overridden_status.as_str(),
        "port": { "$": v.port, "@enabled": v.port_enabled.to_string() },
        "securePort": { "$": v.secure_port, "@enabled": v.secure_port_enabled.to_string() },
        "countryId": v.country_id,
        "dataCenterInfo": dc,
        "leaseInfo": {
            "renewalIntervalInSecs": v.renewal_interval_secs,
            "durationInSecs": v.duration_secs,
            "registrationTimestamp": v.registration_timestamp,
            "lastRenewalTimestamp": v.last_renewal_timestamp,
            "evictionTimestamp": v.eviction_timestamp,
            "serviceUpTimestamp": v.service_up_timestamp,
        },
        "metadata": metadata_json(&v.metadata),
        "homePageUrl": v.home_page_url,
        "statusPageUrl": v.status_page_url,
        "healthCheckUrl": v.health_check_url,
        "vipAddress": v.vip_address,
        "secureVipAddress": v.secure_vip_address,
        "isCoordinatingDiscoveryServer": v.coordinating.to_string(),
        "lastUpdatedTimestamp": v.last_updated_timestamp.to_string(),
        "lastDirtyTimestamp": v.last_dirty_timestamp.to_string(),
        "actionType": v.action_type.as_str(),
    });
    if !v.secure_health_check_url.is_empty() {
        o["secureHealthCheckUrl"] = json!(v.secure_health_check_url);
    }
    for (key, value) in [
        ("appGroupName", &v.app_group_name),
        ("asgName", &v.asg_name),
        ("sid", &v.sid),
    ] {
        if let Some(value) = value {
            o[key] = json!(value);
        }
    }
    o
}

fn app_json(app: &EurekaApp) -> Value {
    json!({
        "name": app.name,
        "instance": app.instances.iter().map(instance_json).collect::<Vec<_>>(),
    })
}

pub(crate) fn apps_json(apps: &EurekaApps) -> Value {
    json!({ "applications": {
        "versions__delta": apps.version.to_string(),
        "apps__hashcode": apps.hashcode,
        "application": apps.apps.iter().map(app_json).collect::<Vec<_>>(),
    }})
}

pub(crate) fn app_doc_json(app: &EurekaApp) -> Value {
    json!({ "application": app_json(app) })
}

pub(crate) fn instance_doc_json(v: &EurekaInstanceView) -> Value {
    json!({ "instance": instance_json(v) })
}

// ---------------------------------------------------------------------------------------
// XML encoding.

fn tag(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&xml_escape(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn metadata_xml(out: &mut String, name: &str, m: &BTreeMap<String, String>) {
    let valid: Vec<_> = m.iter().filter(|(k, _)| is_xml_name(k)).collect();
    if valid.is_empty() {
        out.push_str(&format!("<{name} class=\"{EMPTY_MAP_CLASS}\"/>"));
        return;
    }
    out.push_str(&format!("<{name}>"));
    for (k, v) in valid {
        tag(out, k, v);
    }
    out.push_str(&format!("</{name}>"));
}

fn instance_xml(out: &mut String, v: &EurekaInstanceView) {
    out.push_str("<instance>");
    tag(out, "instanceId", &v.instance_id);
    tag(out, "hostName", &v.host_name);
    tag(out, "app", &v.app);
    tag(out, "ipAddr", &v.ip_addr);
    tag(out, "status", v.status.as_str());
    tag(out, "overriddenstatus", v.overridden_status.as_str());
    out.push_str(&format!(
        "<port enabled=\"{}\">{}</port>",
        v.port_enabled, v.port
    ));
    out.push_str(&format!(
        "<securePort enabled=\"{}\">{}</securePort>",
        v.secure_port_enabled, v.secure_port
    ));
    tag(out, "countryId", &v.country_id.to_string());
    out.push_str(&format!(
        "<dataCenterInfo class=\"{}\">",
        xml_escape(&v.data_center.class)
    ));
    tag(out, "name", &v.data_center.name);
    if !v.data_center.metadata.is_empty() {
        metadata_xml(out, "metadata", &v.data_center.metadata);
    }
    out.push_str("</dataCenterInfo>");
    out.push_str("<leaseInfo>");
    tag(
        out,
        "renewalIntervalInSecs",
        &v.renewal_interval_secs.to_string(),
    );
    tag(out, "durationInSecs", &v.duration_secs.to_string());
    tag(
        out,
        "registrationTimestamp",
        &v.registration_timestamp.to_string(),
    );
    tag(
        out,
        "lastRenewalTimestamp",
        &v.last_renewal_timestamp.to_string(),
    );
    tag(out, "evictionTimestamp", &v.eviction_timestamp.to_string());
    tag(
        out,
        "serviceUpTimestamp",
        &v.service_up_timestamp.to_string(),
    );
    out.push_str("</leaseInfo>");
    metadata_xml(out, "metadata", &v.metadata);
    tag(out, "homePageUrl", &v.home_page_url);
    tag(out, "statusPageUrl", &v.status_page_url);
    tag(out, "healthCheckUrl", &v.health_check_url);
    if !v.secure_health_check_url.is_empty() {
        tag(out, "secureHealthCheckUrl", &v.secure_health_check_url);
    }
    tag(out, "vipAddress", &v.vip_address);
    tag(out, "secureVipAddress", &v.secure_vip_address);
    tag(
        out,
        "isCoordinatingDiscoveryServer",
        &v.coordinating.to_string(),
    );
    tag(
        out,
        "lastUpdatedTimestamp",
        &v.last_updated_timestamp.to_string(),
    );
    tag(
        out,
        "lastDirtyTimestamp",
        &v.last_dirty_timestamp.to_string(),
    );
    tag(out, "actionType", v.action_type.as_str());
    for (key, value) in [
        ("appGroupName", &v.app_group_name),
        ("asgName", &v.asg_name),
        ("sid", &v.sid),
    ] {
        if let Some(value) = value {
            tag(out, key, value);
        }
    }
    out.push_str("</instance>");
}

fn app_xml(out: &mut String, app: &EurekaApp) {
    out.push_str("<application>");
    tag(out, "name", &app.name);
    for v in &app.instances {
        instance_xml(out, v);
    }
    out.push_str("</application>");
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>";

pub(crate) fn apps_xml(apps: &EurekaApps) -> String {
    let mut out = String::from(XML_DECL);
    out.push_str("<applications>");
    tag(&mut out, "versions__delta", &apps.version.to_string());
    tag(&mut out, "apps__hashcode", &apps.hashcode);
    for app in &apps.apps {
        app_xml(&mut out, app);
    }
    out.push_str("</applications>");
    out
}

pub(crate) fn app_doc_xml(app: &EurekaApp) -> String {
    let mut out = String::from(XML_DECL);
    app_xml(&mut out, app);
    out
}

pub(crate) fn instance_doc_xml(v: &EurekaInstanceView) -> String {
    let mut out = String::from(XML_DECL);
    instance_xml(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::ChangeAction;

    #[test]
    fn decodes_lenient_json() {
        // eureka-js-client README style: bare port, boolean @enabled, no @class.
        let doc = json!({"instance": {
            "app": "order", "hostName": "h1", "ipAddr": "10.0.0.5", "port": 8080,
            "securePort": {"$": "443", "@enabled": true},
            "vipAddress": "order", "dataCenterInfo": {"name": "MyOwn"},
            "metadata": {"@class": "java.util.Collections$EmptyMap"},
            "overriddenstatus": "UNKNOWN", "lastDirtyTimestamp": "1700000000000",
            "countryId": "2", "isCoordinatingDiscoveryServer": "false",
        }});
        let r = decode_registration_json(&doc).unwrap();
        assert_eq!((r.port, r.port_enabled), (8080, true));
        assert_eq!((r.secure_port, r.secure_port_enabled), (443, true));
        assert_eq!(r.data_center.unwrap().class, DEFAULT_DATA_CENTER_CLASS);
        assert!(r.metadata.is_empty());
        assert_eq!(r.overridden_status, Some(EurekaStatus::Unknown));
        assert_eq!(r.last_dirty, 1_700_000_000_000);
        assert_eq!(r.country_id, 2);
        assert_eq!(r.status, None);
    }

    #[test]
    fn decodes_xml_registration() {
        let body = r#"<instance><instanceId>i-1</instanceId><hostName>h</hostName><app>ORDER</app>
            <ipAddr>10.0.0.5</ipAddr><status>UP</status><port enabled="true">8080</port>
            <securePort enabled="false">443</securePort>
            <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
            <leaseInfo><durationInSecs>30</durationInSecs></leaseInfo>
            <metadata><lane>canary</lane></metadata></instance>"#;
        let r = decode_registration_xml(body).unwrap();
        assert_eq!(r.instance_id, "i-1");
        assert_eq!((r.port, r.port_enabled), (8080, true));
        assert_eq!(r.duration_secs, 30);
        assert_eq!(r.metadata.get("lane").map(String::as_str), Some("canary"));
        assert_eq!(r.data_center.unwrap().name, "MyOwn");
    }

    fn sample_view() -> EurekaInstanceView {
        EurekaInstanceView {
            instance_id: "10.0.0.5:order:8080".into(),
            host_name: "10.0.0.5".into(),
            app: "ORDER".into(),
            ip_addr: "10.0.0.5".into(),
            status: EurekaStatus::Up,
            overridden_status: EurekaStatus::Unknown,
            port: 8080,
            port_enabled: true,
            secure_port: 443,
            secure_port_enabled: false,
            country_id: 1,
            data_center: DataCenter::default(),
            renewal_interval_secs: 30,
            duration_secs: 90,
            registration_timestamp: 1,
            last_renewal_timestamp: 2,
            eviction_timestamp: 0,
            service_up_timestamp: 1,
            metadata: BTreeMap::from([
                ("lane".into(), "canary".into()),
                ("a/b".into(), "x".into()),
            ]),
            home_page_url: "http://10.0.0.5:8080/".into(),
            status_page_url: String::new(),
            health_check_url: String::new(),
            secure_health_check_url: String::new(),
            vip_address: "order".into(),
            secure_vip_address: "order".into(),
            coordinating: false,
            last_updated_timestamp: 3,
            last_dirty_timestamp: 4,
            action_type: ChangeAction::Added,
            app_group_name: None,
            asg_name: None,
            sid: None,
        }
    }

    #[test]
    fn encodes_json_like_jackson() {
        let apps = EurekaApps {
            version: 1,
            hashcode: "UP_1_".into(),
            apps: vec![EurekaApp {
                name: "ORDER".into(),
                instances: vec![sample_view()],
            }],
        };
        let v = apps_json(&apps);
        let inst = &v["applications"]["application"][0]["instance"][0];
        assert_eq!(v["applications"]["versions__delta"], "1");
        assert_eq!(v["applications"]["apps__hashcode"], "UP_1_");
        assert_eq!(inst["port"], json!({"$": 8080, "@enabled": "true"}));
        assert_eq!(inst["dataCenterInfo"]["@class"], DEFAULT_DATA_CENTER_CLASS);
        assert_eq!(inst["lastDirtyTimestamp"], "4");
        assert_eq!(inst["leaseInfo"]["durationInSecs"], 90);
        assert_eq!(inst["isCoordinatingDiscoveryServer"], "false");
        let mut empty = sample_view();
        empty.metadata.clear();
        assert_eq!(
            instance_json(&empty)["metadata"],
            json!({"@class": EMPTY_MAP_CLASS})
        );
    }

    #[test]
    fn encodes_xml_that_parses_back() {
        let apps = EurekaApps {
            version: 7,
            hashcode: "UP_1_".into(),
            apps: vec![EurekaApp {
                name: "ORDER".into(),
                instances: vec![sample_view()],
            }],
        };
        let xml = apps_xml(&apps);
        let root = parse_xml(&xml).unwrap();
        assert_eq!(root.name, "applications");
        let inst = &root.children[2].children[1];
        let port = inst.children.iter().find(|c| c.name == "port").unwrap();
        assert_eq!(port.attributes, vec![("enabled".into(), "true".into())]);
        let meta = inst.children.iter().find(|c| c.name == "metadata").unwrap();
        // Keys that are not XML names are left out of XML.
        assert_eq!(meta.children.len(), 1);
        let mut empty = sample_view();
        empty.metadata.clear();
        assert!(instance_doc_xml(&empty)
            .contains("<metadata class=\"java.util.Collections$EmptyMap\"/>"));
    }
}
