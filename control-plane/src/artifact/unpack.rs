//! Safe unpacking of tar.gz and zip archives: detect the format by its magic bytes, walk
//! the entries through [`Tree`], read the manifest, and only then move the result into
//! place, so a refused archive leaves nothing behind.

use std::cell::Cell;
use std::fs::{self, File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use super::manifest::{self, Manifest};
use super::tree::{shown, Tree};
use super::ArtifactError;

/// Longest symlink target read from a zip entry's data.
const MAX_ZIP_LINK: u64 = 4096;
/// Headers, padding and extension records a tar stream may carry per entry beyond its data.
const TAR_OVERHEAD_PER_ENTRY: u64 = 4096;
const TAR_OVERHEAD: u64 = 1 << 20;

/// How much an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Entries of any kind (files, directories, links).
    pub max_entries: u64,
    /// Bytes of file contents, as actually written.
    pub max_unpacked_bytes: u64,
}

/// What [`unpack`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct UnpackSummary {
    /// Archive entries seen, of any kind.
    pub entries: u64,
    /// Regular files and hardlinks written.
    pub files: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// The parsed `tideway.toml` from the archive root.
    pub manifest: Manifest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    TarGz,
    Zip,
}

/// Unpacks `archive` (tar.gz or zip) into `dest`, which must not exist yet, and parses the
/// `tideway.toml` at its root.
///
/// Entries are written into a fresh temp directory beside `dest`, renamed to `dest` only
/// when every entry and the manifest passed. On any error `dest` is not created and the temp
/// directory is removed. See [`ArtifactError`] for what is refused.
pub fn unpack(
    archive: &Path,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackSummary, ArtifactError> {
    let mut file = File::open(archive).map_err(ArtifactError::Io)?;
    let format = detect(&mut file)?;
    // Start again from the first byte for the decoder.
    drop(file);
    let file = File::open(archive).map_err(ArtifactError::Io)?;

    match fs::symlink_metadata(dest) {
        Ok(_) => {
            return Err(ArtifactError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", dest.display()),
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ArtifactError::Io(e)),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Removed with everything in it when dropped, i.e. on every error below.
    let tmp = tempfile::Builder::new()
        .prefix(".tideway-unpack-")
        .tempdir_in(parent)
        .map_err(ArtifactError::Io)?;

    let mut tree = Tree::new(tmp.path(), *limits);
    match format {
        Format::TarGz => walk_tar(file, &mut tree, limits)?,
        Format::Zip => walk_zip(file, &mut tree)?,
    }
    let counts = tree.finish()?;
    let manifest = manifest::read_from_dir(tmp.path())?;

    fs::set_permissions(tmp.path(), Permissions::from_mode(0o755)).map_err(ArtifactError::Io)?;
    fs::rename(tmp.path(), dest).map_err(ArtifactError::Io)?;
    // The directory now lives at `dest`; only stop the guard from cleaning up.
    let _ = tmp.keep();
    Ok(UnpackSummary {
        entries: counts.entries,
        files: counts.files,
        bytes: counts.bytes,
        manifest,
    })
}

fn detect(file: &mut File) -> Result<Format, ArtifactError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArtifactError::Io(e)),
        }
    }
    match &magic[..got] {
        [0x1f, 0x8b, ..] => Ok(Format::TarGz),
        b"PK\x03\x04" => Ok(Format::Zip),
        _ => Err(ArtifactError::UnknownFormat),
    }
}

/// A reader that fails once more than `limit` bytes went through it and says so in `hit`.
///
/// The tar reader buffers GNU long names and PAX headers whole, at whatever size they
/// claim, so the decompressed stream itself needs a bound, not only the files written.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => {
                self.hit.set(true);
                Err(io::Error::other("decompressed archive exceeds its limit"))
            }
        }
    }
}

fn walk_tar(file: File, tree: &mut Tree, limits: &UnpackLimits) -> Result<(), ArtifactError> {
    let hit = Rc::new(Cell::new(false));
    let stream_limit = limits
        .max_unpacked_bytes
        .saturating_add(limits.max_entries.saturating_mul(TAR_OVERHEAD_PER_ENTRY))
        .saturating_add(TAR_OVERHEAD);
    let capped = Capped {
        inner: MultiGzDecoder::new(io::BufReader::new(file)),
        left: stream_limit,
        hit: Rc::clone(&hit),
    };
    let mut archive = tar::Archive::new(capped);
    let mut last = Vec::new();
    let result = walk_tar_entries(&mut archive, tree, &mut last);
    match result {
        Err(ArtifactError::Corrupt { .. }) if hit.get() => Err(ArtifactError::UnpackedTooLarge {
            entry: shown(&last),
            limit: limits.max_unpacked_bytes,
        }),
        other => other,
    }
}

