//! Captured app output: the JSON-lines file format, the shim's rotating writer, and the
//! driver's readers (whole files, the last N lines, and a cursor that follows a growing,
//! rotating file).
//!
//! One line of `output.log` is `{"t":"<rfc3339 ms>","s":"stdout|stderr","l":"<line>"}`. The
//! shim timestamps lines as it reads them, so lines of different instances can be merged by
//! time.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tideway_api_types::LogStream;

use super::layout::OUTPUT;

/// Longer lines are split so that one runaway line cannot grow a buffer without bound.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// One line of `output.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogRecord {
    #[serde(with = "millis")]
    pub t: DateTime<Utc>,
    pub s: LogStream,
    pub l: String,
}

/// RFC 3339 with milliseconds, so the files stay readable and sort as text.
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

impl LogRecord {
    pub fn to_line(&self) -> String {
        // Serializing a struct of a string, an enum and a timestamp cannot fail; fall back to
        // a hand-written line rather than lose the output if it ever did.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"t\":\"{}\",\"s\":\"stderr\",\"l\":\"(unserializable line)\"}}",
                self.t.to_rfc3339_opts(SecondsFormat::Millis, true)
            )
        })
    }

    pub fn parse(line: &str) -> Option<LogRecord> {
        serde_json::from_str(line).ok()
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`], without cutting a UTF-8
/// character in two; invalid UTF-8 is replaced, never dropped.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<String>) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                self.pending.extend_from_slice(&window[..nl]);
                out.push(self.take_all());
                bytes = &bytes[nl + 1..];
            } else {
                self.pending.extend_from_slice(window);
                bytes = &bytes[window.len()..];
                if self.pending.len() >= MAX_LINE_BYTES {
                    out.push(self.take_full());
                }
            }
        }
    }

    /// The unterminated rest, at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take_all())
    }

    fn take_all(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Emits a full buffer, keeping an incomplete trailing UTF-8 sequence for the next line.
    fn take_full(&mut self) -> String {
        let cut = match std::str::from_utf8(&self.pending) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => self.pending.len(),
        };
        let rest = self.pending.split_off(cut);
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        line
    }
}

/// Appends records to `output.log`, rotating it to `output.log.1` … `.N` when the next line
/// would push it over `max_bytes`.
pub(crate) struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    files: usize,
    file: File,
    size: u64,
}

impl LogWriter {
    pub fn open(dir: &Path, max_bytes: u64, files: usize) -> std::io::Result<LogWriter> {
        let path = dir.join(OUTPUT);
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path,
            max_bytes,
            files,
            file,
            size,
        })
    }

    pub fn append(&mut self, record: &LogRecord) -> std::io::Result<()> {
        let mut line = record.to_line();
        line.push('\n');
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.files == 0 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.files).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn rotated(base: &Path, n: usize) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotated files of an instance, newest first (`output.log.1`, `.2`, …), as far as they exist.
fn rotated_files(dir: &Path) -> Vec<PathBuf> {
    let base = dir.join(OUTPUT);
    (1..)
        .map(|n| rotated(&base, n))
        .take_while(|p| p.exists())
        .collect()
}

/// Every record of a file; unparsable lines are skipped.
fn read_file(path: &Path) -> Vec<LogRecord> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(LogRecord::parse)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The last `n` records of an instance, across rotated files, oldest first.
pub(crate) fn tail(dir: &Path, n: usize) -> Vec<LogRecord> {
    let mut newest_first = vec![dir.join(OUTPUT)];
    newest_first.extend(rotated_files(dir));
    let mut out: VecDeque<LogRecord> = VecDeque::new();
    for path in newest_first {
        if out.len() >= n {
            break;
        }
        let want = n - out.len();
        let records = read_file_end(&path, want);
        for record in records.into_iter().rev().take(want) {
            out.push_front(record);
        }
    }
    out.into()
}

/// Records at the end of a file: only its last bytes are read when they hold `want` records,
/// so the tail of a 10 MiB file costs little (it is read on every exit of an app).
fn read_file_end(path: &Path, want: usize) -> Vec<LogRecord> {
    const CHUNK: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > CHUNK && file.seek(SeekFrom::Start(len - CHUNK)).is_ok() {
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            // The first line is probably cut; skip it.
            let start = bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| i + 1);
            let records: Vec<LogRecord> = String::from_utf8_lossy(&bytes[start..])
                .lines()
                .filter_map(LogRecord::parse)
                .collect();
            if records.len() >= want {
                return records;
            }
        }
    }
    read_file(path)
}

/// Every record of the rotated files of an instance, oldest first (`output.log` itself is read
/// through a [`Cursor`]).
pub(crate) fn read_rotated(dir: &Path) -> Vec<LogRecord> {
    let mut files = rotated_files(dir);
    files.reverse();
    files.iter().flat_map(|p| read_file(p)).collect()
}

/// A read position in an instance's `output.log` that survives rotation: it remembers the
/// file's inode, and when `output.log` is a new file it finishes the old one (now
/// `output.log.1`) before starting the new one from the beginning.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    inode: Option<u64>,
    offset: u64,
}

impl Cursor {
    /// Complete records appended since the last call.
    pub fn poll(&mut self, dir: &Path) -> Vec<LogRecord> {
        let base = dir.join(OUTPUT);
        let Ok(meta) = std::fs::metadata(&base) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if self.inode.is_some_and(|ino| ino != meta.ino()) {
            // Rotated: finish the old file if it is still the first rotated one.
            let old = rotated(&base, 1);
            if std::fs::metadata(&old).is_ok_and(|m| Some(m.ino()) == self.inode) {
                self.read_from(&old, &mut out);
            }
            self.offset = 0;
        }
        self.inode = Some(meta.ino());
        if meta.len() < self.offset {
            // Truncated in place (a writer that keeps no rotated files).
            self.offset = 0;
        }
        self.read_from(&base, &mut out);
        out
    }

    fn read_from(&mut self, path: &Path, out: &mut Vec<LogRecord>) {
        let Ok(mut file) = File::open(path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return;
        }
        // Only whole lines: a line being written is picked up by the next poll.
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        self.offset += end as u64 + 1;
        out.extend(
            String::from_utf8_lossy(&bytes[..end])
                .lines()
                .filter_map(LogRecord::parse),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> LogRecord {
        LogRecord {
            t: DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
            s: LogStream::Stdout,
            l: line.to_string(),
        }
    }

    #[test]
    fn record_json_round_trip() {
        let r = record("hello \"world\"\tü");
        let line = r.to_line();
        assert_eq!(
            line,
            r#"{"t":"2024-05-01T10:00:00.123Z","s":"stdout","l":"hello \"world\"\tü"}"#
        );
        assert_eq!(LogRecord::parse(&line), Some(r));
        assert_eq!(LogRecord::parse("not json"), None);
    }

    #[test]
    fn splitter_splits_lines_and_caps_their_length() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.push(b"one\r\ntw", &mut out);
        s.push(b"o\nthree", &mut out);
        assert_eq!(out, vec!["one", "two"]);
        assert_eq!(s.finish().as_deref(), Some("three"));
        assert_eq!(s.finish(), None);

        let mut out = Vec::new();
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        s.push(&long, &mut out);
        s.push(b"\n", &mut out);
        let lens: Vec<usize> = out.iter().map(String::len).collect();
        assert_eq!(lens, vec![MAX_LINE_BYTES, MAX_LINE_BYTES, 10]);
    }

    #[test]
    fn splitter_never_cuts_a_character() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        let mut bytes = vec![b'a'; MAX_LINE_BYTES - 1];
        bytes.extend_from_slice("é\n".as_bytes()); // two bytes straddling the limit
        s.push(&bytes, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE_BYTES - 1);
        assert_eq!(out[1], "é");
    }

    #[test]
    fn writer_rotates_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = record("line 00").to_line().len() as u64 + 1;
        // Room for three lines per file, two rotated files kept.
        let mut w = LogWriter::open(dir.path(), line_len * 3, 2).unwrap();
        for i in 0..10 {
            w.append(&record(&format!("line {i:02}"))).unwrap();
        }
        let lines = |name: &str| -> Vec<String> {
            read_file(&dir.path().join(name))
                .into_iter()
                .map(|r| r.l)
                .collect()
        };
        assert_eq!(lines("output.log"), vec!["line 09"]);
        assert_eq!(lines("output.log.1"), vec!["line 06", "line 07", "line 08"]);
        assert_eq!(lines("output.log.2"), vec!["line 03", "line 04", "line 05"]);
        assert!(!dir.path().join("output.log.3").exists());

        let last: Vec<String> = tail(dir.path(), 5).into_iter().map(|r| r.l).collect();
        assert_eq!(
            last,
            vec!["line 05", "line 06", "line 07", "line 08", "line 09"]
        );
        assert_eq!(read_rotated(dir.path()).len(), 6);
    }

    #[test]
    fn tail_of_a_large_file_reads_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), u64::MAX, 3).unwrap();
        for i in 0..20_000 {
            w.append(&record(&format!("line {i:05}"))).unwrap();
        }
        let last: Vec<String> = tail(dir.path(), 3).into_iter().map(|r| r.l).collect();
        assert_eq!(last, vec!["line 19997", "line 19998", "line 19999"]);
        assert_eq!(tail(dir.path(), 20_000).len(), 20_000);
    }

    #[test]
    fn cursor_follows_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = record("line 00").to_line().len() as u64 + 1;
        let mut w = LogWriter::open(dir.path(), line_len * 2, 3).unwrap();
        let mut cursor = Cursor::default();
        assert!(cursor.poll(dir.path()).is_empty());
        w.append(&record("line 00")).unwrap();
        assert_eq!(cursor.poll(dir.path()).len(), 1);
        w.append(&record("line 01")).unwrap();
        w.append(&record("line 02")).unwrap(); // rotates: 00, 01 move to .1
        let got: Vec<String> = cursor.poll(dir.path()).into_iter().map(|r| r.l).collect();
        assert_eq!(got, vec!["line 01", "line 02"]);
        assert!(cursor.poll(dir.path()).is_empty());

        // A partial line is left for the next poll.
        let mut f = open_append(&dir.path().join(OUTPUT)).unwrap();
        let full = record("line 03").to_line();
        f.write_all(&full.as_bytes()[..10]).unwrap();
        assert!(cursor.poll(dir.path()).is_empty());
        f.write_all(&full.as_bytes()[10..]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(cursor.poll(dir.path()).len(), 1);
    }
}
