//! Packing an app directory into the tar.gz artifact `tideway deploy` uploads.
//!
//! What goes in: every file under the directory, hidden ones included, except what a
//! `.gitignore` or `.tidewayignore` inside it excludes and any `.git` directory or file.
//! Only ignore files inside the directory count (not its parents, not the user's global git
//! excludes), so the same directory packs the same way on every machine. Entries are sorted
//! and carry no owner, so an unchanged tree packs to the same bytes and digest.
//!
//! Symlinks are stored as symlinks, never followed; regular files keep only whether they are
//! executable (`0755` or `0644`); other file types (sockets, fifos, devices) are skipped with
//! a warning since the server refuses them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use flate2::write::GzEncoder;
use flate2::Compression;
use ignore::WalkBuilder;
use tar::{EntryType, Header};

/// The manifest every artifact must carry at its root.
pub const MANIFEST_FILE: &str = "tideway.toml";
/// Ignore file read in addition to `.gitignore`, with the same syntax.
pub const IGNORE_FILE: &str = ".tidewayignore";

/// What [`pack`] put into the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackSummary {
    /// Regular files and symlinks (directories are not counted).
    pub files: u64,
    /// Bytes of regular file contents, before compression.
    pub content_bytes: u64,
    /// Entries left out for a reason the user should hear about.
    pub warnings: Vec<String>,
}

/// Checks that `dir` is a directory with a `tideway.toml`, before any packing.
pub fn check_app_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let manifest = dir.join(MANIFEST_FILE);
    match fs::metadata(&manifest) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => bail!("{} is not a regular file", manifest.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{} has no {MANIFEST_FILE}: run deploy in the app's directory or pass that \
             directory as DIR",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", manifest.display())),
    }
}

/// Writes `dir` as a gzip-compressed tar stream to `out`.
pub fn pack<W: Write>(dir: &Path, out: W) -> anyhow::Result<PackSummary> {
    check_app_dir(dir)?;
    let mut builder = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    // Symlinks are archived as links; the builder must not read through them.
    builder.follow_symlinks(false);
    let mut summary = PackSummary::default();
    let mut has_manifest = false;

    for entry in walker(dir).build() {
        let entry = entry.map_err(|e| anyhow!("walking {}: {e}", dir.display()))?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let name = archive_name(dir, path)?;
        // `DirEntry::file_type` is that of the entry itself, since links are not followed.
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            let mut header = header(EntryType::Directory, 0o755, mtime(path)?);
            builder
                .append_data(&mut header, &name, io::empty())
                .with_context(|| format!("packing {}", path.display()))?;
        } else if file_type.is_symlink() {
            let target =
                fs::read_link(path).with_context(|| format!("reading link {}", path.display()))?;
            let mut header = header(EntryType::Symlink, 0o777, mtime(path)?);
            builder
                .append_link(&mut header, &name, &target)
                .with_context(|| format!("packing {}", path.display()))?;
            summary.files += 1;
        } else if file_type.is_file() {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            // Size and mode from the open file, so they describe the bytes actually read.
            let meta = file
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?;
            let mode = if is_executable(&meta) { 0o755 } else { 0o644 };
            let mut header = header(EntryType::Regular, mode, mtime_of(&meta));
            header.set_size(meta.len());
            let data = Exact {
                inner: file.take(meta.len()),
                left: meta.len(),
                path,
            };
            builder
                .append_data(&mut header, &name, data)
                .with_context(|| format!("packing {}", path.display()))?;
            summary.files += 1;
            summary.content_bytes += meta.len();
            has_manifest |= name == Path::new(MANIFEST_FILE);
        } else {
            summary.warnings.push(format!(
                "skipped {}: not a regular file, directory or symlink",
                name.display()
            ));
        }
    }
    if !has_manifest {
        bail!(
            "{MANIFEST_FILE} is excluded by .gitignore or {IGNORE_FILE}; the artifact needs it \
             at its root"
        );
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|mut out| out.flush())
        .context("writing the archive")?;
    Ok(summary)
}

