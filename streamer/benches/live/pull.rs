//! Pull scenario: N concurrent real-time UDP MPEG-TS sources, each recorded by one receiver
//! process — `streamer pull` in one phase, `ffmpeg -c copy -f hls` in the next, with the
//! same senders setup (see [`crate::udp`]).
//!
//! A phase starts the N receivers (each binding its own port), then the N senders 20 ms
//! apart, stops each receiver with SIGTERM `BENCH_SECONDS` after its sender started, and
//! reaps it with `wait4`: CPU seconds (user + system, all threads) and peak RSS
//! (`ru_maxrss`) of the whole process, as the kernel counts them. Per receiver it reports
//! CPU per stream-minute (summed CPU over summed recording minutes), RSS per stream (the
//! median child's `ru_maxrss`, with the range), the median `VmHWM` read just before SIGTERM
//! (the receiver's own image only: `ru_maxrss` also carries the bench's RSS across `execve`,
//! see `support`), and whether every recording is complete ([`crate::pull_check`]).

use crate::pull_check::{self, Expect, Recorded};
use crate::support::{machine_jiffies, proc_sample, spawn_floor_kib, spread};
use crate::udp::{self, PullSetup, PullTarget, Receiver};
use crate::{env_or, CLIP};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Delay between two senders' (and two receivers') starts.
const STAGGER: Duration = Duration::from_millis(20);
/// Longest a receiver may take to exit after SIGTERM (the streamer's drain is 90 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(100);

/// AAC frames per second of the clip (48 kHz, 1024 samples per frame).
const AAC_FRAMES_PER_SEC: f64 = 48_000.0 / 1024.0;

/// Settings of the pull scenario, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BENCH_PULL_STREAMS` (default 20, 1..=200): sources, one receiver process each.
    pub streams: usize,
    /// `BENCH_SECONDS` (20..=600): seconds each receiver records.
    pub seconds: u32,
    /// Target segment duration of both receivers, seconds.
    pub segment_secs: u32,
    /// `BENCH_PULL_RECEIVERS` (default `streamer,ffmpeg`).
    pub receivers: Vec<Receiver>,
    /// `BENCH_PULL_TARGET`: `device` (default: live playlist + archive) or `channel`.
    pub target: PullTarget,
}

impl Settings {
    /// Reads the settings; `seconds` is `BENCH_SECONDS`.
    ///
    /// # Panics
    /// On a value out of range or unknown.
    pub fn from_env(seconds: u32, segment_secs: u32) -> Self {
        let streams: usize = env_or("BENCH_PULL_STREAMS", 20);
        assert!((1..=200).contains(&streams), "BENCH_PULL_STREAMS must be 1..=200");
        assert!((20..=600).contains(&seconds), "BENCH_SECONDS must be 20..=600 for pull");
        let receivers = env_or::<String>("BENCH_PULL_RECEIVERS", "streamer,ffmpeg".into())
            .split(',')
            .map(|r| match r.trim() {
                "streamer" => Receiver::Streamer,
                "ffmpeg" => Receiver::Ffmpeg,
                other => panic!("BENCH_PULL_RECEIVERS: unknown {other:?} (streamer, ffmpeg)"),
            })
            .collect();
        let target = match env_or::<String>("BENCH_PULL_TARGET", "device".into()).as_str() {
            "device" => PullTarget::Device,
            "channel" => PullTarget::Channel,
            other => panic!("BENCH_PULL_TARGET: unknown {other:?} (device, channel)"),
        };
        Self { streams, seconds, segment_secs, receivers, target }
    }
}

/// Runs `rounds` rounds of every receiver kind on `clip` (the FLV clip, remuxed to TS once),
/// with scratch space under `dir`; prints the figures; whether every recording is complete.
pub fn run(
    settings: &Settings,
    clip: &Path,
    streamer: &Path,
    dir: &Path,
    rounds: usize,
    keep: bool,
) -> bool {
    let ts = udp::ts_clip(clip);
    let mbps = std::fs::metadata(&ts).map_or(0.0, |m| m.len() as f64 * 8.0 / 1e6)
        / f64::from(CLIP.seconds);
    let rates = (f64::from(CLIP.fps), AAC_FRAMES_PER_SEC);
    let floor_before = rss_floor_mib();
    let mut phases = Vec::new();
    for round in 0..rounds {
        for &kind in &settings.receivers {
            let phase_dir = dir.join(format!("{}-{round}", kind.name().replace(' ', "-")));
            let _ = std::fs::remove_dir_all(&phase_dir);
            std::fs::create_dir_all(&phase_dir).expect("create scratch dir");
            let setup = PullSetup {
                streamer: PathBuf::from(streamer),
                streams: settings.streams,
                segment_secs: settings.segment_secs,
                seconds: settings.seconds,
                target: settings.target,
                dir: phase_dir.clone(),
            };
            phases.push(run_phase(kind, &ts, &setup, rates));
            if !keep {
                let _ = std::fs::remove_dir_all(&phase_dir);
            }
        }
    }
    let target = match settings.target {
        PullTarget::Device => "device:bN (live playlist + 30 s archive)",
        PullTarget::Channel => "channel:bN (live playlist)",
    };
    println!(
        "\npull ingest: {} UDP MPEG-TS sources per receiver, each `ffmpeg -re -stream_loop -1 \
         -c copy -f mpegts udp://127.0.0.1:P?pkt_size=1316` of {} ({mbps:.2} Mb/s), recorded \
         {} s by one receiver process per source; streamer pull --target {target} vs ffmpeg \
         -c copy -f hls; {} s segments on tmpfs; receivers one after the other",
        settings.streams,
        ts.display(),
        settings.seconds,
        settings.segment_secs,
    );
    println!(
        "whole receiver processes from wait4 (user+sys CPU, ru_maxrss); CPU-s/str-min = \
         summed CPU / summed recording minutes; MiB/stream = median ru_maxrss; VmHWM = \
         median before SIGTERM; busy% = whole machine (senders included)"
    );
    for (round, chunk) in phases.chunks(settings.receivers.len()).enumerate() {
        if rounds > 1 {
            println!("round {}", round + 1);
        }
        print_phases(chunk);
    }
    println!(
        "ru_maxrss floor (a child of this bench, see support): {floor_before:.1} MiB before, \
         {:.1} MiB after",
        rss_floor_mib()
    );
    phases.iter().all(PullPhase::ok)
}

