//! The one place archive entries touch the disk: a tree rooted at a private temp directory
//! that checks every name and link before writing, never writes through a link, never
//! overwrites, and counts the bytes it actually writes.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::unpack::UnpackLimits;
use super::ArtifactError;

/// Longest entry name or link target accepted, in bytes.
const MAX_PATH: usize = 4096;
/// Longest single path component accepted, in bytes (the usual file system limit).
const MAX_COMPONENT: usize = 255;
/// Most symlinks followed when checking where a link really points (as Linux's ELOOP).
const MAX_LINK_HOPS: u32 = 40;
/// Longest entry name repeated in an error.
const MAX_SHOWN: usize = 256;
const CHUNK: usize = 64 * 1024;

/// What an unpacked tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Counts {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
}

/// An entry name split into its normal components, with `.` and empty parts dropped.
/// Empty means the root of the tree.
pub(super) type Components = Vec<String>;

/// Splits an archive entry name into components, refusing anything that could name a path
/// outside the tree or that the file system would read differently.
pub(super) fn normalize(raw: &[u8]) -> Result<Components, &'static str> {
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    if raw.len() > MAX_PATH {
        return Err("is longer than 4096 bytes");
    }
    let name = std::str::from_utf8(raw).map_err(|_| "is not UTF-8")?;
    if name.starts_with('/') {
        return Err("is absolute");
    }
    if name.contains('\\') {
        return Err("contains a backslash");
    }
    let mut out = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains a .. component"),
            _ if part.len() > MAX_COMPONENT => return Err("has a component longer than 255 bytes"),
            _ => out.push(part.to_owned()),
        }
    }
    Ok(out)
}

/// Resolves a symlink target lexically against the link's directory; `false` when it climbs
/// above the root.
fn lexically_inside(link_dir: &[String], target: &str) -> bool {
    let mut at = link_dir.len();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match at.checked_sub(1) {
                Some(up) => at = up,
                None => return false,
            },
            _ => at += 1,
        }
    }
    true
}

/// An entry name as it appears in errors: lossy UTF-8, cut to a readable length.
pub(super) fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match s.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.into_owned(),
    }
}

pub(super) struct Tree {
    root: PathBuf,
    limits: UnpackLimits,
    counts: Counts,
    symlinks: Vec<(Components, String)>,
}

impl Tree {
    /// A tree writing under `root`, which must be an empty directory only this tree uses.
    pub(super) fn new(root: &Path, limits: UnpackLimits) -> Self {
        Tree {
            root: root.to_path_buf(),
            limits,
            counts: Counts::default(),
            symlinks: Vec::new(),
        }
    }

