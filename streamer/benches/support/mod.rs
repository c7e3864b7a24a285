//! Whole-process accounting shared by the benchmarks: what the kernel counts for a child
//! process (never timers inside the measured program).
//!
//! - [`run_reaped`] / [`reap`]: CPU time and peak RSS of a finished child from `wait4(2)`'s
//!   `rusage` (user + system seconds of all its threads; `ru_maxrss` in KiB).
//! - [`ProcTree`]: CPU seconds (`utime + stime` of `/proc/<pid>/stat`, clock ticks) and
//!   `VmRSS` / `VmHWM` (`/proc/<pid>/status`, KiB) of a running process and its
//!   descendants, for sampling a steady window of a long-running server.
//!
//! Caveat of `ru_maxrss` on Linux: `execve` carries the peak RSS of the pre-exec image into
//! the new one (`setmax_mm_hiwater_rss`), and `std::process::Command` spawns with
//! `CLONE_VM`, so a child's `ru_maxrss` is max(its own peak, the spawning process's peak).
//! [`spawn_floor_kib`] measures that floor so a bench can show it is below what it reports.

#![allow(dead_code)] // each bench uses a different part of this module

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the kernel accounted for one finished child.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Wall-clock seconds from spawn to reaping.
    pub wall: f64,
    /// User + system CPU seconds of the child (all threads, plus any children it reaped).
    pub cpu: f64,
    /// Peak resident set, KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// Exit code, or `None` when a signal ended it.
    pub exit_code: Option<i32>,
}

fn timeval_secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Waits for `pid` (a child of this process that nothing else waits on) with `wait4` and
/// returns its accounting. With `deadline`, polls and returns `None` if the child is still
/// running then (it is left running).
pub fn reap(pid: u32, started: Instant, deadline: Option<Instant>) -> io::Result<Option<Usage>> {
    let pid = pid as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, fully written by wait4 on success.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let flags = if deadline.is_some() { libc::WNOHANG } else { 0 };
        // SAFETY: status and usage point to live locals; pid is our own child.
        let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if rc == pid {
            break;
        }
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        match deadline {
            Some(d) if Instant::now() >= d => return Ok(None),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Some(Usage {
        wall: started.elapsed().as_secs_f64(),
        cpu: timeval_secs(usage.ru_utime) + timeval_secs(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        exit_code,
    }))
}

/// Runs `cmd` to completion (stdout discarded, stderr inherited) and returns its accounting.
///
/// # Panics
/// When the command cannot be started or exits unsuccessfully: a bench must not print
/// figures of a failed run.
// The child is reaped by `wait4` in `reap`, which std cannot see.
#[allow(clippy::zombie_processes)]
pub fn run_reaped(cmd: &mut Command) -> Usage {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let usage = reap(child.id(), started, None)
        .unwrap_or_else(|e| panic!("wait4 {cmd:?}: {e}"))
        .expect("blocking wait4 returns a usage");
    assert_eq!(usage.exit_code, Some(0), "{cmd:?} failed");
    usage
}

/// `ru_maxrss` of `/bin/true` spawned the way [`run_reaped`] spawns: the lowest peak RSS any
/// child of this process can report (see the module docs), KiB.
pub fn spawn_floor_kib() -> u64 {
    run_reaped(&mut Command::new("true")).max_rss_kib
}

/// CPU seconds and memory of one process, read from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// `utime + stime`, seconds (all threads).
    pub cpu: f64,
    /// Current resident set, KiB.
    pub rss_kib: u64,
    /// Peak resident set of the current image, KiB.
    pub hwm_kib: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn proc_sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name (which may contain spaces): state is
    // field 3, utime field 14, stime field 15 (proc(5)).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let cpu = (field(14) + field(15)) as f64 / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample { cpu, rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:") })
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// A server process and its descendants (nginx's master and workers), sampled as a whole.
#[derive(Debug, Clone, Copy)]
pub struct ProcTree {
    /// The root process.
    pub root: u32,
}

/// One sample of every process of a [`ProcTree`].
#[derive(Debug, Clone, Default)]
pub struct TreeSample {
    /// `(pid, sample)` of the root and each live descendant.
    pub procs: Vec<(u32, ProcSample)>,
}

impl TreeSample {
    /// CPU seconds of all processes.
    pub fn cpu(&self) -> f64 {
        self.procs.iter().map(|(_, s)| s.cpu).sum()
    }

    /// Summed current RSS, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.procs.iter().map(|(_, s)| s.rss_kib).sum()
    }

    /// Summed `VmHWM`, KiB.
    pub fn hwm_kib(&self) -> u64 {
        self.procs.iter().map(|(_, s)| s.hwm_kib).sum()
    }

    /// Growth of each process's peak over its RSS in `baseline` (processes that did not
    /// exist then count from zero), summed, KiB.
    pub fn hwm_growth_kib(&self, baseline: &TreeSample) -> u64 {
        self.procs
            .iter()
            .map(|(pid, s)| {
                let base =
                    baseline.procs.iter().find(|(p, _)| p == pid).map_or(0, |(_, b)| b.rss_kib);
                s.hwm_kib.saturating_sub(base)
            })
            .sum()
    }
}

