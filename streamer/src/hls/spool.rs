//! Local spool: finished segments on disk until the object store has them.
//!
//! Every segment a live publish finishes is written here first (a page-cache write and a
//! rename), uploaded from memory while the store keeps up, and deleted once stored. When the
//! store is slow or down the files simply stay, within a disk budget shared by every publish
//! of the process, and are uploaded in order when it is back; nothing is held in memory beyond
//! a few segments. Each publish also keeps a small session record, so a process killed in the
//! middle (SIGKILL, OOM, a drain deadline) leaves enough behind for the next start to upload
//! the rest and end the playlists ([`super::recover`]).
//!
//! Layout, one directory per publish session:
//!
//! ```text
//! <dir>/.lock                                 flock(2)-ed by the process using the spool
//! <dir>/<prefix>.<session>/manifest           prefix, session, target, window, recording
//! <dir>/<prefix>.<session>/playlist.log       append-only: "<sequence> <µs> <0|1>" per
//!                                             segment already named by the playlists
//! <dir>/<prefix>.<session>/<sequence>_<µs>_<0|1>.ts
//!                                             a segment not yet stored (sequence 10 digits,
//!                                             duration in microseconds, discontinuity)
//! ```
//!
//! Files are written to a `.part` name and renamed, so a crash never leaves a torn segment
//! or manifest under its final name. The spool survives the process, not the machine: on
//! Fargate it must sit on storage that outlives the container (a task volume, with the
//! container restart policy) for a restarted container to find it.

use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Default disk budget of the spool: 2 GiB, in bytes (at 2 Mb/s that is ~2.3 stream-hours
/// of store outage, e.g. 100 streams for 80 s; size it as streams × bitrate × outage).
pub const DEFAULT_BUDGET_BYTES: u64 = 2 << 30;

/// Name of the per-session record file.
const MANIFEST: &str = "manifest";
/// Name of the per-session playlist log.
const LOG: &str = "playlist.log";
/// First line of a manifest (format version).
const MANIFEST_MAGIC: &str = "streamstack-spool-session 1";

/// The default spool directory: `$TMPDIR/streamstack-spool` (`/tmp/streamstack-spool`).
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("streamstack-spool")
}

/// Where the spool lives and how much disk it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Spool directory (created if missing), [`default_dir`] by default.
    pub dir: PathBuf,
    /// Disk budget for spooled segments, bytes ([`DEFAULT_BUDGET_BYTES`] by default).
    pub budget_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { dir: default_dir(), budget_bytes: DEFAULT_BUDGET_BYTES }
    }
}

/// A spool operation failed.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// File system error on `path`.
    #[error("spool {}: {source}", path.display())]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Another process holds the spool directory's lock.
    #[error("spool directory {} is in use by another streamer process", .0.display())]
    Locked(PathBuf),
    /// Writing a segment of `needed` bytes would exceed the budget.
    #[error("spool budget exhausted: {used} of {budget} bytes used, {needed} more needed")]
    Full {
        /// [`SpoolConfig::budget_bytes`].
        budget: u64,
        /// Bytes spooled now.
        used: u64,
        /// Size of the refused segment.
        needed: u64,
    },
    /// A session record that cannot be read back.
    #[error("spool session {}: {reason}", path.display())]
    Corrupt {
        /// Session directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// The spool of one process: a locked directory and a byte budget shared by its publishes.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    budget: u64,
    used: AtomicU64,
    leftovers: Mutex<Vec<PathBuf>>,
    /// Holds the `flock` for the life of the spool (released by the OS if the process dies).
    _lock: File,
}

impl Spool {
    /// Opens (creating) the spool directory, locks it against other processes, counts the
    /// bytes already spooled and remembers the sessions a previous run left behind, for
    /// [`super::recover`]. Half-written (`.part`) files are deleted.
    ///
    /// # Errors
    /// [`SpoolError::Locked`] when another process uses the directory, [`SpoolError::Io`] when
    /// it cannot be created or read.
    pub fn open(config: &SpoolConfig) -> Result<Arc<Self>, SpoolError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock_exclusive(&lock).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => SpoolError::Locked(dir.clone()),
            _ => SpoolError::Io { path: lock_path.clone(), source: e },
        })?;
        let mut used = 0;
        let mut leftovers = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            if !path.is_dir() {
                continue;
            }
            for file in fs::read_dir(&path).map_err(io_err(&path))? {
                let file = file.map_err(io_err(&path))?.path();
                if file.extension().is_some_and(|e| e == "part") {
                    let _ = fs::remove_file(&file);
                } else if file.extension().is_some_and(|e| e == "ts") {
                    used += fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                }
            }
            leftovers.push(path);
        }
        leftovers.sort();
        Ok(Arc::new(Self {
            dir,
            budget: config.budget_bytes,
            used: AtomicU64::new(used),
            leftovers: Mutex::new(leftovers),
            _lock: lock,
        }))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk budget, bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.budget
    }

    /// Bytes of segments spooled now (left by earlier runs included).
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// The record of a new publish session. Nothing is written until its first segment, so a
    /// publish that never produced one leaves nothing behind.
    pub fn session(self: &Arc<Self>, manifest: SessionManifest) -> SessionSpool {
        let name = format!("{}.{}", file_safe(&manifest.prefix), file_safe(&manifest.session));
        SessionSpool {
            spool: Arc::clone(self),
            dir: self.dir.join(name),
            manifest,
            created: AtomicBool::new(false),
        }
    }

    /// Session directories found by [`Spool::open`], oldest name first; each is returned once.
    pub(crate) fn take_leftovers(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn reserve(&self, needed: u64) -> Result<(), SpoolError> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(needed).filter(|total| *total <= self.budget)
            })
            .map(|_| ())
            .map_err(|used| SpoolError::Full { budget: self.budget, used, needed })
    }

    fn release(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            Some(used.saturating_sub(bytes))
        });
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is passed.
    match unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(unix))]