    /// Counts one archive entry against `max_entries`.
    pub(super) fn count_entry(&mut self, raw: &[u8]) -> Result<(), ArtifactError> {
        self.counts.entries += 1;
        if self.counts.entries > self.limits.max_entries {
            return Err(ArtifactError::TooManyEntries {
                entry: shown(raw),
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// The normalized name of an entry; `allow_root` lets a directory entry name the root
    /// itself (tar's `./`), which is then a no-op.
    fn name(&self, raw: &[u8], allow_root: bool) -> Result<Components, ArtifactError> {
        let unsafe_path = |reason| ArtifactError::UnsafePath {
            entry: shown(raw),
            reason,
        };
        let parts = normalize(raw).map_err(unsafe_path)?;
        if parts.is_empty() && !allow_root {
            return Err(unsafe_path("is empty"));
        }
        Ok(parts)
    }

    fn path(&self, parts: &[String]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(parts);
        p
    }

    /// Makes sure every component of `dirs` is a real directory (not a link), creating the
    /// missing ones, and returns its path.
    fn ensure_dirs(&self, raw: &[u8], dirs: &[String]) -> Result<PathBuf, ArtifactError> {
        let mut path = self.root.clone();
        for part in dirs {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(ArtifactError::UnsafePath {
                        entry: shown(raw),
                        reason: "a parent is a file or a link",
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&path)
                        .map_err(ArtifactError::Io)?;
                    // The same mode whatever the process umask is.
                    fs::set_permissions(&path, Permissions::from_mode(0o755))
                        .map_err(ArtifactError::Io)?;
                }
                Err(e) => return Err(ArtifactError::Io(e)),
            }
        }
        Ok(path)
    }

    /// A file system error while creating an entry: a name taken earlier is the archive's
    /// fault, anything else the disk's.
    fn create_error(raw: &[u8], e: io::Error) -> ArtifactError {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ArtifactError::UnsafePath {
                entry: shown(raw),
                reason: "repeats an earlier entry",
            }
        } else {
            ArtifactError::Io(e)
        }
    }

    pub(super) fn add_dir(&mut self, raw: &[u8]) -> Result<(), ArtifactError> {
        let parts = self.name(raw, true)?;
        self.ensure_dirs(raw, &parts)?;
        Ok(())
    }

    /// Writes a regular file from `data`, counting the bytes actually read rather than any
    /// size the archive claims. Read failures mean a corrupt archive.
    pub(super) fn add_file(
        &mut self,
        raw: &[u8],
        data: &mut dyn Read,
        executable: bool,
    ) -> Result<(), ArtifactError> {
        let parts = self.name(raw, false)?;
        let (file_name, dirs) = parts.split_last().ok_or(ArtifactError::UnsafePath {
            entry: shown(raw),
            reason: "is empty",
        })?;
        let path = self.ensure_dirs(raw, dirs)?.join(file_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Self::create_error(raw, e))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArtifactError::corrupt(e)),
            };
            self.counts.bytes += n as u64;
            if self.counts.bytes > self.limits.max_unpacked_bytes {
                return Err(ArtifactError::UnpackedTooLarge {
                    entry: shown(raw),
                    limit: self.limits.max_unpacked_bytes,
                });
            }
            file.write_all(&buf[..n]).map_err(ArtifactError::Io)?;
        }
        // Only the executable bit survives from the archive's mode.
        let mode = if executable { 0o755 } else { 0o644 };
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(ArtifactError::Io)?;
        self.counts.files += 1;
        Ok(())
    }

    /// Creates a symlink whose target, resolved lexically from the link's directory, stays
    /// inside the tree. [`Tree::finish`] checks again through the links that exist by then.
    pub(super) fn add_symlink(&mut self, raw: &[u8], target: &[u8]) -> Result<(), ArtifactError> {
        let parts = self.name(raw, false)?;
        let unsafe_link = |reason| ArtifactError::UnsafeLink {
            entry: shown(raw),
            target: shown(target),
            reason,
        };
        if target.contains(&0) {
            return Err(unsafe_link("the target contains a NUL byte"));
        }
        if target.len() > MAX_PATH {
            return Err(unsafe_link("the target is longer than 4096 bytes"));
        }
        let target_str =
            std::str::from_utf8(target).map_err(|_| unsafe_link("the target is not UTF-8"))?;
        if target_str.is_empty() {
            return Err(unsafe_link("the target is empty"));
        }
        if target_str.starts_with('/') {
            return Err(unsafe_link("the target is absolute"));
        }
        if target_str.contains('\\') {
            return Err(unsafe_link("the target contains a backslash"));
        }
        let (link_name, dirs) = parts.split_last().ok_or(unsafe_link("is empty"))?;
        if !lexically_inside(dirs, target_str) {
            return Err(unsafe_link("the target leaves the artifact"));
        }
        let path = self.ensure_dirs(raw, dirs)?.join(link_name);
        std::os::unix::fs::symlink(target_str, &path).map_err(|e| Self::create_error(raw, e))?;
        self.symlinks.push((parts, target_str.to_owned()));
        Ok(())
    }

    /// Creates a hardlink to a regular file unpacked earlier; `target` is relative to the
    /// archive root, as tar writes it.
    pub(super) fn add_hardlink(&mut self, raw: &[u8], target: &[u8]) -> Result<(), ArtifactError> {
        let parts = self.name(raw, false)?;
        let unsafe_link = |reason| ArtifactError::UnsafeLink {
            entry: shown(raw),
            target: shown(target),
            reason,
        };
        let target_parts = normalize(target).map_err(unsafe_link)?;
        let Some((target_name, target_dirs)) = target_parts.split_last() else {
            return Err(unsafe_link("the target is empty"));
        };
        // Look the target up without following any link, so it is inside the tree.
        let mut target_path = self.root.clone();
        for part in target_dirs {
            target_path.push(part);
            if !fs::symlink_metadata(&target_path).is_ok_and(|m| m.file_type().is_dir()) {
                return Err(unsafe_link("the target is not a file unpacked earlier"));
            }
        }
        target_path.push(target_name);
        if !fs::symlink_metadata(&target_path).is_ok_and(|m| m.file_type().is_file()) {
            return Err(unsafe_link("the target is not a file unpacked earlier"));
        }
        let (link_name, dirs) = parts.split_last().ok_or(unsafe_link("is empty"))?;
        let path = self.ensure_dirs(raw, dirs)?.join(link_name);
        fs::hard_link(&target_path, &path).map_err(|e| Self::create_error(raw, e))?;
        self.counts.files += 1;
        Ok(())
    }

    /// Checks every symlink again, now following the links that exist, because a chain of
    /// links that each stay inside lexically (`l -> .`, `x -> l/../..`) can still leave the
    /// tree. Returns what was unpacked.
    pub(super) fn finish(self) -> Result<Counts, ArtifactError> {
        for (parts, target) in &self.symlinks {
            if let Some(reason) = self.escapes(parts, target)? {
                return Err(ArtifactError::UnsafeLink {
                    entry: parts.join("/"),
                    target: target.clone(),
                    reason,
                });
            }
        }
        Ok(self.counts)
    }

    /// Follows the link at `parts` (with `target`) through the tree the way the kernel would;
    /// `Some(reason)` when it leaves the tree or loops.
    fn escapes(
        &self,
        parts: &[String],
        target: &str,
    ) -> Result<Option<&'static str>, ArtifactError> {
        let mut at: Vec<String> = parts[..parts.len().saturating_sub(1)].to_vec();
        // Components still to walk, last one first.
        let mut pending: Vec<String> = target.split('/').rev().map(str::to_owned).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => {}
                ".." => {
                    if at.pop().is_none() {
                        return Ok(Some("the target leaves the artifact through another link"));
                    }
                }
                _ => {
                    at.push(part);
                    let path = self.path(&at);
                    match fs::symlink_metadata(&path) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            hops += 1;
                            if hops > MAX_LINK_HOPS {
                                return Ok(Some("the target is a loop of links"));
                            }
                            let next = fs::read_link(&path).map_err(ArtifactError::Io)?;
                            let next = next.to_string_lossy();
                            if next.starts_with('/') {
                                return Ok(Some("the target is absolute"));
                            }
                            at.pop();
                            pending.extend(next.split('/').rev().map(str::to_owned));
                        }
                        // A file, a directory, or nothing (a dangling link stays dangling
                        // inside: nothing below a missing name can be a link).
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ArtifactError::Io(e)),
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_plain_names_and_refuses_tricks() {
        assert_eq!(normalize(b"a/./b//c/").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(normalize(b"./").unwrap(), Vec::<String>::new());
        assert_eq!(normalize(b"/etc/passwd"), Err("is absolute"));
        assert_eq!(normalize(b"../x"), Err("contains a .. component"));
        assert_eq!(normalize(b"a/../../x"), Err("contains a .. component"));
        assert_eq!(normalize(b"a/\0b"), Err("contains a NUL byte"));
        assert_eq!(normalize(b"a\\..\\x"), Err("contains a backslash"));
        assert_eq!(normalize(b"\xff"), Err("is not UTF-8"));
        assert!(normalize(&[b'a'; 256]).is_err());
    }

    #[test]
    fn lexical_resolution_is_relative_to_the_link_directory() {
        let dir = |s: &[&str]| s.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert!(lexically_inside(&dir(&["a"]), "../b"));
        assert!(lexically_inside(&dir(&["a", "b"]), "../../c"));
        assert!(!lexically_inside(&dir(&["a"]), "../../x"));
        assert!(!lexically_inside(&dir(&[]), ".."));
        assert!(lexically_inside(&dir(&[]), "x/../y"));
    }

    #[test]
    fn long_names_are_cut_in_errors() {
        let long = "a".repeat(10_000);
        assert_eq!(shown(long.as_bytes()).chars().count(), MAX_SHOWN + 1);
    }
}
