//! Completeness of a pulled source's HLS after its receiver was stopped (SIGTERM).
//!
//! A recording is complete when its playlist parses (RFC 8216), is ended (`EXT-X-ENDLIST`),
//! lists the whole recording (media sequence 0), every segment it names exists and is not
//! empty, no segment lasts longer than `EXT-X-TARGETDURATION` (+0.5 s rounding), the summed
//! `EXTINF` is within [`DURATION_TOLERANCE_SECS`] of the time the receiver recorded, and
//! ffprobe reads it: H.264 and AAC streams, with at least [`MIN_PACKET_SHARE`] of the packets
//! that duration holds (`-count_packets` demuxes every segment). Each ffprobe runs at most
//! [`FFPROBE_TIMEOUT`]. A device recording also needs a complete archive ([`check_archive`]).

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Allowed difference between the summed segment durations and the recording time, seconds:
/// the first packets reach the receiver a little after its sender starts, and SIGTERM
/// lands anywhere inside a GOP.
pub const DURATION_TOLERANCE_SECS: f64 = 3.0;
/// Share of the expected video and audio packets ffprobe must count (UDP on loopback may
/// drop a datagram under load; more than this is a broken recording).
pub const MIN_PACKET_SHARE: f64 = 0.98;
/// Longest one ffprobe may run.
pub const FFPROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a recording must hold.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Seconds the receiver recorded.
    pub seconds: f64,
    /// Video frames per second of the clip.
    pub fps: f64,
    /// AAC frames per second of the clip (sample rate / 1024).
    pub audio_fps: f64,
}

/// What a complete recording holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded {
    /// Segments listed.
    pub segments: usize,
    /// Summed `EXTINF`, seconds.
    pub seconds: f64,
}

/// Checks one recording (see the module docs); the error says what is missing.
/// `scratch` is a folder for ffprobe's output.
pub fn check(playlist_path: &Path, scratch: &Path, expect: Expect) -> Result<Recorded, String> {
    let bytes = std::fs::read(playlist_path).map_err(|e| format!("no playlist: {e}"))?;
    let playlist = m3u8_rs::parse_media_playlist_res(&bytes)
        .map_err(|e| format!("playlist does not parse: {e:?}"))?;
    if !playlist.end_list {
        return Err("playlist not ended (no EXT-X-ENDLIST)".into());
    }
    if playlist.media_sequence != 0 {
        return Err(format!("media sequence {}: not the whole recording", playlist.media_sequence));
    }
    let dir = playlist_path.parent().unwrap_or(Path::new("."));
    let total = super::check::check_segments(dir, &playlist)?;
    if (total - expect.seconds).abs() > DURATION_TOLERANCE_SECS {
        return Err(format!("segments cover {total:.3} s of {:.1} s recorded", expect.seconds));
    }
    let probe = ffprobe(playlist_path, &scratch.join("ffprobe.json"))?;
    for (codec, per_sec) in [("h264", expect.fps), ("aac", expect.audio_fps)] {
        let stream = probe["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["codec_name"] == codec))
            .ok_or_else(|| format!("ffprobe finds no {codec} stream"))?;
        let packets: f64 =
            stream["nb_read_packets"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0.0);
        let wanted = per_sec * total * MIN_PACKET_SHARE;
        if packets < wanted {
            return Err(format!(
                "ffprobe reads {packets} {codec} packets, expected >= {wanted:.0}"
            ));
        }
    }
    Ok(Recorded { segments: playlist.segments.len(), seconds: total })
}

/// `ffprobe -count_packets` of the playlist as JSON, killed after [`FFPROBE_TIMEOUT`].
fn ffprobe(playlist: &Path, out_path: &Path) -> Result<Value, String> {
    let out = std::fs::File::create(out_path).map_err(|e| format!("ffprobe output: {e}"))?;
    let mut child = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=codec_name,nb_read_packets", "-of", "json"])
        .arg(playlist)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ffprobe: {e}"))?;
    let deadline = Instant::now() + FFPROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("ffprobe ran over {} s", FFPROBE_TIMEOUT.as_secs()));
            }
        }
    };
    if !status.success() {
        return Err(format!("ffprobe failed ({status})"));
    }
    let text = std::fs::read(out_path).map_err(|e| format!("ffprobe output: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("ffprobe output is not JSON: {e}"))
}

/// Checks a device's archive (`devices/<id>/<yyyy>/<mm>/<dd>/<hh>/<session>/recording.m3u8`,
/// one EVENT playlist per hour): every playlist found is ended, its segments exist and are
/// not empty, and together they cover `live_secs` (the live playlist's duration) within
/// [`DURATION_TOLERANCE_SECS`]. Returns the archive segments and seconds.
pub fn check_archive(device_dir: &Path, live_secs: f64) -> Result<Recorded, String> {
    let mut playlists = Vec::new();
    find_named(device_dir, "recording.m3u8", 6, &mut playlists);
    if playlists.is_empty() {
        return Err(format!("no archive playlist under {}", device_dir.display()));
    }
    let mut archived = Recorded::default();
    for path in &playlists {
        let bytes = std::fs::read(path).map_err(|e| format!("archive playlist: {e}"))?;
        let playlist = m3u8_rs::parse_media_playlist_res(&bytes)
            .map_err(|e| format!("archive playlist does not parse: {e:?}"))?;
        if !playlist.end_list {
            return Err(format!("archive playlist {} not ended", path.display()));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        for segment in &playlist.segments {
            if std::fs::metadata(dir.join(&segment.uri)).map_or(0, |m| m.len()) == 0 {
                return Err(format!("archive segment {} missing or empty", segment.uri));
            }
            archived.seconds += f64::from(segment.duration);
        }
        archived.segments += playlist.segments.len();
    }
    if (archived.seconds - live_secs).abs() > DURATION_TOLERANCE_SECS {
        return Err(format!("archive covers {:.3} s, live {live_secs:.3} s", archived.seconds));
    }
    Ok(archived)
}

/// Files called `name` under `dir`, at most `depth` folders down (the live folder skipped).
fn find_named(dir: &Path, name: &str, depth: usize, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten().take(1000) {
        let path = entry.path();
        if path.is_dir() && depth > 0 && entry.file_name() != "live" {
            find_named(&path, name, depth - 1, found);
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
}