fn lock_exclusive(_: &File) -> std::io::Result<()> {
    Ok(())
}

/// `s` with every character outside `[A-Za-z0-9_-]` replaced by `_` (a directory name).
fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// What a session's playlists are rebuilt from: the fields of the uploader configuration
/// that name and shape them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionManifest {
    /// Key prefix of the channel, e.g. `live/<channel-id>`.
    pub prefix: String,
    /// Publish session: the segments' folder under the prefix (and the lease session).
    pub session: String,
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_secs: u32,
    /// Segments in the live playlist.
    pub window: usize,
    /// Whether a `recording.m3u8` is kept in the session folder.
    pub recording: bool,
    /// The object store written to ([`crate::sink::ObjectSink::location`]).
    pub sink: String,
}

impl SessionManifest {
    fn render(&self) -> String {
        format!(
            "{MANIFEST_MAGIC}\nprefix={}\nsession={}\ntarget_secs={}\nwindow={}\nrecording={}\nsink={}\n",
            self.prefix, self.session, self.target_secs, self.window, self.recording as u8, self.sink
        )
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MANIFEST_MAGIC) {
            return Err("not a spool manifest".into());
        }
        let mut fields = std::collections::HashMap::new();
        for line in lines {
            let (k, v) = line.split_once('=').ok_or_else(|| format!("bad line {line:?}"))?;
            fields.insert(k, v);
        }
        let get = |k: &str| fields.get(k).copied().ok_or_else(|| format!("missing {k}"));
        let num = |k: &str| get(k)?.parse::<u64>().map_err(|e| format!("{k}: {e}"));
        Ok(Self {
            prefix: get("prefix")?.to_owned(),
            session: get("session")?.to_owned(),
            target_secs: u32::try_from(num("target_secs")?).map_err(|e| e.to_string())?,
            window: usize::try_from(num("window")?).map_err(|e| e.to_string())?,
            recording: num("recording")? != 0,
            sink: get("sink")?.to_owned(),
        })
    }
}

/// One segment as the playlists list it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentEntry {
    /// Media sequence number (RFC 8216 §4.3.3.2).
    pub sequence: u64,
    /// Duration, seconds (kept to the microsecond).
    pub duration: f64,
    /// `EXT-X-DISCONTINUITY` before it (RFC 8216 §4.3.2.3).
    pub discontinuity: bool,
}

impl SegmentEntry {
    fn micros(&self) -> u64 {
        (self.duration.max(0.0) * 1e6).round() as u64
    }

    /// `<sequence> <µs> <0|1>`, the fields shared by log lines and file names.
    fn fields(&self, sep: char) -> String {
        format!("{:010}{sep}{}{sep}{}", self.sequence, self.micros(), self.discontinuity as u8)
    }

    fn parse(s: &str, sep: char) -> Option<Self> {
        let mut it = s.split(sep);
        let sequence = it.next()?.parse().ok()?;
        let micros: u64 = it.next()?.parse().ok()?;
        let discontinuity = match it.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        it.next().is_none().then_some(Self {
            sequence,
            duration: micros as f64 / 1e6,
            discontinuity,
        })
    }
}

/// A segment waiting in the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledSegment {
    /// The segment's playlist entry.
    pub entry: SegmentEntry,
    path: PathBuf,
    len: u64,
}

/// The spool record of one publish session. Methods do blocking file I/O: call them from
/// `tokio::task::spawn_blocking` in async code.
#[derive(Debug)]
pub struct SessionSpool {
    spool: Arc<Spool>,
    dir: PathBuf,
    manifest: SessionManifest,
    created: AtomicBool,
}

/// A session a previous run left in the spool, read back by [`SessionSpool::reopen`].
#[derive(Debug)]
pub struct Leftover {
    /// The session record, for uploading and committing the rest.
    pub session: SessionSpool,
    /// Segments already named by its playlists, in log order.
    pub logged: Vec<SegmentEntry>,
    /// Segments still to upload, by sequence.
    pub spooled: Vec<SpooledSegment>,
}