impl ProcTree {
    /// Pids of the root and its descendants alive now.
    pub fn pids(&self) -> Vec<u32> {
        let mut all: Vec<(u32, u32)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                    if let Some(ppid) = parent_of(pid) {
                        all.push((pid, ppid));
                    }
                }
            }
        }
        let mut tree = vec![self.root];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
            i += 1;
        }
        tree
    }

    /// Samples every process of the tree (processes that vanish meanwhile are skipped).
    pub fn sample(&self) -> TreeSample {
        TreeSample {
            procs: self
                .pids()
                .into_iter()
                .filter_map(|p| Some((p, proc_sample(p).ok()?)))
                .collect(),
        }
    }
}

/// Busy and total jiffies of the whole machine (`/proc/stat` first line).
pub fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let nums: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums.get(3).copied().unwrap_or(0) + nums.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Minimum, median and maximum of `values` (empty input gives zeros).
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => (0.0, 0.0, 0.0),
        n => (v[0], v[n / 2], v[n - 1]),
    }
}

/// An H.264 (libx264, CBR-capped, fixed GOP) + AAC clip encoded by ffmpeg from its test
/// sources, as FLV. Its duration is a whole number of GOPs, so it loops seamlessly.
#[derive(Debug, Clone, Copy)]
pub struct ClipSpec {
    /// Seconds.
    pub seconds: u32,
    /// Picture width and height, pixels.
    pub size: (u32, u32),
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, kb/s.
    pub video_kbps: u32,
    /// IDR interval, frames.
    pub gop: u32,
}

impl ClipSpec {
    /// File name describing the clip, e.g. `clip-1280x720p30-1500k-g60-30s.flv`.
    pub fn file_name(&self) -> String {
        let (w, h) = self.size;
        format!(
            "clip-{w}x{h}p{}-{}k-g{}-{}s.flv",
            self.fps, self.video_kbps, self.gop, self.seconds
        )
    }

    /// Encodes the clip into `dir` unless it is already there; returns its path.
    ///
    /// # Panics
    /// When ffmpeg is missing or fails.
    pub fn ensure(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join(self.file_name());
        if path.exists() {
            return path;
        }
        eprintln!("encoding {} with ffmpeg (once)", path.display());
        let (w, h) = self.size;
        let partial = path.with_extension("part.flv");
        let kbps = self.video_kbps;
        let ok = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={w}x{h}:rate={}", self.fps))
            // Audio stops 0.1 s before the video, so the file's duration is the video's and
            // `-stream_loop` keeps IDR frames on the GOP grid across the loop.
            .args(["-f", "lavfi", "-t", &format!("{}.9", self.seconds - 1)])
            .args(["-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &self.seconds.to_string(), "-c:v", "libx264", "-preset", "veryfast"])
            .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
            .args(["-bufsize", &format!("{}k", kbps * 2), "-g", &self.gop.to_string()])
            .args(["-keyint_min", &self.gop.to_string(), "-sc_threshold", "0"])
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv"])
            .arg(&partial)
            .status()
            .map(|s| s.success())
            .unwrap_or_else(|e| panic!("ffmpeg is required for the benchmark: {e}"));
        assert!(ok, "ffmpeg could not encode {}", path.display());
        std::fs::rename(&partial, &path).expect("rename encoded clip");
        path
    }
}
