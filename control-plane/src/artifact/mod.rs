//! Artifacts: the archives users upload as the code of a version.
//!
//! This module owns three things: the content-addressed store that keeps each uploaded
//! archive once under its SHA-256 (`store`), safe unpacking of tar.gz and zip archives into
//! a directory (`unpack`), and the `tideway.toml` manifest at the archive root that says how
//! the app is built, run and health-checked (`manifest`).
//!
//! Archives come from users, so nothing here trusts them. This module must never write
//! outside the directories it is given, never follow or create a link that leaves the
//! unpacked tree, and never trust archive metadata: sizes are counted as bytes are written,
//! modes keep only the executable bit, and owners, timestamps and special files are refused
//! or ignored. A refused archive leaves nothing behind.
//!
//! Everything here is synchronous and blocking; async callers run it on a blocking thread.

mod manifest;
mod store;
mod tree;
mod unpack;

use std::io;

use crate::domain::Invalid;

pub use manifest::{Manifest, MANIFEST_FILE};
pub use store::{ArtifactStore, Ingested};
pub use unpack::{unpack, UnpackLimits, UnpackSummary};

/// Why an artifact was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The upload is larger than the configured limit.
    #[error("the artifact is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The archive is neither a gzip-compressed tar nor a zip.
    #[error("the artifact is neither a tar.gz nor a zip archive")]
    UnknownFormat,
    /// An entry's name is absolute, climbs with `..`, is empty, holds a NUL byte, repeats an
    /// earlier entry or would be written through a link.
    #[error("archive entry {entry:?} has an unsafe path: {reason}")]
    UnsafePath { entry: String, reason: &'static str },
    /// A symlink or hardlink whose target leaves the unpacked tree.
    #[error("archive link {entry:?} -> {target:?} is unsafe: {reason}")]
    UnsafeLink {
        entry: String,
        target: String,
        reason: &'static str,
    },
    /// A device, fifo or other entry that is neither a file, a directory nor a link.
    #[error(
        "archive entry {entry:?} is a {kind}; artifacts hold only files, directories and links"
    )]
    SpecialFile { entry: String, kind: &'static str },
    /// The archive has more entries than allowed; `entry` is the first one over the limit.
    #[error("the archive has more than {limit} entries (at {entry:?})")]
    TooManyEntries { entry: String, limit: u64 },
    /// The archive unpacks to more bytes than allowed; `entry` is where the limit was hit.
    #[error("the archive unpacks to more than {limit} bytes (at {entry:?})")]
    UnpackedTooLarge { entry: String, limit: u64 },
    /// The unpacked archive has no `tideway.toml` at its root.
    #[error("the archive has no tideway.toml at its root")]
    MissingManifest,
    /// `tideway.toml` breaks a rule; `Invalid::field` names the key (`run.command`).
    #[error("invalid tideway.toml: {0}")]
    Manifest(Invalid),
    /// The archive could not be decoded (bad gzip, tar or zip structure, checksum mismatch).
    #[error("the archive is corrupt: {reason}")]
    Corrupt { reason: String },
    /// The local disk failed; the cause is kept as the source and never shown to clients.
    #[error("artifact storage failed")]
    Io(#[source] io::Error),
}

impl ArtifactError {
    /// A stable snake_case code for API error bodies and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            ArtifactError::TooLarge { .. } => "artifact_too_large",
            ArtifactError::UnknownFormat => "unknown_archive_format",
            ArtifactError::UnsafePath { .. } => "unsafe_path",
            ArtifactError::UnsafeLink { .. } => "unsafe_link",
            ArtifactError::SpecialFile { .. } => "special_file",
            ArtifactError::TooManyEntries { .. } => "too_many_entries",
            ArtifactError::UnpackedTooLarge { .. } => "unpacked_too_large",
            ArtifactError::MissingManifest => "missing_manifest",
            ArtifactError::Manifest(_) => "invalid_manifest",
            ArtifactError::Corrupt { .. } => "corrupt_archive",
            ArtifactError::Io(_) => "internal",
        }
    }

    pub(crate) fn corrupt(err: impl std::fmt::Display) -> Self {
        ArtifactError::Corrupt {
            reason: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let cases = [
            (ArtifactError::TooLarge { limit: 1 }, "artifact_too_large"),
            (ArtifactError::UnknownFormat, "unknown_archive_format"),
            (ArtifactError::MissingManifest, "missing_manifest"),
            (
                ArtifactError::Manifest(Invalid::new("run.command", "is required")),
                "invalid_manifest",
            ),
            (ArtifactError::corrupt("bad"), "corrupt_archive"),
            (ArtifactError::Io(io::Error::other("disk")), "internal"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
        }
        // Causes of internal errors stay out of the message clients see.
        assert_eq!(
            ArtifactError::Io(io::Error::other("secret path")).to_string(),
            "artifact storage failed"
        );
    }
}