fn walk_tar_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    tree: &mut Tree,
    last: &mut Vec<u8>,
) -> Result<(), ArtifactError> {
    for entry in archive.entries().map_err(ArtifactError::corrupt)? {
        let mut entry = entry.map_err(ArtifactError::corrupt)?;
        let name = entry.path_bytes().into_owned();
        last.clone_from(&name);
        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            // Archive-wide PAX metadata (comments, defaults); nothing to write.
            continue;
        }
        tree.count_entry(&name)?;
        match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mode = entry.header().mode().map_err(ArtifactError::corrupt)?;
                tree.add_file(&name, &mut entry, mode & 0o111 != 0)?;
            }
            EntryType::Directory => tree.add_dir(&name)?,
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if entry_type == EntryType::Symlink {
                    tree.add_symlink(&name, &target)?;
                } else {
                    tree.add_hardlink(&name, &target)?;
                }
            }
            other => {
                let kind = match other {
                    EntryType::Char => "character device",
                    EntryType::Block => "block device",
                    EntryType::Fifo => "fifo",
                    _ => "entry of an unsupported type",
                };
                return Err(ArtifactError::SpecialFile {
                    entry: shown(&name),
                    kind,
                });
            }
        }
    }
    Ok(())
}

/// The file type bits of a Unix mode.
const S_IFMT: u32 = 0o170000;

