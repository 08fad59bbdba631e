//! Where the control plane keeps files under its data dir. One place names every path, so
//! cleanup (app deletion, garbage collection) can never miss one.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    /// Content-addressed uploaded artifacts.
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// Archives being unpacked before their version exists.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Everything of one app, keyed by its internal id so a re-created app with the same
    /// name never sees the files of the old one.
    pub fn app_dir(&self, app_id: i64) -> PathBuf {
        self.root.join("apps").join(app_id.to_string())
    }

    /// The unpacked (and built) artifact of a version: the instances' working directory.
    pub fn version_dir(&self, app_id: i64, number: u32) -> PathBuf {
        self.app_dir(app_id).join(format!("v{number}"))
    }

    pub fn build_log(&self, app_id: i64, number: u32) -> PathBuf {
        self.app_dir(app_id).join(format!("v{number}.build.log"))
    }

    /// The runtime driver's own state (instances, logs).
    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
