//! A GStreamer RTSP server (`tests/scripts/rtsp_server.py`, run by `/usr/bin/python3` with
//! `python3-gi` and `gir1.2-gst-rtsp-server-1.0`) serving a file for pull tests.

use crate::process::free_port;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the test server's file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// H.264 (x264 with B-frames, GOP 50 at 25 fps) + AAC-LC 48 kHz mono, in MP4.
    H264Aac,
    /// H.264 + G.711 mu-law 8 kHz, in MOV.
    H264Pcmu,
    /// H.265 only, in MP4.
    H265,
}

/// Encodes `seconds` of a synthetic clip into `dir` with ffmpeg; returns the file.
pub fn make_file(dir: &Path, media: Media, seconds: u32) -> PathBuf {
    let (name, audio): (&str, &[&str]) = match media {
        Media::H264Aac => ("clip.mp4", &["-c:a", "aac", "-b:a", "64k"]),
        Media::H264Pcmu => ("clip.mov", &["-c:a", "pcm_mulaw"]),
        Media::H265 => ("clip-h265.mp4", &["-an"]),
    };
    let video: &[&str] = match media {
        Media::H265 => &["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error"],
        _ => &["-c:v", "libx264"],
    };
    let rate = if media == Media::H264Pcmu { 8_000 } else { 48_000 };
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate={rate}")])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p", "-g", "50"])
        .args(video)
        .args(audio)
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make {name}");
    path
}

/// A running `rtsp_server.py`, killed when dropped.
pub struct RtspServer {
    /// The server process.
    pub child: Child,
    /// Its TCP port.
    pub port: u16,
    /// The script arguments it was started with.
    pub args: Vec<String>,
    /// `rtsp` or `rtsps`, as the server announced.
    pub scheme: &'static str,
}

impl RtspServer {
    /// Serves `file` at `rtsp://127.0.0.1:<free port>/cam` with the script's extra `args`.
    pub async fn start(file: &Path, args: &[&str]) -> Self {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--file".to_owned(), file.display().to_string()]);
        Self::spawn(free_port(), args).await
    }

    /// Serves on `port` with the script's `args`; waits (30 s at most) for its READY line.
    pub async fn spawn(port: u16, args: Vec<String>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rtsp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rtsp_server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let scheme = match ready {
            Ok(Ok(Some(line))) if line.starts_with("READY rtsps:") => "rtsps",
            Ok(Ok(Some(line))) if line.starts_with("READY") => "rtsp",
            other => panic!("rtsp_server.py did not start: {other:?}"),
        };
        Self { child, port, args, scheme }
    }

    /// `rtsp[s]://[userinfo@]127.0.0.1:<port>/cam`.
    pub fn url(&self, userinfo: &str) -> String {
        format!("{}://{userinfo}127.0.0.1:{}/cam", self.scheme, self.port)
    }

    /// TCP connections established to the server's port, as `ss` lists them.
    pub fn connections(&self) -> usize {
        let out = std::process::Command::new("ss")
            .args(["-Htn", "state", "established", &format!("( dport = :{} )", self.port)])
            .output()
            .expect("run ss");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// Waits up to `within` for the server to exit by itself (`--once`: its one session
    /// ended) and asserts it exited with success.
    pub async fn exited(&mut self, within: Duration) {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => assert!(status.success(), "rtsp_server.py exited with {status}"),
            other => panic!("rtsp_server.py still serving after {within:?}: {other:?}"),
        }
    }

    /// `kill -9`, then waits for the process to be gone.
    pub async fn kill(mut self) -> (u16, Vec<String>) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        (self.port, std::mem::take(&mut self.args))
    }

    /// Sends `signal` (e.g. `SIGSTOP`) to the server.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("server running") as i32;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}
