//! Version intake: turns an uploaded artifact into a stored version. The upload is hashed
//! while it streams to disk, unpacked safely into a staging directory, described by its
//! `tideway.toml`, and only then recorded; a refused upload leaves no file and no row behind.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use serde_json::json;
use tideway_api_types::{Version, VersionState};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::artifact::{unpack, ArtifactError, ArtifactStore, Ingested, UnpackLimits};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::spec::validate_version;
use crate::domain::Invalid;
use crate::layout::Layout;
use crate::store::{Store, StoreError};

/// Limits on what one upload may be.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_artifact_bytes: u64,
    pub unpack: UnpackLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the upload failed")]
    Upload(#[source] io::Error),
    #[error("intake task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("placing the unpacked artifact failed")]
    Place(#[source] io::Error),
}

pub struct Intake {
    pub store: Arc<dyn Store>,
    pub artifacts: ArtifactStore,
    pub layout: Layout,
    pub limits: UploadLimits,
    /// Digests stored but not yet recorded as a version; garbage collection spares them.
    in_flight: Mutex<HashMap<String, usize>>,
}

impl Intake {
    pub fn new(
        store: Arc<dyn Store>,
        artifacts: ArtifactStore,
        layout: Layout,
        limits: UploadLimits,
    ) -> Self {
        Intake {
            store,
            artifacts,
            layout,
            limits,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Stores the artifact streamed in `body` as the next version of `ns/app`.
    pub async fn create_version<S, E>(
        &self,
        ns: &Name,
        app: &Name,
        actor: &str,
        body: S,
    ) -> Result<Version, IntakeError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let app_record = self.store.get_app(ns, app).await?;
        let reader = StreamReader::new(body.map_err(io::Error::other));
        let artifacts = self.artifacts.clone();
        let max = self.limits.max_artifact_bytes;
        let ingested =
            tokio::task::spawn_blocking(move || artifacts.ingest(SyncIoBridge::new(reader), max))
                .await
                .map_err(IntakeError::Task)?
                .map_err(|e| match e {
                    // The reader is the client's body: an I/O failure here is an upload cut short.
                    ArtifactError::Io(io) => IntakeError::Upload(io),
                    other => other.into(),
                })?;

        let staging = self
            .layout
            .staging()
            .join(format!("{:016x}", rand::random::<u64>()));
        self.hold(&ingested.digest, true);
        let result = self
            .record(&ingested, &staging, ns, app, app_record.id, actor)
            .await;
        self.hold(&ingested.digest, false);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            self.collect_garbage().await?;
        }
        result
    }

    fn hold(&self, digest: &str, on: bool) {
        if let Ok(mut held) = self.in_flight.lock() {
            let count = held.entry(digest.to_owned()).or_insert(0);
            if on {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    held.remove(digest);
                }
            }
        }
    }

    async fn record(
        &self,
        ingested: &Ingested,
        staging: &std::path::Path,
        ns: &Name,
        app: &Name,
        app_id: i64,
        actor: &str,
    ) -> Result<Version, IntakeError> {
        std::fs::create_dir_all(self.layout.staging()).map_err(IntakeError::Place)?;
        let (archive, dest, limits) = (
            ingested.path.clone(),
            staging.to_path_buf(),
            self.limits.unpack,
        );
        let summary = tokio::task::spawn_blocking(move || unpack(&archive, &dest, &limits))
            .await
            .map_err(IntakeError::Task)??;
        let create = summary.manifest.to_version_create(&ingested.digest);
        validate_version(&create)?;
        let state = if create.build_command.is_some() {
            VersionState::Building
        } else {
            VersionState::Ready
        };
        let event = NewEvent::new("VersionCreated", actor, "artifact uploaded")
            .app(ns.as_str(), app.as_str())
            .details(json!({
                "artifact_digest": ingested.digest,
                "size_bytes": ingested.size,
                "files": summary.files,
                "unpacked_bytes": summary.bytes,
                "build": create.build_command.is_some(),
            }));
        let version = self
            .store
            .create_version(ns, app, &create, state, event)
            .await?;
        let target = self.layout.version_dir(app_id, version.number);
        place(staging, &target).map_err(IntakeError::Place)?;
        Ok(version)
    }

    /// Removes every stored artifact that no version refers to and no upload is using:
    /// after a refused upload, an app's deletion, and periodically.
    pub async fn collect_garbage(&self) -> Result<usize, StoreError> {
        let used: HashSet<String> = self.store.referenced_digests().await?.into_iter().collect();
        let mut removed = 0;
        for digest in self.artifacts.digests() {
            let held = self
                .in_flight
                .lock()
                .map(|h| h.contains_key(&digest))
                .unwrap_or(true);
            if used.contains(&digest) || held {
                continue;
            }
            match self.artifacts.remove(&digest) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(%digest, error = %e, "ArtifactRemoveError"),
            }
        }
        Ok(removed)
    }
}

fn place(staging: &std::path::Path, target: &std::path::Path) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A leftover from a crash between a version's creation and this rename.
    if target.exists() {
        std::fs::remove_dir_all(target)?;
    }
    std::fs::rename(staging, target)
}
