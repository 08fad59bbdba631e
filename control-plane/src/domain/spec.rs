//! Validation of app and version specs: the rules a body must meet beyond its JSON shape.

use tideway_api_types::{HealthCheck, Labels, Resources, VersionCreate};

use super::{ensure, Invalid};

pub const MAX_REPLICAS: u32 = 1000;
const MAX_LABELS: usize = 64;
const MAX_DESCRIPTION: usize = 1024;
const MAX_COMMAND: usize = 4096;
const MAX_ENV: usize = 256;
const MAX_ENV_VALUE: usize = 32 * 1024;

pub fn validate_labels(labels: &Labels) -> Result<(), Invalid> {
    ensure(
        labels.len() <= MAX_LABELS,
        "labels",
        format!("at most {MAX_LABELS} labels"),
    )?;
    for (k, v) in labels {
        let field = format!("labels.{k}");
        ensure(
            !k.is_empty()
                && k.len() <= 253
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)),
            &field,
            "keys are 1–253 of letters, digits, '-', '_', '.', '/'",
        )?;
        ensure(v.len() <= 256, &field, "values are at most 256 bytes")?;
    }
    Ok(())
}

pub fn validate_description(description: &str) -> Result<(), Invalid> {
    ensure(
        description.len() <= MAX_DESCRIPTION,
        "description",
        format!("at most {MAX_DESCRIPTION} bytes"),
    )
}

pub fn validate_replicas(replicas: u32) -> Result<(), Invalid> {
    ensure(
        replicas <= MAX_REPLICAS,
        "replicas",
        format!("at most {MAX_REPLICAS}"),
    )
}

/// Custom domains: lowercase DNS names of at least two labels. `.localhost` names are the
/// platform's own (`{app}.{ns}.localhost`), so they cannot be claimed.
pub fn validate_domains(domains: &[String]) -> Result<(), Invalid> {
    ensure(domains.len() <= 32, "domains", "at most 32 domains")?;
    for (i, d) in domains.iter().enumerate() {
        let field = format!("domains[{i}]");
        let labels: Vec<&str> = d.split('.').collect();
        ensure(
            d.len() <= 253
                && labels.len() >= 2
                && labels
                    .iter()
                    .all(|l| tideway_api_types::name::dns_label_error(l).is_none()),
            &field,
            "must be a lowercase domain name such as shop.example.com",
        )?;
        ensure(
            d != "localhost" && !d.ends_with(".localhost"),
            &field,
            ".localhost names are reserved for {app}.{namespace}.localhost",
        )?;
    }
    Ok(())
}

/// Path prefixes: absolute paths without spaces, queries or fragments.
pub fn validate_path_prefixes(prefixes: &[String]) -> Result<(), Invalid> {
    ensure(prefixes.len() <= 32, "path_prefixes", "at most 32 prefixes")?;
    for (i, p) in prefixes.iter().enumerate() {
        ensure(
            p.starts_with('/')
                && p.len() <= 256
                && !p.contains(|c: char| c.is_whitespace() || c == '?' || c == '#'),
            &format!("path_prefixes[{i}]"),
            "must be an absolute path such as /shop",
        )?;
    }
    Ok(())
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn validate_digest(digest: &str) -> Result<(), Invalid> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    ensure(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "artifact_digest",
        "must be sha256: followed by 64 lowercase hex digits",
    )
}

pub fn validate_version(v: &VersionCreate) -> Result<(), Invalid> {
    validate_digest(&v.artifact_digest)?;
    let command = v.run.command.trim();
    ensure(!command.is_empty(), "run.command", "must not be empty")?;
    ensure(
        v.run.command.len() <= MAX_COMMAND,
        "run.command",
        format!("at most {MAX_COMMAND} bytes"),
    )?;
    ensure(
        v.env.len() <= MAX_ENV,
        "env",
        format!("at most {MAX_ENV} variables"),
    )?;
    for (k, val) in &v.env {
        let field = format!("env.{k}");
        let mut bytes = k.bytes();
        let valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ensure(
            valid,
            &field,
            "names are letters, digits and '_', not starting with a digit",
        )?;
        // The runtime sets these itself; letting a version override them would lie to the app.
        ensure(
            k != "PORT" && !k.starts_with("TIDEWAY_"),
            &field,
            "PORT and TIDEWAY_* are set by the platform",
        )?;
        ensure(
            val.len() <= MAX_ENV_VALUE && !val.contains('\0'),
            &field,
            "values are at most 32 KiB without NUL bytes",
        )?;
    }
    if let Some(port) = v.port {
        ensure(port != 0, "port", "must be 1–65535")?;
    }
    validate_health(&v.health)?;
    validate_resources(&v.resources)
}

