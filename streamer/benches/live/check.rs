//! Completeness of every stream's HLS output after its publisher ended.
//!
//! A stream is complete when its playlist parses, every segment it names exists and is not
//! empty, no segment is longer than `EXT-X-TARGETDURATION`, and its segments cover the
//! publish: their count is `ceil(publish / segment)` (the clip's GOP divides the segment
//! duration, so both servers cut on the same IDR frames) and their summed `EXTINF` is within
//! [`DURATION_TOLERANCE_SECS`] of the publish duration. The streamer's playlist must also be
//! ended (`EXT-X-ENDLIST`); nginx-rtmp never writes that tag.

use crate::servers::Stream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Allowed difference between the summed segment durations and the publish duration, seconds
/// (ffmpeg's `-t` ends on a frame boundary; the last frame's duration is counted or not).
pub const DURATION_TOLERANCE_SECS: f64 = 0.5;

/// What the check expects of every stream.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Seconds each publisher published.
    pub publish_secs: u32,
    /// Target segment duration, seconds.
    pub segment_secs: u32,
    /// Whether the playlist must carry `EXT-X-ENDLIST`.
    pub ended: bool,
}

impl Expect {
    /// Segments a complete playlist has.
    pub fn segments(&self) -> u64 {
        u64::from(self.publish_secs.div_ceil(self.segment_secs))
    }
}

/// Totals of one server's streams.
#[derive(Debug, Default)]
pub struct Report {
    /// Streams whose output is complete.
    pub complete: usize,
    /// Segments written over all streams.
    pub segments: u64,
    /// Summed segment durations over all streams, seconds.
    pub media_secs: f64,
    /// The first few problems found.
    pub problems: Vec<String>,
}

fn check_one(stream: &Stream, expect: Expect) -> Result<(u64, f64), String> {
    let bytes = std::fs::read(&stream.playlist).map_err(|e| format!("no playlist: {e}"))?;
    let playlist = m3u8_rs::parse_media_playlist_res(&bytes)
        .map_err(|e| format!("playlist does not parse: {e:?}"))?;
    if expect.ended && !playlist.end_list {
        return Err("playlist not ended".into());
    }
    let dir = stream.playlist.parent().unwrap_or(Path::new("."));
    let total = check_segments(dir, &playlist)?;
    let count = playlist.media_sequence + playlist.segments.len() as u64;
    if count != expect.segments() {
        return Err(format!("{count} segments, expected {}", expect.segments()));
    }
    let listed_all = playlist.media_sequence == 0;
    if listed_all && (total - f64::from(expect.publish_secs)).abs() > DURATION_TOLERANCE_SECS {
        return Err(format!("segments cover {total:.3} s of {} s", expect.publish_secs));
    }
    Ok((count, total))
}

/// Checks every stream, polling for up to `wait` while some are still incomplete (a server
/// writes the last segment and playlist after the publisher disconnects).
pub fn check_all(streams: &[Stream], expect: Expect, wait: Duration) -> Report {
    let deadline = Instant::now() + wait;
    loop {
        let mut report = Report::default();
        for (i, stream) in streams.iter().enumerate() {
            match check_one(stream, expect) {
                Ok((segments, secs)) => {
                    report.complete += 1;
                    report.segments += segments;
                    report.media_secs += secs;
                }
                Err(e) if report.problems.len() < 5 => {
                    report.problems.push(format!("stream {i}: {e}"))
                }
                Err(_) => {}
            }
        }
        if report.complete == streams.len() || Instant::now() >= deadline {
            return report;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every segment of `playlist` (URIs relative to `dir`) exists, is not empty and lasts at
/// most the target duration + 0.5 s; returns their total duration, seconds.
pub fn check_segments(dir: &Path, playlist: &m3u8_rs::MediaPlaylist) -> Result<f64, String> {
    let mut total = 0.0;
    for segment in &playlist.segments {
        let size = std::fs::metadata(dir.join(&segment.uri)).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Err(format!("segment {} missing or empty", segment.uri));
        }
        if f64::from(segment.duration) > playlist.target_duration as f64 + 0.5 {
            return Err(format!(
                "segment {} lasts {:.3} s, target {} s",
                segment.uri, segment.duration, playlist.target_duration
            ));
        }
        total += f64::from(segment.duration);
    }
    Ok(total)
}
