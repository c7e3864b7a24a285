//! Live ingest benchmark, two scenarios on this machine's loopback only, each comparing the
//! streamer with a reference in the same run (one after the other):
//!
//! - push (`pull` is the other): N concurrent real-time RTMP publishers into `streamer serve`
//!   and into nginx-rtmp (`hls on`);
//! - pull ([`pull`]): N concurrent real-time UDP MPEG-TS sources, each recorded by one
//!   `streamer pull` process, then by one `ffmpeg -c copy -f hls` process, measured as whole
//!   processes (`wait4`).
//!
//! Each push publisher is `ffmpeg -re -stream_loop -1 -i CLIP -t SECONDS -c copy -f flv URL`
//! with a real H.264/AAC clip (encoded once by ffmpeg: 1280x720p30, 1.5 Mb/s video, 2 s GOP,
//! AAC 128 kb/s; the pull senders send the same clip remuxed to MPEG-TS). Per push server it
//! reports, from `/proc` (never from inside the server):
//!
//! - CPU seconds (`utime + stime` of the server and its child processes) over a steady
//!   window that starts `SETTLE` after the last publisher started and ends 2 s before the
//!   first one stops, per stream-minute and as % of one core per stream;
//! - RSS per stream: growth of each server process's `VmHWM` at the end of the window over
//!   its idle `VmRSS` (before any publisher), summed, divided by N;
//! - whole-run CPU and peak RSS from `wait4` when the server exits;
//! - whether every stream's HLS is complete (see `check`).
//!
//! Settings (environment): `BENCH_SCENARIOS` (default `push,pull`), `BENCH_SECONDS` publish
//! or recording length (default 60; push: at most 80 so a whole publish stays in the
//! streamer's 20-segment window; pull: at most 600), `BENCH_ROUNDS` (default 1),
//! `BENCH_KEEP=1` keeps the outputs. Push: `BENCH_STREAMS` (default 100), `BENCH_SERVERS`
//! (default `streamer,nginx`). Pull: `BENCH_PULL_STREAMS` (default 20),
//! `BENCH_PULL_RECEIVERS` (default `streamer,ffmpeg`), `BENCH_PULL_TARGET` (`device`, the
//! default, or `channel`). Needs ffmpeg/ffprobe, and for push nginx with Debian's
//! `libnginx-mod-rtmp` and a moto server in `AWS_ENDPOINT_URL`: `make bench-live` provides
//! all of them.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod publish;
mod pull;
mod pull_check;
mod servers;
mod udp;

use servers::{Kind, Setup};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{machine_jiffies, ClipSpec, TreeSample, Usage};

/// The published clip: 30 s, 1280x720p30, H.264 1.5 Mb/s with a 2 s GOP, AAC 128 kb/s.
const CLIP: ClipSpec =
    ClipSpec { seconds: 30, size: (1280, 720), fps: 30, video_kbps: 1500, gop: 60 };
/// Target segment duration of both servers, seconds (a multiple of the clip's GOP).
const SEGMENT_SECS: u32 = 4;
/// Delay between two publishers' starts.
const STAGGER: Duration = Duration::from_millis(20);
/// Start-up excluded from the measured window, after the last publisher started.
const SETTLE: Duration = Duration::from_secs(5);
/// Shortest steady window worth reporting.
const MIN_WINDOW: Duration = Duration::from_secs(10);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        Err(_) => default,
    }
}

/// Figures of one server in one round.
struct Phase {
    kind: Kind,
    window_secs: f64,
    window_cpu: f64,
    idle: TreeSample,
    peak: TreeSample,
    machine_busy: f64,
    whole: Usage,
    streams: usize,
    published: usize,
    complete: usize,
    media_secs: f64,
    notes: Vec<String>,
}

impl Phase {
    /// CPU seconds per stream-minute over the steady window.
    fn cpu_per_stream_minute(&self) -> f64 {
        self.window_cpu / (self.streams as f64 * self.window_secs / 60.0)
    }