fn walk_zip(file: File, tree: &mut Tree) -> Result<(), ArtifactError> {
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(ArtifactError::corrupt)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(ArtifactError::corrupt)?;
        let name = entry.name().as_bytes().to_vec();
        tree.count_entry(&name)?;
        match entry.unix_mode().map(|m| m & S_IFMT) {
            Some(0o120000) => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(MAX_ZIP_LINK + 1)
                    .read_to_end(&mut target)
                    .map_err(ArtifactError::corrupt)?;
                tree.add_symlink(&name, &target)?;
            }
            Some(0o040000) => tree.add_dir(&name)?,
            None | Some(0) | Some(0o100000) if entry.is_dir() => tree.add_dir(&name)?,
            None | Some(0) | Some(0o100000) => {
                let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
                tree.add_file(&name, &mut entry, executable)?;
            }
            Some(kind) => {
                return Err(ArtifactError::SpecialFile {
                    entry: shown(&name),
                    kind: match kind {
                        0o020000 => "character device",
                        0o060000 => "block device",
                        0o010000 => "fifo",
                        0o140000 => "socket",
                        _ => "entry of an unsupported type",
                    },
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use flate2::write::GzEncoder;
    use flate2::Compression;
    use tar::Header;
    use tempfile::TempDir;
    use zip::write::SimpleFileOptions;

    use super::*;
    use crate::domain::Invalid;

    const MANIFEST: &[u8] = b"[run]\ncommand = \"./bin/start.sh\"\n";
    const SCRIPT: &[u8] = b"#!/bin/sh\necho hi\n";

    fn limits() -> UnpackLimits {
        UnpackLimits {
            max_entries: 100,
            max_unpacked_bytes: 1 << 20,
        }
    }

    /// Builds tar.gz archives entry by entry, writing names as raw header bytes so that
    /// names the `tar` builder would refuse (`..`, absolute) can be tested.
    struct Tgz(tar::Builder<GzEncoder<Vec<u8>>>);

    impl Tgz {
        fn new() -> Self {
            Tgz(tar::Builder::new(GzEncoder::new(
                Vec::new(),
                Compression::fast(),
            )))
        }

        fn header(name: &str, entry_type: EntryType, size: u64, mode: u32) -> Header {
            let mut h = Header::new_gnu();
            h.set_entry_type(entry_type);
            h.set_size(size);
            h.set_mode(mode);
            let slot = &mut h.as_old_mut().name;
            slot.fill(0);
            slot[..name.len()].copy_from_slice(name.as_bytes());
            h
        }

        fn file(mut self, name: &str, data: &[u8], mode: u32) -> Self {
            let mut h = Self::header(name, EntryType::Regular, data.len() as u64, mode);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn dir(mut self, name: &str) -> Self {
            let mut h = Self::header(name, EntryType::Directory, 0, 0o755);
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }

        fn link(mut self, entry_type: EntryType, name: &str, target: &str) -> Self {
            let mut h = Self::header(name, entry_type, 0, 0o777);
            h.set_link_name_literal(target).unwrap();
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }

        fn special(mut self, entry_type: EntryType, name: &str) -> Self {
            let mut h = Self::header(name, entry_type, 0, 0o644);
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }

        fn manifest(self) -> Self {
            self.file("tideway.toml", MANIFEST, 0o644)
        }

        fn finish(self) -> Vec<u8> {
            self.0.into_inner().unwrap().finish().unwrap()
        }
    }

    fn zip_archive(build: impl FnOnce(&mut zip::ZipWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        build(&mut w);
        w.finish().unwrap().into_inner()
    }

    fn zip_file(w: &mut zip::ZipWriter<io::Cursor<Vec<u8>>>, name: &str, data: &[u8], mode: u32) {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        w.start_file(name, opts).unwrap();
        w.write_all(data).unwrap();
    }

    /// A place to unpack into: the archive sits in its own directory, and `dest` is the only
    /// thing that may ever appear in `work`.
    struct Case {
        _src: TempDir,
        archive: PathBuf,
        work: TempDir,
        dest: PathBuf,
    }

    impl Case {
        fn new(bytes: &[u8]) -> Self {
            let src = tempfile::tempdir().unwrap();
            let archive = src.path().join("artifact.bin");
            fs::write(&archive, bytes).unwrap();
            let work = tempfile::tempdir().unwrap();
            let dest = work.path().join("app");
            Case {
                _src: src,
                archive,
                work,
                dest,
            }
        }

        fn unpack(&self, limits: &UnpackLimits) -> Result<UnpackSummary, ArtifactError> {
            unpack(&self.archive, &self.dest, limits)
        }

        fn left_in_work(&self) -> Vec<String> {
            fs::read_dir(self.work.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        }
    }

    /// Unpacks an archive that must be refused with `code`, and checks that nothing was left
    /// behind: no `dest`, no temp directory beside it.
    fn refused_with(bytes: &[u8], limits: &UnpackLimits, code: &str) -> ArtifactError {
        let case = Case::new(bytes);
        let err = case.unpack(limits).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(
            fs::symlink_metadata(&case.dest).is_err(),
            "dest exists after {err}"
        );
        assert_eq!(
            case.left_in_work(),
            Vec::<String>::new(),
            "left behind after {err}"
        );
        err
    }

    fn refused(bytes: &[u8], code: &str) -> ArtifactError {
        refused_with(bytes, &limits(), code)
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn tar_gz_unpacks_files_dirs_links_and_keeps_only_the_executable_bit() {
        let archive = Tgz::new()
            .dir("./")
            .manifest()
            .dir("bin/")
            .file("bin/start.sh", SCRIPT, 0o4777)
            .file("lib/a/b/data.txt", b"data", 0o666)
            .link(EntryType::Symlink, "current", "lib/a")
            .link(EntryType::Symlink, "lib/a/b/start", "../../../bin/start.sh")
            .link(EntryType::Symlink, "dangling", "not/there")
            .link(EntryType::Link, "start-again.sh", "bin/start.sh")
            .finish();
        let case = Case::new(&archive);

        let summary = case.unpack(&limits()).unwrap();

        assert_eq!(summary.entries, 9);
        assert_eq!(summary.files, 4);
        assert_eq!(summary.bytes, (MANIFEST.len() + SCRIPT.len() + 4) as u64);
        assert_eq!(summary.manifest.run().command, "./bin/start.sh");
        let d = &case.dest;
        assert_eq!(mode_of(d), 0o755);
        assert_eq!(mode_of(&d.join("bin/start.sh")), 0o755);
        assert_eq!(mode_of(&d.join("lib/a/b/data.txt")), 0o644);
        assert_eq!(mode_of(&d.join("tideway.toml")), 0o644);
        assert_eq!(fs::read(d.join("current/b/data.txt")).unwrap(), b"data");
        assert_eq!(
            fs::read_link(d.join("current")).unwrap(),
            Path::new("lib/a")
        );
        assert_eq!(fs::read(d.join("lib/a/b/start")).unwrap(), SCRIPT);
        assert!(fs::symlink_metadata(d.join("dangling"))
            .unwrap()
            .is_symlink());
        assert_eq!(fs::read(d.join("start-again.sh")).unwrap(), SCRIPT);
        assert_eq!(case.left_in_work(), vec!["app".to_string()]);
    }

    #[test]
    fn zip_unpacks_files_dirs_links_and_keeps_only_the_executable_bit() {
        let archive = zip_archive(|w| {
            zip_file(w, "tideway.toml", MANIFEST, 0o644);
            w.add_directory("bin/", SimpleFileOptions::default())
                .unwrap();
            zip_file(w, "bin/start.sh", b"#!/bin/sh\n", 0o775);
            zip_file(w, "lib/a/data.txt", b"data", 0o666);
            w.add_symlink("lib/link", "a/data.txt", SimpleFileOptions::default())
                .unwrap();
        });
        let case = Case::new(&archive);

        let summary = case.unpack(&limits()).unwrap();

        assert_eq!(summary.entries, 5);
        assert_eq!(summary.files, 3);
        let d = &case.dest;
        assert_eq!(mode_of(&d.join("bin/start.sh")), 0o755);
        assert_eq!(mode_of(&d.join("lib/a/data.txt")), 0o644);
        assert_eq!(fs::read(d.join("lib/link")).unwrap(), b"data");
        assert!(fs::symlink_metadata(d.join("lib/link"))
            .unwrap()
            .is_symlink());
        assert_eq!(case.left_in_work(), vec!["app".to_string()]);
    }

    #[test]
    fn archives_of_a_real_directory_unpack() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        fs::write(root.join("tideway.toml"), MANIFEST).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/start.sh"), SCRIPT).unwrap();
        fs::set_permissions(root.join("bin/start.sh"), Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("bin/start.sh", root.join("start")).unwrap();
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        b.follow_symlinks(false);
        b.append_dir_all(".", root).unwrap();
        let archive = b.into_inner().unwrap().finish().unwrap();
        let case = Case::new(&archive);

        case.unpack(&limits()).unwrap();

        assert_eq!(mode_of(&case.dest.join("bin")), 0o755);
        assert_eq!(mode_of(&case.dest.join("bin/start.sh")), 0o755);
        assert_eq!(fs::read(case.dest.join("start")).unwrap(), SCRIPT);
    }

    #[test]
    fn absolute_names_are_refused() {
        let archive = Tgz::new()
            .manifest()
            .file("/etc/evil", b"x", 0o644)
            .finish();
        let err = refused(&archive, "unsafe_path");
        assert!(
            matches!(&err, ArtifactError::UnsafePath { entry, .. } if entry == "/etc/evil"),
            "{err:?}"
        );
    }

    #[test]
    fn parent_components_are_refused() {
        for name in ["../x", "a/../../x", "a/../b"] {
            let archive = Tgz::new().manifest().file(name, b"x", 0o644).finish();
            let err = refused(&archive, "unsafe_path");
            assert!(
                matches!(&err, ArtifactError::UnsafePath { entry, .. } if entry == name),
                "{err:?}"
            );
        }
    }

    #[test]
    fn empty_file_names_are_refused() {
        let archive = Tgz::new().manifest().file("./", b"x", 0o644).finish();
        refused(&archive, "unsafe_path");
    }

    #[test]
    fn absolute_symlinks_are_refused() {
        let archive = Tgz::new()
            .manifest()
            .link(EntryType::Symlink, "passwd", "/etc/passwd")
            .finish();
        let err = refused(&archive, "unsafe_link");
        assert!(
            matches!(&err, ArtifactError::UnsafeLink { entry, target, .. }
                if entry == "passwd" && target == "/etc/passwd"),
            "{err:?}"
        );
    }

    #[test]
    fn symlinks_climbing_out_are_refused() {
        let archive = Tgz::new()
            .manifest()
            .link(EntryType::Symlink, "a/l", "../../x")
            .finish();
        let err = refused(&archive, "unsafe_link");
        assert!(
            matches!(&err, ArtifactError::UnsafeLink { entry, .. } if entry == "a/l"),
            "{err:?}"
        );
    }

    #[test]
    fn chains_of_inside_links_that_lead_out_are_refused() {
        // Each link stays inside lexically, but `d/l` is the root, so `x` is its parent.
        let archive = Tgz::new()
            .manifest()
            .link(EntryType::Symlink, "d/l", "..")
            .link(EntryType::Symlink, "x", "d/l/..")
            .finish();
        let err = refused(&archive, "unsafe_link");
        assert!(
            matches!(&err, ArtifactError::UnsafeLink { entry, reason, .. }
                if entry == "x" && reason.contains("through another link")),
            "{err:?}"
        );

        let looping = Tgz::new()
            .manifest()
            .link(EntryType::Symlink, "a", "b")
            .link(EntryType::Symlink, "b", "a")
            .finish();
        let err = refused(&looping, "unsafe_link");
        assert!(
            matches!(&err, ArtifactError::UnsafeLink { reason, .. } if reason.contains("loop")),
            "{err:?}"
        );
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let archive = Tgz::new()
            .manifest()
            .dir("real/")
            .link(EntryType::Symlink, "l", "real")
            .file("l/f", b"x", 0o644)
            .finish();
        let err = refused(&archive, "unsafe_path");
        assert!(
            matches!(&err, ArtifactError::UnsafePath { entry, .. } if entry == "l/f"),
            "{err:?}"
        );
    }

    #[test]
    fn repeated_entries_are_refused() {
        let archive = Tgz::new()
            .manifest()
            .file("a", b"1", 0o644)
            .file("a", b"2", 0o644)
            .finish();
        let err = refused(&archive, "unsafe_path");
        assert!(
            matches!(&err, ArtifactError::UnsafePath { entry, reason } if entry == "a" && reason.contains("repeats")),
            "{err:?}"
        );
    }

    #[test]
    fn hardlinks_leaving_the_tree_are_refused() {
        for (target, why) in [
            ("../x", "contains a .. component"),
            ("/etc/passwd", "is absolute"),
            ("missing", "the target is not a file unpacked earlier"),
        ] {
            let archive = Tgz::new()
                .manifest()
                .link(EntryType::Link, "hl", target)
                .finish();
            let err = refused(&archive, "unsafe_link");
            assert!(
                matches!(&err, ArtifactError::UnsafeLink { entry, reason, .. } if entry == "hl" && *reason == why),
                "{err:?}"
            );
        }
    }

    #[test]
    fn devices_and_fifos_are_refused() {
        for (entry_type, kind) in [
            (EntryType::Char, "character device"),
            (EntryType::Block, "block device"),
            (EntryType::Fifo, "fifo"),
        ] {
            let archive = Tgz::new().manifest().special(entry_type, "dev").finish();
            let err = refused(&archive, "special_file");
            assert!(
                matches!(&err, ArtifactError::SpecialFile { entry, kind: k } if entry == "dev" && *k == kind),
                "{err:?}"
            );
        }
    }

    #[test]
    fn too_many_entries_are_refused() {
        let mut tgz = Tgz::new().manifest();
        for i in 0..5 {
            tgz = tgz.file(&format!("f{i}"), b"x", 0o644);
        }
        let limits = UnpackLimits {
            max_entries: 4,
            ..limits()
        };
        let err = refused_with(&tgz.finish(), &limits, "too_many_entries");
        assert!(
            matches!(&err, ArtifactError::TooManyEntries { entry, limit: 4 } if entry == "f3"),
            "{err:?}"
        );
    }

    #[test]
    fn gzip_bombs_are_stopped_by_bytes_written() {
        // Four MiB of zeros compress to a few KiB.
        let zeros = vec![0u8; 4 << 20];
        let archive = Tgz::new().manifest().file("bomb", &zeros, 0o644).finish();
        assert!(archive.len() < 64 * 1024);
        let err = refused(&archive, "unpacked_too_large");
        assert!(
            matches!(&err, ArtifactError::UnpackedTooLarge { entry, limit } if entry == "bomb" && *limit == 1 << 20),
            "{err:?}"
        );

        // The total counts, not each file.
        let half = vec![0u8; 600 * 1024];
        let archive = Tgz::new()
            .manifest()
            .file("a", &half, 0o644)
            .file("b", &half, 0o644)
            .finish();
        let err = refused(&archive, "unpacked_too_large");
        assert!(
            matches!(&err, ArtifactError::UnpackedTooLarge { entry, .. } if entry == "b"),
            "{err:?}"
        );
    }

    #[test]
    fn huge_metadata_records_are_stopped_before_they_are_buffered() {
        // A GNU long-name record is read into memory whole by the tar reader; a bomb can make
        // it any size, so the decompressed stream itself is capped.
        let mut tgz = Tgz::new().manifest();
        let mut h = Tgz::header("././@LongLink", EntryType::GNULongName, 8 << 20, 0o644);
        h.set_cksum();
        tgz.0.append(&h, io::repeat(b'a').take(8 << 20)).unwrap();
        let archive = tgz.file("after", b"x", 0o644).finish();
        let limits = UnpackLimits {
            max_entries: 10,
            max_unpacked_bytes: 64 * 1024,
        };
        refused_with(&archive, &limits, "unpacked_too_large");
    }

    #[test]
    fn zip_parent_components_are_refused() {
        let archive = zip_archive(|w| {
            zip_file(w, "tideway.toml", MANIFEST, 0o644);
            zip_file(w, "../evil", b"x", 0o644);
        });
        let err = refused(&archive, "unsafe_path");
        assert!(
            matches!(&err, ArtifactError::UnsafePath { entry, .. } if entry == "../evil"),
            "{err:?}"
        );
    }

    #[test]
    fn zip_symlinks_leaving_the_tree_are_refused() {
        let archive = zip_archive(|w| {
            zip_file(w, "tideway.toml", MANIFEST, 0o644);
            w.add_symlink("l", "/etc/passwd", SimpleFileOptions::default())
                .unwrap();
        });
        refused(&archive, "unsafe_link");
    }

    #[test]
    fn zip_bombs_are_stopped_by_bytes_written() {
        let archive = zip_archive(|w| {
            zip_file(w, "tideway.toml", MANIFEST, 0o644);
            zip_file(w, "bomb", &vec![0u8; 4 << 20], 0o644);
        });
        refused(&archive, "unpacked_too_large");
    }

    #[test]
    fn a_missing_manifest_is_refused() {
        let archive = Tgz::new().file("app.py", b"print()", 0o644).finish();
        refused(&archive, "missing_manifest");

        // Only the root counts: a manifest one directory down is not the artifact's.
        let nested = Tgz::new()
            .file("app/tideway.toml", MANIFEST, 0o644)
            .finish();
        refused(&nested, "missing_manifest");
    }

    #[test]
    fn an_invalid_manifest_is_refused_naming_the_field() {
        let archive = Tgz::new().file("tideway.toml", b"[run]\n", 0o644).finish();
        let err = refused(&archive, "invalid_manifest");
        assert!(
            matches!(&err, ArtifactError::Manifest(Invalid { field, .. }) if field == "run.command"),
            "{err:?}"
        );

        let archive = Tgz::new()
            .file(
                "tideway.toml",
                b"[run]\ncommand = \"x\"\n[resources]\nmemory_mb = \"lots\"\n",
                0o644,
            )
            .finish();
        let err = refused(&archive, "invalid_manifest");
        assert!(
            matches!(&err, ArtifactError::Manifest(Invalid { field, .. }) if field.contains("resources.memory_mb")),
            "{err:?}"
        );

        let archive = Tgz::new()
            .file(
                "tideway.toml",
                b"[run]\ncommand = \"x\"\nshell = \"sh\"\n",
                0o644,
            )
            .finish();
        let err = refused(&archive, "invalid_manifest");
        assert!(
            matches!(&err, ArtifactError::Manifest(Invalid { field, .. }) if field == "run.shell"),
            "{err:?}"
        );

        // A manifest that is a link, even one inside, is not read.
        let archive = Tgz::new()
            .file("real.toml", MANIFEST, 0o644)
            .link(EntryType::Symlink, "tideway.toml", "real.toml")
            .finish();
        refused(&archive, "invalid_manifest");
    }

    #[test]
    fn unknown_and_corrupt_archives_are_refused() {
        refused(b"just some text", "unknown_archive_format");
        refused(b"", "unknown_archive_format");

        let good = Tgz::new()
            .manifest()
            .file("data", &[7u8; 100_000].repeat(3), 0o644)
            .finish();
        refused(&good[..good.len() / 2], "corrupt_archive");
        refused(&[0x1f, 0x8b, 0, 0, 1, 2, 3], "corrupt_archive");
        refused(b"PK\x03\x04not really a zip", "corrupt_archive");
    }

    #[test]
    fn an_existing_dest_is_left_alone() {
        let case = Case::new(&Tgz::new().manifest().finish());
        fs::create_dir(&case.dest).unwrap();
        fs::write(case.dest.join("keep"), b"mine").unwrap();
        let err = case.unpack(&limits()).unwrap_err();
        assert_eq!(err.code(), "internal");
        assert_eq!(fs::read(case.dest.join("keep")).unwrap(), b"mine");
        assert_eq!(case.left_in_work(), vec!["app".to_string()]);
    }
}