/// The walk: `.gitignore` and `.tidewayignore` files inside `dir` only, hidden files
/// included, `.git` left out, links not followed, sorted by name.
fn walker(dir: &Path) -> WalkBuilder {
    let mut walk = WalkBuilder::new(dir);
    walk.hidden(false)
        .follow_links(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .git_ignore(true)
        // Honour .gitignore whether or not the directory is inside a git repository.
        .require_git(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git");
    walk
}

/// `path` relative to `dir`, as the archive stores it: no leading `./`, never absolute.
fn archive_name(dir: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    let rel = path
        .strip_prefix(dir)
        .with_context(|| format!("{} is outside {}", path.display(), dir.display()))?;
    if rel.to_str().is_none() {
        bail!(
            "{} has a name that is not UTF-8, which the server refuses",
            path.display()
        );
    }
    // The walk only yields normal components below `dir`; keep it that way.
    let clean: PathBuf = rel
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if clean.as_os_str().is_empty()
        || clean
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!("unexpected path {} while packing", path.display());
    }
    Ok(clean)
}

fn header(kind: EntryType, mode: u32, mtime: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

fn mtime(path: &Path) -> anyhow::Result<u64> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(mtime_of(&meta))
}

/// Seconds since the epoch; 0 for times the platform cannot give or that predate 1970.
fn mtime_of(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// Reads exactly `left` bytes or fails: a file that shrinks while being packed would
/// otherwise leave a tar entry shorter than its header says.
struct Exact<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being packed", self.path.display()),
            ));
        }
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flate2::read::GzDecoder;

    use super::*;

    /// `(type, mode, link target)` of each entry by name.
    type Listing = BTreeMap<String, (EntryType, u32, Option<String>)>;

    fn unpack_listing(archive: &[u8]) -> Listing {
        let mut tar = tar::Archive::new(GzDecoder::new(archive));
        let mut out = Listing::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let header = entry.header();
            let target = entry
                .link_name()
                .unwrap()
                .map(|t| t.to_string_lossy().into_owned());
            let previous = out.insert(
                name.clone(),
                (header.entry_type(), header.mode().unwrap(), target),
            );
            assert!(previous.is_none(), "{name} twice");
        }
        out
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn packs_what_ignore_files_allow_with_links_and_modes() {
        use std::os::unix::fs::{symlink, PermissionsExt};

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "tideway.toml", "[run]\ncommand = \"./run.sh\"\n");
        write(root, "run.sh", "#!/bin/sh\nexec ./server\n");
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        write(root, "src/main.py", "print('hi')\n");
        write(root, ".env.example", "A=1\n");
        write(root, ".gitignore", "*.log\n/build/\n");
        write(root, ".tidewayignore", "secrets.txt\ndocs/\n");
        write(root, "app.log", "noise");
        write(root, "build/out.bin", "x");
        write(root, "secrets.txt", "hunter2");
        write(root, "docs/readme.md", "# docs");
        // A nested .gitignore applies below its own directory only.
        write(root, "src/.gitignore", "cache/\n!keep.log\n");
        write(root, "src/cache/x.pyc", "bytecode");
        write(root, "src/keep.log", "kept by negation");
        write(root, "src/other.log", "ignored from the root file");
        write(root, "other/cache/y.txt", "not under src, so kept");
        write(root, ".git/HEAD", "ref: refs/heads/main\n");
        write(root, "sub/.git", "gitdir: ../.git/modules/sub\n");
        write(root, "sub/lib.py", "");
        fs::create_dir(root.join("empty")).unwrap();
        symlink("src/main.py", root.join("main-link")).unwrap();
        // A link to a directory is stored as a link, not walked into.
        symlink("src", root.join("src-link")).unwrap();

        let mut archive = Vec::new();
        let summary = pack(root, &mut archive).unwrap();
        let listing = unpack_listing(&archive);

        let names: Vec<&str> = listing.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                ".env.example",
                ".gitignore",
                ".tidewayignore",
                "empty",
                "main-link",
                "other",
                "other/cache",
                "other/cache/y.txt",
                "run.sh",
                "src",
                "src-link",
                "src/.gitignore",
                "src/keep.log",
                "src/main.py",
                "sub",
                "sub/lib.py",
                "tideway.toml",
            ]
        );
        assert_eq!(listing["run.sh"].0, EntryType::Regular);
        assert_eq!(listing["run.sh"].1, 0o755);
        assert_eq!(listing["src/main.py"].1, 0o644);
        assert_eq!(listing["src"].0, EntryType::Directory);
        assert_eq!(
            listing["main-link"],
            (EntryType::Symlink, 0o777, Some("src/main.py".to_owned()))
        );
        assert_eq!(listing["src-link"].0, EntryType::Symlink);
        // 10 regular files and 2 links.
        assert_eq!(summary.files, 12);
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    }

    #[test]
    fn same_tree_packs_to_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tideway.toml", "[run]\ncommand = \"x\"\n");
        write(dir.path(), "a/b.txt", "b");
        let (mut one, mut two) = (Vec::new(), Vec::new());
        pack(dir.path(), &mut one).unwrap();
        pack(dir.path(), &mut two).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn refuses_a_directory_without_manifest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "app.py", "");
        let err = pack(dir.path(), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("has no tideway.toml"), "{err}");

        let err = check_app_dir(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn refuses_an_ignored_manifest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tideway.toml", "[run]\ncommand = \"x\"\n");
        write(dir.path(), ".tidewayignore", "*.toml\n");
        let err = pack(dir.path(), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("excluded"), "{err}");
    }

    #[test]
    fn names_are_relative_even_for_dot() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tideway.toml", "[run]\ncommand = \"x\"\n");
        let name = archive_name(&dir.path().join("."), &dir.path().join("./tideway.toml"));
        assert_eq!(name.unwrap(), Path::new("tideway.toml"));
        assert!(archive_name(Path::new("/a"), Path::new("/b/c")).is_err());
        assert_eq!(
            archive_name(Path::new("."), Path::new("./a/b")).unwrap(),
            Path::new("a/b")
        );
    }

    #[test]
    fn tidewayignore_can_bring_back_what_gitignore_leaves_out() {
        // Typical: build output is kept out of git but is exactly what gets deployed.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tideway.toml", "[run]\ncommand = \"x\"\n");
        write(dir.path(), ".gitignore", "dist/\nnode_modules/\n");
        write(dir.path(), ".tidewayignore", "!dist/\n");
        write(dir.path(), "dist/app.js", "");
        write(dir.path(), "node_modules/x/index.js", "");
        let mut archive = Vec::new();
        pack(dir.path(), &mut archive).unwrap();
        let names: Vec<String> = unpack_listing(&archive).into_keys().collect();
        assert!(names.contains(&"dist/app.js".to_owned()), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("node_modules")),
            "{names:?}"
        );
    }
}