    /// Peak RSS growth per stream, MiB.
    fn rss_per_stream(&self) -> f64 {
        mib(self.peak.hwm_growth_kib(&self.idle)) / self.streams as f64
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn run_phase(kind: Kind, streamer: &Path, clip: &Path, setup: &Setup) -> Phase {
    let server = match kind {
        Kind::Streamer => servers::start_streamer(streamer, setup),
        Kind::Nginx => servers::start_nginx(setup),
    };
    eprintln!("{}: pid {} listening; {} publishers", kind.name(), server.tree.root, setup.streams);
    std::thread::sleep(Duration::from_secs(1));
    let idle = server.tree.sample();
    let urls: Vec<String> = server.streams.iter().map(|s| s.url.clone()).collect();
    let logs = setup.dir.join(format!("{}-publishers", kind.name()));
    let pubs = publish::start(clip, &urls, setup.publish_secs, STAGGER, &logs);
    let window_start = pubs.last + SETTLE;
    let window_end = pubs.first + Duration::from_secs(u64::from(setup.publish_secs) - 2);
    assert!(
        window_end > window_start + MIN_WINDOW,
        "BENCH_SECONDS={} leaves no steady window for {} streams",
        setup.publish_secs,
        setup.streams
    );
    sleep_until(window_start);
    let (start, (busy0, total0), t0) = (server.tree.sample(), machine_jiffies(), Instant::now());
    sleep_until(window_end);
    let (end, (busy1, total1), t1) = (server.tree.sample(), machine_jiffies(), Instant::now());
    let deadline = pubs.first + Duration::from_secs(u64::from(setup.publish_secs) + 60);
    let outcome = pubs.wait(deadline);
    for failure in &outcome.failures {
        eprintln!("{}: publisher failed: {failure}", kind.name());
    }
    let expect = check::Expect {
        publish_secs: setup.publish_secs,
        segment_secs: setup.segment_secs,
        ended: kind == Kind::Streamer,
    };
    let report = check::check_all(&server.streams, expect, Duration::from_secs(30));
    for problem in &report.problems {
        eprintln!("{}: incomplete output: {problem}", kind.name());
    }
    let notes = server.notes.clone();
    let whole = server.stop();
    Phase {
        kind,
        window_secs: (t1 - t0).as_secs_f64(),
        window_cpu: end.cpu() - start.cpu(),
        peak: end,
        idle,
        machine_busy: 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
        whole,
        streams: setup.streams,
        published: outcome.ok,
        complete: report.complete,
        media_secs: report.media_secs,
        notes,
    }
}

fn print_phases(phases: &[Phase], segment_mib: f64) {
    println!(
        "{:<11} {:>9} {:>9} {:>8} {:>7} {:>12} {:>8} {:>9} {:>9} {:>10} {:>8} {:>9} {:>6}",
        "server",
        "published",
        "complete",
        "window s",
        "CPU s",
        "CPU-s/str-min",
        "%core/str",
        "idle MiB",
        "peak MiB",
        "MiB/stream",
        "run CPU s",
        "run MiB",
        "busy%"
    );
    for p in phases {
        println!(
            "{:<11} {:>9} {:>9} {:>8.1} {:>7.2} {:>12.4} {:>8.3} {:>9.1} {:>9.1} {:>10.2} {:>8.1} {:>9.1} {:>6.0}",
            p.kind.name(),
            format!("{}/{}", p.published, p.streams),
            format!("{}/{}", p.complete, p.streams),
            p.window_secs,
            p.window_cpu,
            p.cpu_per_stream_minute(),
            100.0 * p.window_cpu / p.window_secs / p.streams as f64,
            mib(p.idle.rss_kib()),
            mib(p.peak.hwm_kib()),
            p.rss_per_stream(),
            p.whole.cpu,
            mib(p.whole.max_rss_kib),
            p.machine_busy,
        );
        if !p.notes.is_empty() {
            println!("{:<11} ran with {}", "", p.notes.join(" "));
        }
        let media_min = p.media_secs / 60.0;
        if media_min > 0.0 {
            println!("{:<11} {:.1} stream-minutes of HLS written", "", media_min);
        }
    }
    let find = |k: Kind| phases.iter().find(|p| p.kind == k);
    if let (Some(s), Some(n)) = (find(Kind::Streamer), find(Kind::Nginx)) {
        let cpu = s.cpu_per_stream_minute() / n.cpu_per_stream_minute();
        println!(
            "streamer / nginx-rtmp: {cpu:.2}x CPU per stream (target <= 0.5: {}), {:.2}x RSS per stream",
            if cpu <= 0.5 { "met" } else { "NOT met" },
            s.rss_per_stream() / n.rss_per_stream().max(f64::MIN_POSITIVE),
        );
    }
    if let Some(s) = find(Kind::Streamer) {
        let beyond = s.rss_per_stream() - segment_mib;
        println!(
            "streamer RSS per stream beyond one segment's media ({segment_mib:.2} MiB): {beyond:.2} MiB (target <= 1 MiB: {})",
            if beyond <= 1.0 { "met" } else { "NOT met" }
        );
    }
}

/// Scratch directory on tmpfs for outputs, configs and logs.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    base.join(format!("streamstack-bench-live-{}", std::process::id()))
}

/// Settings shared by both scenarios.
struct Common {
    seconds: u32,
    rounds: usize,
    keep: bool,
    clip: PathBuf,
    streamer: PathBuf,
}

/// The push scenario (RTMP publishers into `streamer serve` and nginx-rtmp); whether every
/// stream was published and complete.
fn run_push(common: &Common) -> bool {
    let Common { seconds: publish_secs, rounds, keep, ref clip, ref streamer } = *common;
    let streams: usize = env_or("BENCH_STREAMS", 100);
    let kinds: Vec<Kind> = env_or::<String>("BENCH_SERVERS", "streamer,nginx".into())
        .split(',')
        .map(|k| match k.trim() {
            "streamer" => Kind::Streamer,
            "nginx" => Kind::Nginx,
            other => panic!("BENCH_SERVERS: unknown server {other:?} (streamer, nginx)"),
        })
        .collect();
    assert!((1..=1000).contains(&streams), "BENCH_STREAMS must be 1..=1000");
    assert!(
        (20..=20 * SEGMENT_SECS).contains(&publish_secs),
        "BENCH_SECONDS must be 20..={}",
        20 * SEGMENT_SECS
    );
    if kinds.contains(&Kind::Nginx) {
        servers::require_nginx();
    }
    let clip_bytes = std::fs::metadata(clip).expect("clip metadata").len() as f64;
    let mbps = clip_bytes * 8.0 / 1e6 / f64::from(CLIP.seconds);
    let segment_mib = clip_bytes / f64::from(CLIP.seconds) * f64::from(SEGMENT_SECS) / 1048576.0;

    let mut phases = Vec::new();
    for round in 0..rounds {
        for &kind in &kinds {
            let dir = scratch().join(format!("{}-{round}", kind.name()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create scratch dir");
            let setup =
                Setup { streams, segment_secs: SEGMENT_SECS, publish_secs, dir: dir.clone() };
            phases.push(run_phase(kind, streamer, clip, &setup));
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    println!(
        "\nlive ingest: {streams} publishers per server, each `ffmpeg -re -c copy` of {} \
         ({mbps:.2} Mb/s: {}x{}p{} H.264 {} kb/s, {} s GOP, + AAC) for {publish_secs} s; \
         {SEGMENT_SECS} s segments on tmpfs; servers one after the other",
        clip.display(),
        CLIP.size.0,
        CLIP.size.1,
        CLIP.fps,
        CLIP.video_kbps,
        CLIP.gop / CLIP.fps,
    );
    println!(
        "CPU over the steady window (utime+stime from /proc); RSS per stream = peak VmHWM \
         growth over idle VmRSS / N; run = whole process from wait4; busy% = whole machine"
    );
    for (round, chunk) in phases.chunks(kinds.len()).enumerate() {
        if rounds > 1 {
            println!("round {}", round + 1);
        }
        print_phases(chunk, segment_mib);
    }
    let incomplete = phases.iter().any(|p| p.complete < p.streams || p.published < p.streams);
    if incomplete {
        eprintln!("push: some streams were not published or their HLS is incomplete (see above)");
    }
    !incomplete
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness-less benches this way.
    }
    let scenarios: String = env_or("BENCH_SCENARIOS", "push,pull".into());
    let scenarios: Vec<&str> = scenarios.split(',').map(str::trim).collect();
    if let Some(other) = scenarios.iter().find(|s| !matches!(**s, "push" | "pull")) {
        panic!("BENCH_SCENARIOS: unknown scenario {other:?} (push, pull)");
    }
    let cache = std::env::temp_dir().join("streamstack-bench");
    std::fs::create_dir_all(&cache).expect("create bench cache dir");
    let common = Common {
        seconds: env_or("BENCH_SECONDS", 60),
        rounds: env_or("BENCH_ROUNDS", 1),
        keep: env_or::<u8>("BENCH_KEEP", 0) == 1,
        clip: CLIP.ensure(&cache),
        streamer: PathBuf::from(env!("CARGO_BIN_EXE_streamer")),
    };
    assert!((1..=20).contains(&common.rounds), "BENCH_ROUNDS must be 1..=20");
    let mut ok = true;
    if scenarios.contains(&"push") {
        ok &= run_push(&common);
    }
    if scenarios.contains(&"pull") {
        let settings = pull::Settings::from_env(common.seconds, SEGMENT_SECS);
        let dir = scratch().join("pull");
        ok &=
            pull::run(&settings, &common.clip, &common.streamer, &dir, common.rounds, common.keep);
    }
    if common.keep {
        eprintln!("outputs kept in {}", scratch().display());
    } else {
        let _ = std::fs::remove_dir_all(scratch());
    }
    assert!(ok, "some streams were not recorded completely (see above)");
}
