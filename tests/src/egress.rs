//! Harness of the `streamer egress` tests (tests/tests/egress.rs): an HTTP server for a
//! pull's HLS directory, the egress log's figures, and the checks every received egress
//! stream must pass.

use crate::mpegts::{analyze, TsReport, PACKET};
use crate::recorder::{pacing, Datagram, Pacing};
use crate::{decoded_frames, Decoded};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// `python3 -m http.server` on a free port of 127.0.0.1 serving `dir`, once it accepts
/// connections; killed when dropped.
///
/// # Panics
/// When it cannot be started or does not listen within 10 s.
pub async fn http_server(dir: &Path) -> (Child, u16) {
    let port = crate::process::free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3 http.server");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("http.server did not listen");
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number logged as `key=value` in the last line of `log` holding `key=`.
///
/// # Panics
/// When there is none.
pub fn logged(log: &str, key: &str) -> f64 {
    let log = plain(log);
    let needle = format!("{key}=");
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {key} in:\n{log}"));
    let value = line.split(&needle).nth(1).unwrap_or_default();
    let value: String = value.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    value.parse().unwrap_or_else(|_| panic!("{key}: {line}"))
}

/// A received egress stream, checked.
#[derive(Debug)]
pub struct Received {
    /// The datagrams' payloads back to back, as a file.
    pub raw: PathBuf,
    /// Continuity, discontinuity indicators, video PTS.
    pub report: TsReport,
    /// What ffmpeg decodes of it.
    pub decoded: Decoded,
    /// Gaps and bursts.
    pub pacing: Pacing,
}

/// Checks `datagrams` (written to `dir/raw.ts`) as an egress must send them: more than
/// 100, every one 1316 bytes (7 packets), all packets in sync, no continuity counter error
/// on any PID, decoding without a decoder complaint.
///
/// # Panics
/// On the first check that fails.
pub fn received(datagrams: &[Datagram], dir: &Path, video_pid: u16) -> Received {
    assert!(datagrams.len() > 100, "{} datagrams", datagrams.len());
    let sizes: Vec<usize> =
        datagrams.iter().map(|d| d.bytes.len()).filter(|n| *n != 7 * PACKET).collect();
    assert!(sizes.is_empty(), "datagrams not 1316 bytes: {sizes:?}");
    let bytes: Vec<u8> = datagrams.iter().flat_map(|d| d.bytes.iter().copied()).collect();
    let raw = dir.join("raw.ts");
    std::fs::write(&raw, &bytes).expect("write raw.ts");
    let report = analyze(&bytes, video_pid);
    assert_eq!(report.unsynced, 0, "packets out of sync");
    let errors = &report.cc_errors;
    assert!(errors.is_empty(), "continuity errors: {:?}", &errors[..errors.len().min(10)]);
    let decoded = decoded_frames(&raw.to_string_lossy());
    assert!(decoded.errors.is_empty(), "raw.ts: {}", decoded.errors);
    Received { raw, report, decoded, pacing: pacing(datagrams) }
}

/// `(packet index, step)` of every video PTS step that is not `frame` (90 kHz), except
/// steps into the PES starting at one of `excused` (packet indexes).
pub fn pts_irregularities(report: &TsReport, frame: u64, excused: &[usize]) -> Vec<(usize, u64)> {
    report
        .video_pts
        .windows(2)
        .map(|w| (w[1].0, w[1].1.wrapping_sub(w[0].1) & ((1 << 33) - 1)))
        .filter(|(at, step)| *step != frame && !excused.contains(at))
        .collect()
}
