//! Processes of the pull scenario, all on 127.0.0.1:
//!
//! - senders: one `ffmpeg -re -stream_loop -1 -i CLIP.ts -c copy -f mpegts
//!   udp://127.0.0.1:P?pkt_size=1316` per source (seven 188-byte TS packets per datagram,
//!   ISO/IEC 13818-1 §2.4.3), from a clip remuxed to MPEG-TS once so a sender only paces and
//!   copies;
//! - receivers: one process per source, either `streamer pull --source udp://127.0.0.1:P
//!   --target device:bN --output dir:…` (standalone: no table variables, a spool of its own)
//!   or `ffmpeg -i udp://127.0.0.1:P -c copy -f hls -hls_time S …`.
//!
//! Every child is bounded: senders carry `-t` (they end by themselves if the bench dies), and
//! [`Receivers`] / [`Senders`] kill what is still running when dropped.

use crate::support::{reap, Usage};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which program receives the UDP sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// `streamer pull`, one process per source.
    Streamer,
    /// `ffmpeg -c copy -f hls`, one process per source.
    Ffmpeg,
}

impl Receiver {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Receiver::Streamer => "streamer pull",
            Receiver::Ffmpeg => "ffmpeg hls",
        }
    }

    /// Exit codes of a receiver stopped by SIGTERM: 0 for the streamer; ffmpeg writes its
    /// trailer (`EXT-X-ENDLIST`) and exits with 255 ("received signal 15").
    pub fn stopped_ok(self, code: Option<i32>) -> bool {
        match self {
            Receiver::Streamer => code == Some(0),
            Receiver::Ffmpeg => matches!(code, Some(0) | Some(255)),
        }
    }
}

/// What `streamer pull` records each source as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullTarget {
    /// `device:bN`: live playlist and hourly archive.
    Device,
    /// `channel:bN` (standalone: live playlist only).
    Channel,
}

/// Settings of one receiver phase.
#[derive(Debug, Clone)]
pub struct PullSetup {
    /// The streamer binary.
    pub streamer: PathBuf,
    /// Number of sources.
    pub streams: usize,
    /// Target segment duration, seconds.
    pub segment_secs: u32,
    /// Seconds each receiver records (from its sender's start to SIGTERM).
    pub seconds: u32,
    /// What the streamer records into.
    pub target: PullTarget,
    /// Scratch directory of this phase (outputs, spools, logs).
    pub dir: PathBuf,
}

/// `n` distinct free UDP ports on 127.0.0.1 (bound together, then released).
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port on 127.0.0.1"))
        .collect();
    sockets.iter().map(|s| s.local_addr().expect("local addr").port()).collect()
}