impl SessionSpool {
    /// The session's manifest.
    pub fn manifest(&self) -> &SessionManifest {
        &self.manifest
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn create(&self) -> Result<(), SpoolError> {
        if self.created.load(Ordering::SeqCst) {
            return Ok(());
        }
        let m = &self.manifest;
        if [&m.prefix, &m.session, &m.sink].iter().any(|v| v.contains('\n')) {
            return Err(SpoolError::Corrupt {
                path: self.dir.clone(),
                reason: "line break in prefix, session or sink".into(),
            });
        }
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        write_atomic(&self.dir.join(MANIFEST), self.manifest.render().as_bytes())?;
        self.created.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Writes a finished segment to the spool (creating the session record on the first one).
    ///
    /// # Errors
    /// [`SpoolError::Full`] when the budget has no room for it, [`SpoolError::Io`] otherwise;
    /// nothing is left on disk and no budget is held then.
    pub fn write_segment(
        &self,
        entry: SegmentEntry,
        body: &[u8],
    ) -> Result<SpooledSegment, SpoolError> {
        let len = body.len() as u64;
        self.spool.reserve(len)?;
        let written = self.create().and_then(|()| {
            let path = self.dir.join(format!("{}.ts", entry.fields('_')));
            write_atomic(&path, body).map(|()| SpooledSegment { entry, path, len })
        });
        if written.is_err() {
            self.spool.release(len);
        }
        written
    }

    /// Reads a spooled segment back.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the file is gone or unreadable.
    pub fn read_segment(&self, segment: &SpooledSegment) -> Result<Bytes, SpoolError> {
        fs::read(&segment.path).map(Bytes::from).map_err(io_err(&segment.path))
    }

    /// Records that `entry` is stored and named by the playlists from now on (one log line),
    /// then deletes its spooled file, if any, and returns its bytes to the budget.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the log cannot be appended (the file is then kept).
    pub fn commit(
        &self,
        entry: SegmentEntry,
        spooled: Option<&SpooledSegment>,
    ) -> Result<(), SpoolError> {
        self.create()?;
        let log = self.dir.join(LOG);
        let mut file =
            OpenOptions::new().create(true).append(true).open(&log).map_err(io_err(&log))?;
        file.write_all(format!("{}\n", entry.fields(' ')).as_bytes()).map_err(io_err(&log))?;
        if let Some(segment) = spooled {
            self.discard(segment);
        }
        Ok(())
    }

    /// Deletes a spooled segment file and returns its bytes to the budget.
    pub fn discard(&self, segment: &SpooledSegment) {
        match fs::remove_file(&segment.path) {
            Ok(()) => self.spool.release(segment.len),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %segment.path.display(), error = %e, "spool delete failed")
            }
        }
    }

    /// Removes the whole session record after a clean finish (or a completed recovery),
    /// returning the bytes of any file still in it to the budget.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the directory cannot be removed.
    pub fn remove(&self) -> Result<(), SpoolError> {
        let used = spooled_files(&self.dir).map(|s| s.iter().map(|s| s.len).sum()).unwrap_or(0);
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::Io { path: self.dir.clone(), source: e }),
        }
        self.spool.release(used);
        self.created.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Reads back a session directory left by a previous run: its manifest, the log of
    /// segments its playlists named (a torn last line is ignored) and its spooled segments.
    ///
    /// # Errors
    /// [`SpoolError::Corrupt`] without a readable manifest (a directory whose manifest was
    /// never written holds no segment either), [`SpoolError::Io`] when it cannot be listed.
    pub fn reopen(spool: &Arc<Spool>, dir: &Path) -> Result<Leftover, SpoolError> {
        let manifest_path = dir.join(MANIFEST);
        let text = fs::read_to_string(&manifest_path).map_err(|e| SpoolError::Corrupt {
            path: dir.to_owned(),
            reason: format!("manifest: {e}"),
        })?;
        let manifest = SessionManifest::parse(&text)
            .map_err(|reason| SpoolError::Corrupt { path: manifest_path, reason })?;
        let logged = match fs::read_to_string(dir.join(LOG)) {
            Ok(text) => text.lines().filter_map(|l| SegmentEntry::parse(l, ' ')).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(SpoolError::Io { path: dir.join(LOG), source: e }),
        };
        let spooled = spooled_files(dir)?;
        let session = SessionSpool {
            spool: Arc::clone(spool),
            dir: dir.to_owned(),
            manifest,
            created: AtomicBool::new(true),
        };
        Ok(Leftover { session, logged, spooled })
    }
}

/// The segment files of a session directory, by sequence.
fn spooled_files(dir: &Path) -> Result<Vec<SpooledSegment>, SpoolError> {
    let mut out = Vec::new();
    for file in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = file.map_err(io_err(dir))?.path();
        let entry = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ts"))
            .and_then(|n| SegmentEntry::parse(n, '_'));
        if let Some(entry) = entry {
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            out.push(SpooledSegment { entry, path, len });
        }
    }
    out.sort_by_key(|s| s.entry.sequence);
    Ok(out)
}

/// Writes `body` to `path` through `<path>.part` and a rename.
fn write_atomic(path: &Path, body: &[u8]) -> Result<(), SpoolError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, body).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
