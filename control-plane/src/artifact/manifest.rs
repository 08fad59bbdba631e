//! `tideway.toml`, the manifest at an artifact's root: how the app is built, run and
//! health-checked, its environment, resources and port.
//!
//! ```toml
//! port = 8080                       # optional; otherwise the app reads $PORT
//!
//! [run]
//! command = "python3 app.py"        # required
//!
//! [build]
//! command = "pip install -r requirements.txt"
//!
//! [health]
//! http = "/healthz"                 # or: tcp = true (the default)
//! interval_ms = 1000
//! timeout_ms = 1000
//! healthy_threshold = 1
//! unhealthy_threshold = 3
//!
//! [env]
//! GREETING = "hello"
//!
//! [resources]
//! memory_mb = 256
//! cpu_millis = 500
//! ```
//!
//! The manifest is walked key by key rather than through serde so that every error names
//! the exact key (`resources.memory_mb`) and unknown keys are refused.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use tideway_api_types::{HealthCheck, Resources, RunSpec, VersionCreate};
use toml::{Table, Value};

use super::ArtifactError;
use crate::domain::spec::validate_version;
use crate::domain::Invalid;

/// The manifest's file name, at the archive root.
pub const MANIFEST_FILE: &str = "tideway.toml";
/// Largest manifest read, in bytes.
const MAX_MANIFEST: u64 = 64 * 1024;

/// A parsed and validated `tideway.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    run: RunSpec,
    build_command: Option<String>,
    health: HealthCheck,
    env: BTreeMap<String, String>,
    resources: Resources,
    port: Option<u16>,
}

impl Manifest {
    /// Parses `tideway.toml` text and checks it against the same rules as a version created
    /// through the API. Errors are [`ArtifactError::Manifest`] naming the offending key.
    pub fn parse(toml_text: &str) -> Result<Manifest, ArtifactError> {
        parse(toml_text).map_err(ArtifactError::Manifest)
    }

    /// The `[run] command`.
    pub fn run(&self) -> &RunSpec {
        &self.run
    }

    /// The `[build] command`, when the artifact needs a build step.
    pub fn build_command(&self) -> Option<&str> {
        self.build_command.as_deref()
    }

    pub fn health(&self) -> &HealthCheck {
        &self.health
    }

    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The version this manifest describes, for the artifact with `digest`.
    pub fn to_version_create(&self, digest: &str) -> VersionCreate {
        VersionCreate {
            artifact_digest: digest.to_owned(),
            run: self.run.clone(),
            env: self.env.clone(),
            port: self.port,
            health: self.health.clone(),
            resources: self.resources.clone(),
            build_command: self.build_command.clone(),
        }
    }
}

/// Reads and parses `dir/tideway.toml`, which must be a regular file (not a link).
pub(super) fn read_from_dir(dir: &Path) -> Result<Manifest, ArtifactError> {
    let path = dir.join(MANIFEST_FILE);
    let invalid = |reason| ArtifactError::Manifest(Invalid::new(MANIFEST_FILE, reason));
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(_) => return Err(invalid("must be a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ArtifactError::MissingManifest)
        }
        Err(e) => return Err(ArtifactError::Io(e)),
    }
    let mut bytes = Vec::new();
    fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST + 1).read_to_end(&mut bytes))
        .map_err(ArtifactError::Io)?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(invalid("must be at most 64 KiB"));
    }
    let text = String::from_utf8(bytes).map_err(|_| invalid("must be UTF-8"))?;
    Manifest::parse(&text)
}