/// Figures of one receiver process.
#[derive(Debug, Clone)]
struct StreamRun {
    /// Seconds from its sender's start to its SIGTERM.
    recorded_secs: f64,
    /// User + system CPU seconds (`wait4`).
    cpu: f64,
    /// Peak RSS, KiB (`ru_maxrss`).
    max_rss_kib: u64,
    /// `VmHWM` just before SIGTERM, KiB.
    hwm_kib: u64,
    /// Whether it exited as a stopped receiver should.
    stopped_ok: bool,
    /// The recording, when complete.
    recorded: Option<Recorded>,
}

/// Figures of one receiver kind in one round.
pub struct PullPhase {
    kind: Receiver,
    runs: Vec<StreamRun>,
    machine_busy: f64,
    senders_ended_early: usize,
    problems: Vec<String>,
}

impl PullPhase {
    /// CPU seconds per stream-minute: summed CPU over summed recording minutes.
    fn cpu_per_stream_minute(&self) -> f64 {
        let cpu: f64 = self.runs.iter().map(|r| r.cpu).sum();
        let minutes: f64 = self.runs.iter().map(|r| r.recorded_secs / 60.0).sum();
        cpu / minutes.max(f64::MIN_POSITIVE)
    }

    /// (min, median, max) of the receivers' `ru_maxrss`, MiB.
    fn rss_mib(&self) -> (f64, f64, f64) {
        spread(&self.runs.iter().map(|r| r.max_rss_kib as f64 / 1024.0).collect::<Vec<_>>())
    }

    /// Median `VmHWM` before SIGTERM, MiB.
    fn hwm_mib(&self) -> f64 {
        spread(&self.runs.iter().map(|r| r.hwm_kib as f64 / 1024.0).collect::<Vec<_>>()).1
    }

    fn stopped(&self) -> usize {
        self.runs.iter().filter(|r| r.stopped_ok).count()
    }

    /// Receivers that stopped cleanly with a complete recording.
    fn complete(&self) -> usize {
        self.runs.iter().filter(|r| r.stopped_ok && r.recorded.is_some()).count()
    }