/// Local ports of every bound UDP socket (IPv4 and IPv6), from `/proc/net/udp{,6}`.
fn bound_udp_ports() -> HashSet<u16> {
    let mut ports = HashSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            // `sl local_address rem_address …`, local_address = `HEXADDR:HEXPORT`.
            let local = line.split_whitespace().nth(1).unwrap_or("");
            if let Some(port) =
                local.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

/// One started receiver.
pub struct Started {
    /// Its pid (reaped with `wait4`).
    pub pid: u32,
    /// When it was spawned.
    pub spawned: Instant,
    /// The playlist it must write.
    pub playlist: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    reaped: bool,
}

/// The receivers of one phase; kills (SIGKILL) and reaps any not yet reaped when dropped.
pub struct Receivers {
    /// One per source, in source order.
    pub procs: Vec<Started>,
}

fn receiver_command(kind: Receiver, i: usize, port: u16, setup: &PullSetup) -> (Command, PathBuf) {
    let base = setup.dir.join(format!("s{i}"));
    let out = base.join("out");
    std::fs::create_dir_all(&out).expect("create receiver output dir");
    let url = format!("udp://127.0.0.1:{port}");
    match kind {
        Receiver::Streamer => {
            let id = format!("b{i}");
            let (target, playlist) = match setup.target {
                PullTarget::Device => {
                    (format!("device:{id}"), out.join("devices").join(&id).join("live"))
                }
                PullTarget::Channel => (format!("channel:{id}"), out.join("live").join(&id)),
            };
            // The live window lists the whole recording, so the check sees every segment.
            let window = setup.seconds / setup.segment_secs + 10;
            let mut cmd = Command::new(&setup.streamer);
            cmd.arg("pull")
                .args(["--source", &url, "--target", &target])
                .args(["--output", &format!("dir:{}", out.display())])
                .args(["--segment-duration", &setup.segment_secs.to_string()])
                .args(["--playlist-window", &window.to_string()])
                .env("STREAMER_SPOOL_DIR", base.join("spool"))
                .env("RUST_LOG", "warn");
            for var in ["CHANNELS_TABLE", "DEVICES_TABLE", "MEDIA_BUCKET", "AWS_ENDPOINT_URL"] {
                cmd.env_remove(var);
            }
            (cmd, playlist.join("index.m3u8"))
        }
        Receiver::Ffmpeg => {
            let mut cmd = Command::new("ffmpeg");
            cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i", &url])
                .args(["-c", "copy", "-f", "hls", "-hls_time", &setup.segment_secs.to_string()])
                .args(["-hls_list_size", "0", "-hls_segment_filename"])
                .arg(out.join("seg%05d.ts"))
                .arg(out.join("index.m3u8"));
            (cmd, out.join("index.m3u8"))
        }
    }
}

/// Starts one receiver per port, `stagger` apart, and waits (up to 30 s) until every port is
/// bound.
///
/// # Panics
/// When a receiver cannot be started, exits early, or does not bind its port in time.
// Receivers are reaped by `wait4` (`Receivers::reap`, or on drop), which std cannot see.
#[allow(clippy::zombie_processes)]
pub fn start_receivers(
    kind: Receiver,
    ports: &[u16],
    setup: &PullSetup,
    stagger: Duration,
) -> Receivers {
    let mut receivers = Receivers { procs: Vec::with_capacity(ports.len()) };
    for (i, &port) in ports.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(stagger);
        }
        let (mut cmd, playlist) = receiver_command(kind, i, port, setup);
        let log = setup.dir.join(format!("s{i}")).join("receiver.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("receiver log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kind.name()));
        let started =
            Started { pid: child.id(), spawned: Instant::now(), playlist, log, reaped: false };
        receivers.procs.push(started);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bound = bound_udp_ports();
        let missing: Vec<usize> =
            (0..ports.len()).filter(|&i| !bound.contains(&ports[i])).collect();
        if missing.is_empty() {
            return receivers;
        }
        for &i in &missing {
            let r = &mut receivers.procs[i];
            if let Ok(Some(usage)) = reap(r.pid, r.spawned, Some(Instant::now())) {
                r.reaped = true;
                let log = std::fs::read_to_string(&r.log).unwrap_or_default();
                panic!(
                    "{} {i} exited ({:?}) before binding its port:\n{log}",
                    kind.name(),
                    usage.exit_code
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} receivers {missing:?} did not bind their UDP ports within 30 s",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Receivers {
    /// Sends SIGTERM to receiver `i`.
    pub fn terminate(&self, i: usize) {
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(self.procs[i].pid as libc::pid_t, libc::SIGTERM) };
    }

    /// Reaps receiver `i` (`wait4`): its whole-run figures, or `None` if it did not exit by
    /// `deadline` (it is then killed, reaped and reported as not stopped).
    pub fn reap(&mut self, i: usize, deadline: Instant) -> Option<Usage> {
        let r = &mut self.procs[i];
        let usage = reap(r.pid, r.spawned, Some(deadline)).expect("wait4 receiver");
        if usage.is_none() {
            // SAFETY: as in `terminate`.
            unsafe { libc::kill(r.pid as libc::pid_t, libc::SIGKILL) };
            let _ = reap(r.pid, r.spawned, None);
        }
        r.reaped = true;
        usage
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for r in self.procs.iter_mut().filter(|r| !r.reaped) {
            // SAFETY: our own child, not reaped yet (so its pid cannot have been reused).
            unsafe { libc::kill(r.pid as libc::pid_t, libc::SIGKILL) };
            let _ = reap(r.pid, r.spawned, Some(Instant::now() + Duration::from_secs(5)));
            r.reaped = true;
        }
    }
}

/// The senders of one phase; killed and waited for when dropped.
pub struct Senders {
    children: Vec<Child>,
    /// When each sender was started.
    pub started: Vec<Instant>,
}

/// Starts one real-time sender per port, `stagger` apart; each stops by itself after
/// `limit_secs` at the latest.
///
/// # Panics
/// When ffmpeg cannot be started.
pub fn start_senders(
    clip: &Path,
    ports: &[u16],
    limit_secs: u32,
    stagger: Duration,
    logs: &Path,
) -> Senders {
    std::fs::create_dir_all(logs).expect("create sender log dir");
    let mut senders = Senders { children: Vec::new(), started: Vec::new() };
    for (i, port) in ports.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(stagger);
        }
        let log = logs.join(format!("sender-{i}.log"));
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-stream_loop", "-1", "-i"])
            .arg(clip)
            .args(["-t", &limit_secs.to_string(), "-c", "copy", "-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sender log"))
            .spawn()
            .expect("spawn ffmpeg sender");
        senders.started.push(Instant::now());
        senders.children.push(child);
    }
    senders
}

impl Senders {
    /// Senders that exited before being stopped (they must run for the whole phase).
    pub fn exited_early(&mut self) -> usize {
        self.children.iter_mut().map(|c| c.try_wait()).filter(|s| matches!(s, Ok(Some(_)))).count()
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sender clip: `flv` remuxed once (`-c copy`) to MPEG-TS next to it.
///
/// # Panics
/// When ffmpeg fails.
pub fn ts_clip(flv: &Path) -> PathBuf {
    let ts = flv.with_extension("ts");
    if ts.exists() {
        return ts;
    }
    let partial = flv.with_extension("part.ts");
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(flv)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&partial)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg could not remux {} to MPEG-TS", flv.display());
    std::fs::rename(&partial, &ts).expect("rename TS clip");
    ts
}