fn parse(text: &str) -> Result<Manifest, Invalid> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|span| {
                let (line, col) = line_col(text, span.start);
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        Invalid::new(MANIFEST_FILE, format!("{at}{}", e.message().trim()))
    })?;
    let mut top = Section::new("", table);

    let port = top
        .take_int("port", 1, u16::MAX.into())?
        .map(|p| u16::try_from(p).unwrap_or(u16::MAX));

    let mut run = top
        .take_section("run")?
        .unwrap_or_else(|| Section::new("run", Table::new()));
    let command = run
        .take_str("command")?
        .ok_or_else(|| Invalid::new("run.command", "is required"))?;
    run.finish()?;

    let build_command = match top.take_section("build")? {
        Some(mut build) => {
            let command = build
                .take_str("command")?
                .ok_or_else(|| Invalid::new("build.command", "is required in [build]"))?;
            if command.trim().is_empty() {
                return Err(Invalid::new("build.command", "must not be empty"));
            }
            build.finish()?;
            Some(command)
        }
        None => None,
    };

    let health = match top.take_section("health")? {
        Some(mut h) => {
            let defaults = HealthCheck::default();
            let http = h.take_str("http")?;
            let tcp = h.take_bool("tcp")?.unwrap_or(http.is_none());
            let health = HealthCheck {
                interval_ms: h.take_u32("interval_ms")?.unwrap_or(defaults.interval_ms),
                timeout_ms: h.take_u32("timeout_ms")?.unwrap_or(defaults.timeout_ms),
                healthy_threshold: h
                    .take_u32("healthy_threshold")?
                    .unwrap_or(defaults.healthy_threshold),
                unhealthy_threshold: h
                    .take_u32("unhealthy_threshold")?
                    .unwrap_or(defaults.unhealthy_threshold),
                http,
                tcp,
            };
            h.finish()?;
            if health.http.is_none() && !health.tcp {
                return Err(Invalid::new("health", "set http = \"/path\" or tcp = true"));
            }
            health
        }
        None => HealthCheck::default(),
    };

    let mut env = BTreeMap::new();
    if let Some(section) = top.take_section("env")? {
        for (key, value) in section.table {
            match value {
                Value::String(s) => {
                    env.insert(key, s);
                }
                _ => return Err(Invalid::new(format!("env.{key}"), "must be a string")),
            }
        }
    }

    let resources = match top.take_section("resources")? {
        Some(mut r) => {
            let resources = Resources {
                memory_mb: r.take_u32("memory_mb")?,
                cpu_millis: r.take_u32("cpu_millis")?,
            };
            r.finish()?;
            resources
        }
        None => Resources::default(),
    };
    top.finish()?;

    let manifest = Manifest {
        run: RunSpec { command },
        build_command,
        health,
        env,
        resources,
        port,
    };
    // The same rules as the API, field names included; the digest is not the manifest's.
    validate_version(&manifest.to_version_create(&format!("sha256:{}", "0".repeat(64))))?;
    Ok(manifest)
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// One TOML table being taken apart key by key; whatever is left at the end is unknown.
struct Section {
    prefix: String,
    table: Table,
}

impl Section {
    fn new(prefix: &str, table: Table) -> Self {
        Section {
            prefix: prefix.to_owned(),
            table,
        }
    }

