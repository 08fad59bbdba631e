//! The content-addressed artifact store: each archive is kept once, under
//! `<root>/sha256/<hex>`, and written there only after it has been fully received.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ArtifactError;
use crate::domain::spec::validate_digest;

const CHUNK: usize = 64 * 1024;

/// Archives on local disk, named by their SHA-256.
///
/// Uploads stream into `<root>/tmp` and are renamed into `<root>/sha256/` once complete, so
/// a reader never sees a partial artifact and the same bytes are stored once.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// An artifact that is now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    /// Bytes received.
    pub size: u64,
    /// Where the artifact is stored.
    pub path: PathBuf,
}

impl ArtifactStore {
    /// A store rooted at `root`; directories are created on the first ingest.
    pub fn new(root: PathBuf) -> Self {
        ArtifactStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Streams `reader` into the store while hashing it, without holding it in memory.
    ///
    /// More than `max_bytes` fails with [`ArtifactError::TooLarge`] and leaves nothing
    /// behind. Bytes already stored are not written twice: the new copy is dropped.
    pub fn ingest(&self, mut reader: impl Read, max_bytes: u64) -> Result<Ingested, ArtifactError> {
        let tmp_dir = self.root.join("tmp");
        let blob_dir = self.root.join("sha256");
        fs::create_dir_all(&tmp_dir).map_err(ArtifactError::Io)?;
        fs::create_dir_all(&blob_dir).map_err(ArtifactError::Io)?;

        // Removed on drop, so every early return below cleans up after itself.
        let mut tmp = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(&tmp_dir)
            .map_err(ArtifactError::Io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArtifactError::Io(e)),
            };
            size += n as u64;
            if size > max_bytes {
                return Err(ArtifactError::TooLarge { limit: max_bytes });
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(ArtifactError::Io)?;
        }
        tmp.as_file().sync_all().map_err(ArtifactError::Io)?;

        let hex = hex::encode(hasher.finalize());
        let path = blob_dir.join(&hex);
        match tmp.persist_noclobber(&path) {
            Ok(_) => sync_dir(&blob_dir)?,
            // The same bytes are already stored; the new copy is removed as it drops.
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ArtifactError::Io(e.error)),
        }
        Ok(Ingested {
            digest: format!("sha256:{hex}"),
            size,
            path,
        })
    }

    /// Where the artifact with `digest` is (or would be) stored; `None` when `digest` is not
    /// `sha256:<64 lowercase hex>`, so a digest can never name a path outside the store.
    pub fn path_of(&self, digest: &str) -> Option<PathBuf> {
        validate_digest(digest).ok()?;
        let hex = digest.strip_prefix("sha256:")?;
        Some(self.root.join("sha256").join(hex))
    }

    /// Whether the artifact with `digest` is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path_of(digest).is_some_and(|p| p.is_file())
    }

    /// Deletes the artifact with `digest`; `Ok(false)` when it was not stored (a malformed
    /// digest is never stored).
    pub fn remove(&self, digest: &str) -> Result<bool, ArtifactError> {
        let Some(path) = self.path_of(digest) else {
            return Ok(false);
        };
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ArtifactError::Io(e)),
        }
    }
}

/// Makes a rename into `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ArtifactError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArtifactError::Io)
}

impl ArtifactStore {
    /// Digests of every stored artifact, for garbage collection.
    pub fn digests(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("sha256")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .filter(|d| self.path_of(d).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        match fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn same_bytes_are_stored_once_under_their_digest() {
        let root = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(root.path().to_path_buf());
        let data = b"hello artifact".repeat(10_000);

        let a = store.ingest(&data[..], 1 << 20).unwrap();
        let b = store.ingest(&data[..], 1 << 20).unwrap();

        let expected = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        assert_eq!(a.digest, expected);
        assert_eq!(a, b);
        assert_eq!(a.size, data.len() as u64);
        assert_eq!(fs::read(&a.path).unwrap(), data);
        assert_eq!(files_in(&root.path().join("sha256")), vec![a.path.clone()]);
        assert!(files_in(&root.path().join("tmp")).is_empty());
        assert_eq!(store.path_of(&a.digest), Some(a.path.clone()));
        assert!(store.contains(&a.digest));

        assert!(store.remove(&a.digest).unwrap());
        assert!(!store.remove(&a.digest).unwrap());
        assert!(!store.contains(&a.digest));
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let root = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(root.path().to_path_buf());
        let got = store.ingest(&[7u8; 100][..], 100).unwrap();
        assert_eq!(got.size, 100);
    }

    #[test]
    fn over_the_limit_is_refused_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(root.path().to_path_buf());
        let data = vec![1u8; 3 * CHUNK + 1];

        let err = store.ingest(&data[..], 2 * CHUNK as u64).unwrap_err();

        assert!(matches!(err, ArtifactError::TooLarge { limit } if limit == 2 * CHUNK as u64));
        assert_eq!(err.code(), "artifact_too_large");
        assert!(files_in(&root.path().join("tmp")).is_empty());
        assert!(files_in(&root.path().join("sha256")).is_empty());
    }

    #[test]
    fn malformed_digests_name_no_path() {
        let store = ArtifactStore::new(PathBuf::from("/nonexistent"));
        for digest in ["sha256:../../etc/passwd", "md5:abc", "sha256:", ""] {
            assert_eq!(store.path_of(digest), None, "{digest}");
            assert!(!store.remove(digest).unwrap());
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(store.path_of(&upper), None);
    }
}
