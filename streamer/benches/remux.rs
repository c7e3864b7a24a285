//! Remux benchmark: a recorded >= 60 s 720p FLV capture to HLS MPEG-TS, `streamer remux`
//! (the live pipeline: FLV demux, IDR segmenter, TS mux, ordered uploader, dir sink) beside
//! `ffmpeg -c copy -f hls` on the same file, in the same run.
//!
//! Prints, per tool, the median of 5 runs of: wall time, CPU time (user + system, from
//! `wait4`), input MB per CPU-second, and peak RSS. Target: streamer >= 3x ffmpeg's MB per
//! CPU-second at <= 1/3 of its peak RSS. Run with `cargo bench -p streamer --bench remux`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const RUNS: usize = 5;

struct Sample {
    wall: f64,
    cpu: f64,
    max_rss_kib: i64,
}

// The child is reaped by `wait4` below, which std cannot see.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> Sample {
    let started = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps exactly this child, which std never waits on.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Sample {
        wall: started.elapsed().as_secs_f64(),
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn capture(dir: &Path) -> PathBuf {
    let path = dir.join("capture-720p30-60s.flv");
    if !path.exists() {
        eprintln!("recording a 60 s 720p30 H.264/AAC FLV capture: {}", path.display());
        let ok = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "60"])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "4M",
                "-bufsize", "8M",
            ])
            .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
            .arg(&path)
            .status()
            .expect("ffmpeg is required for the benchmark")
            .success();
        assert!(ok, "could not record the capture");
    }
    path
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes harness-less benches this way.
    }

    let work = std::env::temp_dir().join("streamstack-bench");
    std::fs::create_dir_all(&work).unwrap();
    let input = capture(&work);
    let mb = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
    let streamer = env!("CARGO_BIN_EXE_streamer");

    let mut results = Vec::new();
    for tool in ["streamer", "ffmpeg"] {
        let mut samples = Vec::new();
        for i in 0..RUNS {
            let out = work.join(format!("{tool}-{i}"));
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
            let mut cmd = if tool == "streamer" {
                let mut c = Command::new(streamer);
                c.arg("remux")
                    .arg("--input")
                    .arg(&input)
                    .arg("--output")
                    .arg(format!("dir:{}", out.display()));
                c.args(["--segment-duration", "4"]).env("RUST_LOG", "warn");
                c
            } else {
                let mut c = Command::new("ffmpeg");
                c.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"]).arg(&input);
                c.args(["-c", "copy", "-f", "hls", "-hls_time", "4", "-hls_list_size", "0"]);
                c.arg(out.join("index.m3u8"));
                c
            };
            samples.push(run(&mut cmd));
            let _ = std::fs::remove_dir_all(&out);
        }
        let wall = median(samples.iter().map(|s| s.wall).collect());
        let cpu = median(samples.iter().map(|s| s.cpu).collect());
        let rss = median(samples.iter().map(|s| s.max_rss_kib as f64).collect()) / 1024.0;
        results.push((tool, wall, cpu, mb / cpu, rss));
    }

    println!(
        "\nremux of {} ({mb:.1} MB, 60 s 720p30 H.264 4 Mb/s + AAC), median of {RUNS} runs",
        input.display()
    );
    println!(
        "{:<10} {:>9} {:>9} {:>16} {:>14}",
        "tool", "wall s", "cpu s", "MB per CPU-s", "peak RSS MiB"
    );
    for (tool, wall, cpu, rate, rss) in &results {
        println!("{tool:<10} {wall:>9.3} {cpu:>9.3} {rate:>16.1} {rss:>14.1}");
    }
    let (ours, theirs) = (&results[0], &results[1]);
    let speed = ours.3 / theirs.3;
    let memory = ours.4 / theirs.4;
    println!(
        "streamer vs ffmpeg: {speed:.2}x MB per CPU-second (target >= 3x: {}), {memory:.2}x peak RSS (target <= 0.33x: {})",
        if speed >= 3.0 { "met" } else { "NOT met" },
        if memory <= 1.0 / 3.0 { "met" } else { "NOT met" }
    );
}
