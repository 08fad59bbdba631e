//! Where the CLI finds its server and token: `TIDEWAY_URL` / `TIDEWAY_TOKEN` first, then the
//! file written by `tideway login`, then the default URL.
//!
//! The environment is passed in as a lookup function so precedence can be tested without
//! touching the real process environment.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Where a fresh `tideway server` listens.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:7070";
pub(crate) const URL_VAR: &str = "TIDEWAY_URL";
pub(crate) const TOKEN_VAR: &str = "TIDEWAY_TOKEN";

/// What `tideway login` saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) url: String,
    pub(crate) token: String,
}

/// The server and credentials a command talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) token: String,
}

/// Reads the real process environment; empty values count as unset so `TIDEWAY_TOKEN=` in a
/// script does not shadow the saved token with nothing.
pub(crate) fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// `$XDG_CONFIG_HOME/tideway/config.json`, else `$HOME/.config/tideway/config.json`.
pub(crate) fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    // The XDG spec says relative values must be ignored.
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("tideway").join("config.json"))
}

/// Resolves the target of a command from the environment and the saved login.
pub(crate) fn resolve(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Target> {
    let url = env(URL_VAR);
    let token = env(TOKEN_VAR);
    // With both variables set the file is irrelevant: scripts must not fail on a missing
    // HOME or a broken config they never asked for.
    let saved = match (&url, &token, config_path(env)) {
        (Some(_), Some(_), _) | (_, _, None) => None,
        (_, _, Some(path)) => load(&path)?,
    };
    merge(url, token, saved)
}

/// Each variable overrides its own field of the saved login, independently.
fn merge(
    url: Option<String>,
    token: Option<String>,
    saved: Option<Saved>,
) -> anyhow::Result<Target> {
    let (saved_url, saved_token) = match saved {
        Some(s) => (Some(s.url), Some(s.token)),
        None => (None, None),
    };
    let Some(token) = token.or(saved_token) else {
        bail!("not logged in: run `tideway login` or set {TOKEN_VAR}");
    };
    let url = url.or(saved_url).unwrap_or_else(|| DEFAULT_URL.to_owned());
    Ok(Target { url, token })
}

/// The saved login, or `None` when nobody has logged in yet.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Saved>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let saved = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid Tideway config; run `tideway login` again",
            path.display()
        )
    })?;
    Ok(Some(saved))
}

/// Writes the login readable by the owner only, since it holds a bearer token. The file is
/// written beside the target and renamed over it so an interrupted write never leaves a
/// truncated config behind.
pub(crate) fn save(path: &Path, saved: &Saved) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(saved)?;
    let write = || -> std::io::Result<()> {
        let mut file = open_private(&tmp)?;
        file.write_all(&body)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` only applies when the file is created; a leftover from an older run keeps its
    // permissions unless they are reset.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    fn saved() -> Saved {
        Saved {
            url: "http://saved:1".into(),
            token: "saved-token".into(),
        }
    }

    #[test]
    fn merge_prefers_env_per_field() {
        let both = merge(
            Some("http://env:2".into()),
            Some("env-token".into()),
            Some(saved()),
        );
        assert_eq!(
            both.unwrap(),
            Target {
                url: "http://env:2".into(),
                token: "env-token".into()
            }
        );

        let url_only = merge(Some("http://env:2".into()), None, Some(saved())).unwrap();
        assert_eq!(url_only.url, "http://env:2");
        assert_eq!(url_only.token, "saved-token");

        let token_only = merge(None, Some("env-token".into()), Some(saved())).unwrap();
        assert_eq!(token_only.url, "http://saved:1");
        assert_eq!(token_only.token, "env-token");
    }

    #[test]
    fn merge_defaults_url_and_requires_token() {
        let target = merge(None, Some("t".into()), None).unwrap();
        assert_eq!(target.url, DEFAULT_URL);

        let err = merge(Some("http://x".into()), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tideway login"), "{err}");
        assert!(err.contains(TOKEN_VAR), "{err}");
    }

    #[test]
    fn config_path_prefers_absolute_xdg() {
        let env = env_of(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            config_path(&env),
            Some(PathBuf::from("/xdg/tideway/config.json"))
        );

        let env = env_of(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(
            config_path(&env),
            Some(PathBuf::from("/home/u/.config/tideway/config.json"))
        );

        assert_eq!(config_path(&env_of(&[])), None);
    }

    #[test]
    fn resolve_reads_saved_login_under_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().to_str().unwrap();
        save(&dir.path().join("tideway/config.json"), &saved()).unwrap();

        let target = resolve(&env_of(&[("XDG_CONFIG_HOME", xdg)])).unwrap();
        assert_eq!(
            target,
            Target {
                url: saved().url,
                token: saved().token
            }
        );

        let target = resolve(&env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            (URL_VAR, "http://env:3"),
        ]))
        .unwrap();
        assert_eq!(target.url, "http://env:3");
        assert_eq!(target.token, "saved-token");
    }

    #[test]
    fn resolve_ignores_broken_config_when_env_has_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tideway/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "not json").unwrap();
        let xdg = dir.path().to_str().unwrap();

        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            (URL_VAR, "http://e"),
            (TOKEN_VAR, "t"),
        ]);
        assert_eq!(resolve(&env).unwrap().token, "t");

        let err = resolve(&env_of(&[("XDG_CONFIG_HOME", xdg)])).unwrap_err();
        assert!(format!("{err:#}").contains("tideway login"), "{err:#}");
    }

    #[test]
    fn load_missing_file_is_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("nope.json")).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn save_is_owner_only_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/tideway/config.json");
        save(&path, &saved()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap(), Some(saved()));

        // Saving again replaces the previous login.
        let other = Saved {
            url: "http://other".into(),
            token: "t2".into(),
        };
        save(&path, &other).unwrap();
        assert_eq!(load(&path).unwrap(), Some(other));
    }
}