    /// Whether every receiver ran and recorded completely, every sender to the end.
    fn ok(&self) -> bool {
        self.complete() == self.runs.len() && self.senders_ended_early == 0
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Runs one phase: `setup.streams` senders on `clip` (MPEG-TS) into receivers of `kind`;
/// `rates` are the clip's video and audio frames per second.
fn run_phase(kind: Receiver, clip: &Path, setup: &PullSetup, rates: (f64, f64)) -> PullPhase {
    let ports = udp::free_udp_ports(setup.streams);
    let mut receivers = udp::start_receivers(kind, &ports, setup, STAGGER);
    eprintln!("{}: {} receivers bound; starting senders", kind.name(), setup.streams);
    let (busy0, total0) = machine_jiffies();
    // Senders stop by themselves a minute after the phase should have ended.
    let limit = setup.seconds + 60;
    let mut senders = udp::start_senders(clip, &ports, limit, STAGGER, &setup.dir.join("senders"));
    let mut hwm = Vec::with_capacity(setup.streams);
    let mut stopped_at = Vec::with_capacity(setup.streams);
    for i in 0..setup.streams {
        sleep_until(senders.started[i] + Duration::from_secs(u64::from(setup.seconds)));
        hwm.push(proc_sample(receivers.procs[i].pid).map_or(0, |s| s.hwm_kib));
        receivers.terminate(i);
        stopped_at.push(Instant::now());
    }
    let (busy1, total1) = machine_jiffies();
    let senders_ended_early = senders.exited_early();
    let deadline = Instant::now() + STOP_TIMEOUT;
    let usages: Vec<_> = (0..setup.streams).map(|i| receivers.reap(i, deadline)).collect();
    let sent_at = senders.started.clone();
    drop(senders);

    let mut problems = Vec::new();
    let mut runs = Vec::with_capacity(setup.streams);
    for (i, usage) in usages.into_iter().enumerate() {
        let recorded_secs = (stopped_at[i] - sent_at[i]).as_secs_f64();
        let proc = &receivers.procs[i];
        let expect = Expect { seconds: recorded_secs, fps: rates.0, audio_fps: rates.1 };
        let scratch = proc.log.parent().unwrap_or(&setup.dir);
        let archive = (kind == Receiver::Streamer && setup.target == PullTarget::Device)
            .then(|| proc.playlist.parent().and_then(Path::parent))
            .flatten();
        let checked =
            pull_check::check(&proc.playlist, scratch, expect).and_then(|live| match archive {
                Some(device) => pull_check::check_archive(device, live.seconds).map(|_| live),
                None => Ok(live),
            });
        let recorded = match checked {
            Ok(r) => Some(r),
            Err(e) => {
                if problems.len() < 5 {
                    problems.push(format!("stream {i}: {e}"));
                }
                None
            }
        };
        let stopped_ok = usage.is_some_and(|u| kind.stopped_ok(u.exit_code));
        if !stopped_ok && problems.len() < 5 {
            let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            let exit = usage.map(|u| u.exit_code);
            problems.push(format!("stream {i}: exit {exit:?} | {}", tail.join(" | ")));
        }
        runs.push(StreamRun {
            recorded_secs,
            cpu: usage.map_or(0.0, |u| u.cpu),
            max_rss_kib: usage.map_or(0, |u| u.max_rss_kib),
            hwm_kib: hwm[i],
            stopped_ok,
            recorded,
        });
    }
    PullPhase {
        kind,
        runs,
        machine_busy: 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
        senders_ended_early,
        problems,
    }
}

/// Prints one round's phases, and the streamer / ffmpeg ratios when both ran.
fn print_phases(phases: &[PullPhase]) {
    println!(
        "{:<14} {:>8} {:>9} {:>7} {:>9} {:>13} {:>9} {:>11} {:>13} {:>10} {:>6}",
        "receiver",
        "stopped",
        "complete",
        "rec s",
        "CPU s/str",
        "CPU-s/str-min",
        "%core/str",
        "MiB/stream",
        "MiB min-max",
        "VmHWM MiB",
        "busy%"
    );
    for p in phases {
        let n = p.runs.len();
        let (lo, med, hi) = p.rss_mib();
        let rec = spread(&p.runs.iter().map(|r| r.recorded_secs).collect::<Vec<_>>()).1;
        let cpu: f64 = p.runs.iter().map(|r| r.cpu).sum::<f64>() / n.max(1) as f64;
        println!(
            "{:<14} {:>8} {:>9} {:>7.1} {:>9.2} {:>13.4} {:>9.3} {:>11.2} {:>13} {:>10.2} {:>6.0}",
            p.kind.name(),
            format!("{}/{n}", p.stopped()),
            format!("{}/{n}", p.complete()),
            rec,
            cpu,
            p.cpu_per_stream_minute(),
            100.0 * p.cpu_per_stream_minute() / 60.0,
            med,
            format!("{lo:.1}-{hi:.1}"),
            p.hwm_mib(),
            p.machine_busy,
        );
        let written: Vec<Recorded> = p.runs.iter().filter_map(|r| r.recorded).collect();
        let minutes = written.iter().map(|r| r.seconds).sum::<f64>() / 60.0;
        let segments: usize = written.iter().map(|r| r.segments).sum();
        println!("{:<14} {minutes:.1} stream-minutes of HLS written in {segments} segments", "");
        if p.senders_ended_early > 0 {
            println!("{:<14} {} senders ended early", "", p.senders_ended_early);
        }
        for problem in &p.problems {
            println!("{:<14} incomplete: {problem}", "");
        }
    }
    let find = |k: Receiver| phases.iter().find(|p| p.kind == k);
    if let (Some(s), Some(f)) = (find(Receiver::Streamer), find(Receiver::Ffmpeg)) {
        println!(
            "streamer pull / ffmpeg: {:.2}x CPU per stream-minute, {:.2}x RSS per stream \
             (median ru_maxrss), {:.2}x median VmHWM",
            s.cpu_per_stream_minute() / f.cpu_per_stream_minute().max(f64::MIN_POSITIVE),
            s.rss_mib().1 / f.rss_mib().1.max(f64::MIN_POSITIVE),
            s.hwm_mib() / f.hwm_mib().max(f64::MIN_POSITIVE),
        );
    }
}

/// The lowest `ru_maxrss` a child of this bench can report now, MiB (see `support`).
fn rss_floor_mib() -> f64 {
    spawn_floor_kib() as f64 / 1024.0
}
