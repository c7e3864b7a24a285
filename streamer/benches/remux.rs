//! Remux benchmark: a recorded 60 s 720p FLV capture to HLS MPEG-TS, `streamer remux`
//! (the live pipeline: FLV demux, IDR segmenter, TS mux, ordered uploader, dir sink) beside
//! `ffmpeg -c copy -f hls` on the same file, in the same run.
//!
//! Whole-process figures only, as the kernel counts them for each child (`wait4` rusage: user
//! and system CPU seconds of all its threads, peak RSS): no timer inside either program. The two
//! commands alternate (streamer, ffmpeg, streamer, ...) after one warm-up run each, so drift
//! of the machine's speed hits both; each pair gives one ratio. Prints min / median / max of
//! CPU seconds, input MB per CPU-second and peak RSS per tool, the median pair ratios, and the
//! spawn floor of `ru_maxrss` (see `support`). Target: streamer >= 3x ffmpeg's MB per
//! CPU-second at <= 1/3 of its peak RSS.
//!
//! Run with `make bench` or `cargo bench -p streamer --bench remux`; `BENCH_RUNS` sets the
//! number of counted pairs (default 10).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{run_reaped, spawn_floor_kib, spread, ClipSpec, Usage};

/// The recorded capture: 60 s 1280x720 30 fps H.264 at 4 Mb/s, 2 s GOP, AAC 128 kb/s.
const CAPTURE: ClipSpec =
    ClipSpec { seconds: 60, size: (1280, 720), fps: 30, video_kbps: 4000, gop: 60 };
/// Target segment duration of both tools, seconds.
const SEGMENT_SECS: &str = "4";

#[derive(Clone, Copy)]
enum Tool {
    Streamer,
    Ffmpeg,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Streamer => "streamer",
            Tool::Ffmpeg => "ffmpeg",
        }
    }

    /// The command remuxing `input` into `out`, and the playlist it writes.
    fn command(self, input: &Path, out: &Path) -> (Command, PathBuf) {
        match self {
            Tool::Streamer => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_streamer"));
                c.arg("remux").arg("--input").arg(input);
                c.arg("--output").arg(format!("dir:{}", out.display()));
                c.args(["--segment-duration", SEGMENT_SECS]).env("RUST_LOG", "warn");
                (c, out.join("vod/index.m3u8"))
            }
            Tool::Ffmpeg => {
                let mut c = Command::new("ffmpeg");
                c.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"]).arg(input);
                c.args(["-c", "copy", "-f", "hls", "-hls_time", SEGMENT_SECS]);
                c.args(["-hls_list_size", "0"]).arg(out.join("index.m3u8"));
                (c, out.join("index.m3u8"))
            }
        }
    }

    /// One remux into a fresh directory; checks the playlist is complete.
    fn run(self, input: &Path, work: &Path) -> Usage {
        let out = work.join(format!("out-{}", self.name()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("create output dir");
        let (mut cmd, playlist) = self.command(input, &out);
        let usage = run_reaped(&mut cmd);
        check_playlist(&playlist);
        let _ = std::fs::remove_dir_all(&out);
        usage
    }
}

/// The output must be an ended playlist whose segments cover the capture.
fn check_playlist(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let playlist = m3u8_rs::parse_media_playlist_res(&bytes)
        .unwrap_or_else(|e| panic!("{} does not parse: {e:?}", path.display()));
    let total: f32 = playlist.segments.iter().map(|s| s.duration).sum();
    assert!(playlist.end_list, "{} has no EXT-X-ENDLIST", path.display());
    assert!(
        (total - CAPTURE.seconds as f32).abs() < 1.0,
        "{} covers {total:.2} s of a {} s capture",
        path.display(),
        CAPTURE.seconds
    );
}

/// Directory for outputs: tmpfs when there is one, so page-cache writeback does not add
/// noise to either tool.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    base.join(format!("streamstack-bench-remux-{}", std::process::id()))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness-less benches this way.
    }
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let cache = std::env::temp_dir().join("streamstack-bench");
    std::fs::create_dir_all(&cache).expect("create bench cache dir");
    let input = CAPTURE.ensure(&cache);
    let mb = std::fs::metadata(&input).expect("capture metadata").len() as f64 / 1e6;
    let work = scratch();
    std::fs::create_dir_all(&work).expect("create scratch dir");

    let tools = [Tool::Streamer, Tool::Ffmpeg];
    for tool in tools {
        tool.run(&input, &work); // warm-up: page cache, dynamic loader
    }
    let mut samples: [Vec<Usage>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (i, tool) in tools.iter().enumerate() {
            samples[i].push(tool.run(&input, &work));
        }
    }
    let floor_kib = spawn_floor_kib();
    let startup = run_reaped(Command::new(env!("CARGO_BIN_EXE_streamer")).arg("--version"));
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "\nremux of {} ({mb:.1} MB: {} s {}x{}p{} H.264 {} kb/s + AAC), {runs} runs per tool",
        input.display(),
        CAPTURE.seconds,
        CAPTURE.size.0,
        CAPTURE.size.1,
        CAPTURE.fps,
        CAPTURE.video_kbps,
    );
    println!("whole-process figures from wait4(2) of each child: min / median / max");
    println!(
        "{:<9} {:>22} {:>26} {:>22} {:>20}",
        "tool", "wall s", "cpu s (user+sys)", "MB per CPU-s", "peak RSS MiB"
    );
    let fmt = |(lo, mid, hi): (f64, f64, f64), p: usize| format!("{lo:.p$} / {mid:.p$} / {hi:.p$}");
    for (tool, s) in tools.iter().zip(&samples) {
        let wall: Vec<f64> = s.iter().map(|u| u.wall).collect();
        let cpu: Vec<f64> = s.iter().map(|u| u.cpu).collect();
        let rate: Vec<f64> = s.iter().map(|u| mb / u.cpu).collect();
        let rss: Vec<f64> = s.iter().map(|u| u.max_rss_kib as f64 / 1024.0).collect();
        println!(
            "{:<9} {:>22} {:>26} {:>22} {:>20}",
            tool.name(),
            fmt(spread(&wall), 3),
            fmt(spread(&cpu), 3),
            fmt(spread(&rate), 0),
            fmt(spread(&rss), 1)
        );
    }
    let speed: Vec<f64> = samples[0].iter().zip(&samples[1]).map(|(s, f)| f.cpu / s.cpu).collect();
    let memory: Vec<f64> = samples[0]
        .iter()
        .zip(&samples[1])
        .map(|(s, f)| s.max_rss_kib as f64 / f.max_rss_kib as f64)
        .collect();
    let (speed, memory) = (spread(&speed), spread(&memory));
    println!(
        "streamer vs ffmpeg, per pair: {} x MB per CPU-second (target >= 3x: {}), {} x peak RSS (target <= 0.33x: {})",
        fmt(speed, 2),
        if speed.1 >= 3.0 { "met" } else { "NOT met" },
        fmt(memory, 2),
        if memory.1 <= 1.0 / 3.0 { "met" } else { "NOT met" },
    );
    println!(
        "fixed cost: `streamer --version` alone takes {:.3} CPU-s at {:.1} MiB peak RSS; \
         ru_maxrss floor of a child of this bench: {:.1} MiB",
        startup.cpu,
        startup.max_rss_kib as f64 / 1024.0,
        floor_kib as f64 / 1024.0
    );
}