    fn field(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn take_str(&mut self, key: &str) -> Result<Option<String>, Invalid> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Invalid::new(self.field(key), "must be a string")),
        }
    }

    fn take_bool(&mut self, key: &str) -> Result<Option<bool>, Invalid> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(_) => Err(Invalid::new(self.field(key), "must be true or false")),
        }
    }

    fn take_int(&mut self, key: &str, min: i64, max: i64) -> Result<Option<i64>, Invalid> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Integer(i)) if (min..=max).contains(&i) => Ok(Some(i)),
            Some(_) => Err(Invalid::new(
                self.field(key),
                format!("must be an integer from {min} to {max}"),
            )),
        }
    }

    fn take_u32(&mut self, key: &str) -> Result<Option<u32>, Invalid> {
        Ok(self
            .take_int(key, 0, u32::MAX.into())?
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX)))
    }

    fn take_section(&mut self, key: &str) -> Result<Option<Section>, Invalid> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(Section::new(&self.field(key), t))),
            Some(_) => Err(Invalid::new(self.field(key), "must be a table")),
        }
    }

    /// Refuses the first key nobody took.
    fn finish(self) -> Result<(), Invalid> {
        match self.table.keys().next() {
            Some(key) => Err(Invalid::new(self.field(key), "is not a known key")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        match Manifest::parse(text) {
            Err(ArtifactError::Manifest(invalid)) => invalid.field,
            other => panic!("expected an invalid manifest, got {other:?}"),
        }
    }

    #[test]
    fn minimal_manifest_takes_defaults() {
        let m = Manifest::parse("[run]\ncommand = \"./server\"\n").unwrap();
        assert_eq!(m.run().command, "./server");
        assert_eq!(m.build_command(), None);
        assert_eq!(m.health(), &HealthCheck::default());
        assert!(m.env().is_empty());
        assert_eq!(m.resources(), &Resources::default());
        assert_eq!(m.port(), None);
    }

    #[test]
    fn full_manifest_maps_to_a_valid_version() {
        let text = r#"
            port = 8080
            [run]
            command = "python3 app.py"
            [build]
            command = "pip install -r requirements.txt"
            [health]
            http = "/healthz"
            interval_ms = 500
            timeout_ms = 200
            healthy_threshold = 2
            unhealthy_threshold = 5
            [env]
            GREETING = "hello"
            [resources]
            memory_mb = 256
            cpu_millis = 500
        "#;
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.build_command(), Some("pip install -r requirements.txt"));
        let digest = format!("sha256:{}", "ab".repeat(32));
        let v = m.to_version_create(&digest);
        assert_eq!(v.artifact_digest, digest);
        assert_eq!(v.run.command, "python3 app.py");
        assert_eq!(v.port, Some(8080));
        assert_eq!(
            v.health,
            HealthCheck {
                http: Some("/healthz".into()),
                tcp: false,
                interval_ms: 500,
                timeout_ms: 200,
                healthy_threshold: 2,
                unhealthy_threshold: 5,
            }
        );
        assert_eq!(v.env.get("GREETING").map(String::as_str), Some("hello"));
        assert_eq!(v.resources.memory_mb, Some(256));
        assert_eq!(v.resources.cpu_millis, Some(500));
        assert_eq!(validate_version(&v), Ok(()));
    }

    #[test]
    fn each_error_names_its_key() {
        let cases = [
            ("", "run.command"),
            ("[run]\n", "run.command"),
            ("[run]\ncommand = \"  \"", "run.command"),
            ("[run]\ncommand = 1", "run.command"),
            ("[run]\ncommand = \"x\"\ncomand = \"y\"", "run.comand"),
            ("extra = 1\n[run]\ncommand = \"x\"", "extra"),
            ("run = \"x\"", "run"),
            (
                "[run]\ncommand = \"x\"\n[resources]\nmemory_mb = \"lots\"",
                "resources.memory_mb",
            ),
            (
                "[run]\ncommand = \"x\"\n[resources]\nmemory_mb = 1",
                "resources.memory_mb",
            ),
            (
                "[run]\ncommand = \"x\"\n[resources]\ndisk_mb = 1",
                "resources.disk_mb",
            ),
            (
                "[run]\ncommand = \"x\"\n[health]\nhttp = \"/h\"\ntcp = true",
                "health.tcp",
            ),
            ("[run]\ncommand = \"x\"\n[health]\ntcp = false", "health"),
            (
                "[run]\ncommand = \"x\"\n[health]\ninterval_ms = -1",
                "health.interval_ms",
            ),
            ("[run]\ncommand = \"x\"\n[env]\nPORT = \"1\"", "env.PORT"),
            ("[run]\ncommand = \"x\"\n[env]\nN = 1", "env.N"),
            ("[run]\ncommand = \"x\"\n[build]\n", "build.command"),
            ("port = 0\n[run]\ncommand = \"x\"", "port"),
            ("port = 70000\n[run]\ncommand = \"x\"", "port"),
        ];
        for (text, field) in cases {
            assert_eq!(field_of(text), field, "{text}");
        }
    }

    #[test]
    fn syntax_errors_name_the_file_and_the_line() {
        let err = Manifest::parse("[run]\ncommand = \n").unwrap_err();
        assert_eq!(err.code(), "invalid_manifest");
        let ArtifactError::Manifest(invalid) = err else {
            panic!("expected an invalid manifest");
        };
        assert_eq!(invalid.field, "tideway.toml");
        assert!(invalid.reason.starts_with("line 2"), "{}", invalid.reason);
    }
}