fn validate_health(h: &HealthCheck) -> Result<(), Invalid> {
    if let Some(path) = &h.http {
        ensure(
            path.starts_with('/') && path.len() <= 1024 && !path.contains(char::is_whitespace),
            "health.http",
            "must be an absolute path such as /healthz",
        )?;
        ensure(!h.tcp, "health.tcp", "choose either http or tcp, not both")?;
    }
    ensure(
        (100..=3_600_000).contains(&h.interval_ms),
        "health.interval_ms",
        "must be 100–3600000",
    )?;
    ensure(
        (10..=h.interval_ms.max(10)).contains(&h.timeout_ms),
        "health.timeout_ms",
        "must be at least 10 and at most interval_ms",
    )?;
    ensure(
        (1..=100).contains(&h.healthy_threshold),
        "health.healthy_threshold",
        "must be 1–100",
    )?;
    ensure(
        (1..=100).contains(&h.unhealthy_threshold),
        "health.unhealthy_threshold",
        "must be 1–100",
    )
}

fn validate_resources(r: &Resources) -> Result<(), Invalid> {
    if let Some(mb) = r.memory_mb {
        ensure(
            (16..=1_048_576).contains(&mb),
            "resources.memory_mb",
            "must be 16–1048576",
        )?;
    }
    if let Some(milli) = r.cpu_millis {
        ensure(
            (10..=256_000).contains(&milli),
            "resources.cpu_millis",
            "must be 10–256000",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tideway_api_types::RunSpec;

    fn version() -> VersionCreate {
        VersionCreate {
            artifact_digest: format!("sha256:{}", "a".repeat(64)),
            run: RunSpec {
                command: "python3 app.py".into(),
            },
            env: Default::default(),
            port: None,
            health: HealthCheck::default(),
            resources: Resources::default(),
            build_command: None,
        }
    }

    fn field_of(v: &VersionCreate) -> Option<String> {
        validate_version(v).err().map(|e| e.field)
    }

    #[test]
    fn valid_version_passes() {
        assert_eq!(field_of(&version()), None);
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut v = version();
        v.artifact_digest = "md5:abc".into();
        assert_eq!(field_of(&v).as_deref(), Some("artifact_digest"));

        let mut v = version();
        v.run.command = "  ".into();
        assert_eq!(field_of(&v).as_deref(), Some("run.command"));

        let mut v = version();
        v.env.insert("PORT".into(), "1".into());
        assert_eq!(field_of(&v).as_deref(), Some("env.PORT"));

        let mut v = version();
        v.env.insert("1BAD".into(), "1".into());
        assert_eq!(field_of(&v).as_deref(), Some("env.1BAD"));

        let mut v = version();
        v.port = Some(0);
        assert_eq!(field_of(&v).as_deref(), Some("port"));

        let mut v = version();
        v.health.http = Some("healthz".into());
        v.health.tcp = false;
        assert_eq!(field_of(&v).as_deref(), Some("health.http"));

        let mut v = version();
        v.health.timeout_ms = v.health.interval_ms + 1;
        assert_eq!(field_of(&v).as_deref(), Some("health.timeout_ms"));

        let mut v = version();
        v.resources.memory_mb = Some(1);
        assert_eq!(field_of(&v).as_deref(), Some("resources.memory_mb"));
    }

    #[test]
    fn labels_and_replicas_are_bounded() {
        let mut labels = Labels::new();
        labels.insert("team".into(), "core".into());
        assert!(validate_labels(&labels).is_ok());
        labels.insert("bad key".into(), "x".into());
        assert_eq!(
            validate_labels(&labels).unwrap_err().field,
            "labels.bad key"
        );
        assert!(validate_replicas(MAX_REPLICAS).is_ok());
        assert!(validate_replicas(MAX_REPLICAS + 1).is_err());
    }
}
