//! Browser playback harness: an HLS URL played by hls.js in headless Chromium.
//!
//! [`play`] runs `node tests/browser/play.mjs` (puppeteer-core driving Debian's
//! `/usr/bin/chromium`, hls.js from `tests/browser/node_modules`) and parses the one JSON line it
//! prints into a [`PlayResult`]: whether the video ended, the seconds played, fatal and non-fatal
//! hls.js errors, the renditions of the master playlist and the fragments requested per
//! rendition, the rendition switches, the status of every response the page got.
//!
//! The page is served from the playlist's own origin (the script answers
//! `<origin>/__streamstack_harness__/*` itself through the DevTools protocol's Fetch domain and
//! lets every other request through), so a playlist on moto's S3 endpoint plays without CORS.
//!
//! Needs `node`, `chromium` (or `CHROMIUM=<path>`) and `npm ci` in `tests/browser` (`make
//! browser-deps`, a prerequisite of `make test`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to play: the time limits, an optional bandwidth cap and playback rate, cookies.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// How long the page may play before the result is taken (`timedOut` then reads true).
    pub timeout: Duration,
    /// Caps the page's download throughput at this many bits per second (DevTools network
    /// emulation) and starts hls.js from an estimate of 4x the cap, so it begins on a
    /// rendition above the cap and has to switch down.
    pub max_bandwidth: Option<u64>,
    /// `playbackRate` once playing (2.0 plays an 8 s asset in about 4 s).
    pub rate: f64,
    /// hls.js `startLevel` (a rendition index); `None` lets hls.js choose.
    pub start_level: Option<u32>,
    /// Cookies `(name, value)` set for the playlist's origin with path `/` before the page
    /// loads (e.g. CloudFront signed cookies).
    pub cookies: Vec<(String, String)>,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_bandwidth: None,
            rate: 1.0,
            start_level: None,
            cookies: Vec::new(),
        }
    }
}

/// A rendition of the master playlist as hls.js parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Level {
    /// Index in hls.js's level list (the keys of [`PlayResult::requested`]).
    pub index: u32,
    /// `BANDWIDTH`, bits per second.
    pub bitrate: u64,
    /// `RESOLUTION` width, when given.
    pub width: Option<u32>,
    /// `RESOLUTION` height, when given.
    pub height: Option<u32>,
    /// `CODECS`, video then audio.
    pub codecs: String,
    /// The media playlist's URL.
    pub url: String,
}

/// A fatal error as hls.js (or the video element) reported it.
#[derive(Debug, Clone, Deserialize)]
pub struct FatalError {
    /// hls.js error type (`networkError`, `mediaError`, ...), or `media` / `play` / `harness`.
    #[serde(rename = "type")]
    pub kind: String,
    /// hls.js error details (`fragLoadError`, `manifestLoadError`, ...).
    pub details: String,
    /// The URL that failed, when known.
    pub url: Option<String>,
    /// HTTP status of the failed load, when known.
    pub status: Option<u16>,
    /// Reason text, when given.
    pub reason: Option<String>,
}

/// A rendition switch (hls.js `LEVEL_SWITCHED`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    /// The rendition switched to.
    pub level: u32,
    /// Playback position at the switch, seconds.
    pub at_seconds: f64,
}

/// A response the page got (a playlist, a segment; the harness's own page and script are
/// not listed).
#[derive(Debug, Clone, Deserialize)]
pub struct PageResponse {
    /// The requested URL.
    pub url: String,
    /// HTTP status.
    pub status: u16,
}

/// What the browser did with the stream (`play.mjs`'s JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayResult {
    /// The video element fired `ended`.
    pub ended: bool,
    /// The time limit was reached first.
    pub timed_out: bool,
    /// Seconds of media played (sum of the video's played ranges).
    pub played_seconds: f64,
    /// The media duration, when known.
    pub duration: Option<f64>,
    /// Fatal errors (playback stops at the first).
    pub fatal_errors: Vec<FatalError>,
    /// Non-fatal hls.js errors (stalls, retried loads, ...).
    pub non_fatal_errors: u32,
    /// Details of the first non-fatal errors.
    pub non_fatal_details: Vec<String>,
    /// The renditions of the master playlist.
    pub levels: Vec<Level>,
    /// Fragment URLs requested per rendition index, in request order.
    pub requested: BTreeMap<u32, Vec<String>>,
    /// Rendition indexes that had at least one fragment requested.
    pub levels_requested: Vec<u32>,
    /// Rendition switches in order (the first is the start rendition).
    pub switches: Vec<Switch>,
    /// Switches after the first.
    pub bitrate_switches: u32,
    /// Wall-clock seconds from load to result.
    pub wall_seconds: f64,
    /// Chromium's version.
    pub browser: String,
    /// The page's first console lines (for failure messages).
    pub console: Vec<String>,
    /// Every response the page got, in arrival order (at most 5000).
    #[serde(default)]
    pub responses: Vec<PageResponse>,
}

/// The harness directory (`tests/browser`).
pub fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Plays `url` (an HLS master or media playlist) in headless Chromium with hls.js.
///
/// A fatal player error is a result ([`PlayResult::fatal_errors`]), not a panic.
///
/// # Panics
/// When the harness cannot run: `tests/browser/node_modules` missing (run `make browser-deps`),
/// no node or Chromium, the script failing or printing no JSON (its stderr is in the message),
/// or no result within `options.timeout` + 60 s (the process is killed).
pub fn play(url: &str, options: &PlayOptions) -> PlayResult {
    let dir = harness_dir();
    assert!(
        dir.join("node_modules/puppeteer-core").exists(),
        "{}/node_modules is missing: run `make browser-deps` (make test does)",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("play.mjs"))
        .args(["--url", url])
        .args(["--timeout-secs", &options.timeout.as_secs_f64().to_string()])
        .args(["--rate", &options.rate.to_string()]);
    if let Some(bps) = options.max_bandwidth {
        cmd.args(["--max-bandwidth", &bps.to_string()]);
    }
    if let Some(level) = options.start_level {
        cmd.args(["--start-level", &level.to_string()]);
    }
    for (name, value) in &options.cookies {
        cmd.arg("--cookie").arg(format!("{name}={value}"));
    }
    let mut child = cmd
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (is Node.js installed?)");
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let limit = options.timeout + Duration::from_secs(60);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        panic!("play.mjs gave no result within {limit:?} (killed); stderr:\n{stderr}");
    };
    assert!(status.success(), "play.mjs failed ({status}); stderr:\n{stderr}");
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!("play.mjs printed no JSON; stdout:\n{stdout}\nstderr:\n{stderr}")
    });
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("play.mjs JSON: {e}: {line}\nstderr:\n{stderr}"))
}
