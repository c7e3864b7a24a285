//! The stream model shared by every ingest protocol and the HLS segmenter.
//!
//! An ingest module ([`crate::ingest`]) turns its protocol's messages into [`MediaEvent`]s: the
//! source's [`Tracks`] (declared before the first frame, declared again whenever a codec
//! configuration changes) and [`Frame`]s on one monotonic timeline. [`Timeline`] maps a
//! source's own timestamps onto that timeline, rebasing over jumps and backward steps; the
//! HLS pipeline never sees protocol details.

use bytes::Bytes;
use std::time::Duration;

/// MPEG-TS system clock for PTS/DTS: 90 kHz (ISO/IEC 13818-1 §2.4.3.7).
pub const CLOCK_HZ: u64 = 90_000;

/// Output timeline origin: the first timestamp of a source maps here, 1.4 s in 90 kHz ticks
/// (as ffmpeg does), so B-frame reordering (PTS below the first DTS) never goes below zero.
pub const TIMESTAMP_BASE: u64 = 126_000;

/// Elementary stream kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// H.264 (ISO/IEC 14496-10) access units in Annex B byte-stream format.
    Video,
    /// AAC frames, each with its 7-byte ADTS header (ISO/IEC 14496-3 §1.A.2).
    Audio,
}

/// One access unit ready to be muxed.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which elementary stream it belongs to.
    pub track: Track,
    /// Decode timestamp, 90 kHz ticks, on the output timeline of [`Timeline`]: monotonic per
    /// track (not wrapped at 33 bits).
    pub dts: u64,
    /// Presentation timestamp, 90 kHz ticks (`dts` plus the composition offset).
    pub pts: u64,
    /// For video: the access unit holds an IDR picture (with SPS/PPS in front), so a segment
    /// may start here. Always `false` for audio.
    pub idr: bool,
    /// This frame does not continue the previous encoding: the source's timeline was rebased
    /// here (a timestamp jump or backward step, see [`Timeline`]; timestamps still continue
    /// monotonic), or this IDR carries new parameter sets in-band. The segmenter starts a
    /// new segment marked as a discontinuity (RFC 8216 §4.3.2.3) at the next IDR.
    pub discontinuity: bool,
    /// Payload: Annex B access unit (starting with an access unit delimiter) or ADTS frame.
    pub data: Bytes,
}

/// H.264 configuration of a video track (ISO/IEC 14496-15 §5.2.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// SPS then PPS NAL units, each behind a 4-byte Annex B start code.
    pub parameter_sets: Bytes,
}

/// AAC configuration of an audio track, as far as ADTS carries it (ISO/IEC 14496-3 §1.A.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    /// ADTS `profile`: audio object type minus one (0 Main, 1 LC, 2 SSR, 3 LTP); HE-AAC
    /// (v1/v2) is signalled as LC.
    pub profile: u8,
    /// `sampling_frequency_index` (0..=12, ISO/IEC 14496-3 Table 1.18).
    pub sampling_index: u8,
    /// `channel_configuration` (0..=7).
    pub channels: u8,
}

/// The tracks a source currently sends and their codec configurations. Two equal values
/// describe the same program: a re-sent identical sequence header is not a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracks {
    /// The H.264 track, once a usable AVC configuration arrived.
    pub video: Option<VideoConfig>,
    /// The AAC track, once a usable AudioSpecificConfig arrived.
    pub audio: Option<AudioConfig>,
}

/// What an ingest module hands to the HLS pipeline.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// The track set or a codec configuration changed (the first declaration included);
    /// frames after it use the new configuration.
    Tracks(Tracks),
    /// One access unit.
    Frame(Frame),
}

/// Bounds on what one publisher can make the server hold or do, whatever it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// Largest MPEG-TS segment, bytes. A segment whose buffered bytes exceed it ends the
    /// publish with an error (e.g. a publisher whose DTS stops advancing, so no segment is
    /// ever cut). Default 32 MiB: 10 s (the longest channel target) at 25 Mb/s.
    pub max_segment_bytes: usize,
    /// Largest SPS + PPS total in one AVC configuration, bytes (Annex B, with start codes).
    /// A larger configuration is refused: it is repeated before every IDR. Default 4 KiB
    /// (real ones are tens of bytes).
    pub max_parameter_set_bytes: usize,
    /// A timestamp more than this ahead of the latest one, or behind it, is a discontinuity
    /// that [`Timeline`] rebases. Default 5 s: far above the A/V interleaving of real
    /// publishers (< 1 s), far below an encoder restart or an input switch.
    pub max_timestamp_jump: Duration,
}

impl Default for MediaLimits {
    /// 32 MiB per segment, 4 KiB of parameter sets, 5 s timestamp jump.
    fn default() -> Self {
        Self {
            max_segment_bytes: 32 << 20,
            max_parameter_set_bytes: 4 << 10,
            max_timestamp_jump: Duration::from_secs(5),
        }
    }
}

/// Maps a source's timestamps (90 kHz ticks, any origin, already unwrapped by the protocol)
/// onto one monotonic output timeline starting at [`TIMESTAMP_BASE`].
///
/// The first timestamp fixes an offset; every later one keeps it unless it is a
/// discontinuity, in which case the offset is rebased so the timestamp lands one frame
/// after the latest output of any track:
/// - a video DTS stepping backward, or an audio one stepping back more than 100 ms
///   ([`AUDIO_OVERLAP`]): decoders need monotonic DTS;
/// - more than `max_jump` ahead of the latest timestamp of any track (encoder restart,
///   input switch): the gap would otherwise be one segment hours long;
/// - more than `max_jump` behind the latest timestamp of any track. Smaller differences
///   between tracks are the normal audio/video interleaving and pass through.
///
/// Smaller irregularities are smoothed without a discontinuity: a timestamp equal to its
/// track's previous one, or an audio one up to [`AUDIO_OVERLAP`] behind it (AAC priming
/// where a source splices two encodings, which ffmpeg relays as repeated timestamps), comes
/// out 1 ms after the previous one, so every track's output DTS strictly increase.
#[derive(Debug, Clone)]
pub struct Timeline {
    max_jump: i64,
    offset: i64,
    latest: Option<i64>,
    last: [Option<i64>; 2],
    step: [i64; 2],
    restarted: bool,
}

/// Assumed frame spacing of a track until two of its timestamps were seen: 1 ms (90 ticks).
const DEFAULT_STEP: i64 = 90;
/// Largest backward step of an audio timestamp that is smoothed rather than rebased:
/// 100 ms in 90 kHz ticks (a few AAC frames of encoder priming).
pub const AUDIO_OVERLAP: i64 = 9_000;
/// Largest frame spacing used to place a frame after a rebase: 1 s.
const MAX_STEP: i64 = CLOCK_HZ as i64;

impl Timeline {
    /// A timeline that rebases over jumps larger than `max_jump`.
    pub fn new(max_jump: Duration) -> Self {
        let max_jump = i64::try_from(max_jump.as_millis().saturating_mul(90)).unwrap_or(i64::MAX);
        Self {
            max_jump,
            offset: 0,
            latest: None,
            last: [None; 2],
            step: [DEFAULT_STEP; 2],
            restarted: false,
        }
    }

    /// Maps `source_dts` (90 kHz) of `track`; returns the output DTS and whether the timeline
    /// was rebased at it. Add the frame's composition offset to the output DTS for its PTS.
    pub fn map(&mut self, track: Track, source_dts: i64) -> (u64, bool) {
        let i = track as usize;
        let Some(latest) = self.latest else {
            self.offset = TIMESTAMP_BASE as i64 - source_dts;
            return (self.record(i, TIMESTAMP_BASE as i64), false);
        };
        let mut out = source_dts.saturating_add(self.offset);
        if std::mem::take(&mut self.restarted) {
            out = latest + self.step[i];
            self.offset = out - source_dts;
            return (self.record(i, out), true);
        }
        let backward = self.last[i].is_some_and(|last| out <= last);
        let far = out > latest.saturating_add(self.max_jump)
            || out < latest.saturating_sub(self.max_jump)
            || out < 0;
        if backward && !far {
            let behind = self.last[i].map_or(0, |last| last - out);
            let smoothed = match track {
                Track::Video => behind == 0,
                Track::Audio => behind <= AUDIO_OVERLAP,
            };
            if smoothed {
                let at = self.last[i].map_or(out, |last| last + DEFAULT_STEP);
                let step = self.step[i];
                let mapped = self.record(i, at);
                self.step[i] = step; // a smoothed step says nothing about the frame rate
                return (mapped, false);
            }
        }
        if backward || far {
            out = latest + self.step[i];
            self.offset = out - source_dts;
        }
        (self.record(i, out), backward || far)
    }

    /// The source reconnected or switched: the next timestamp of any track is placed one
    /// frame after the latest output and reported as rebased (a discontinuity), wherever
    /// the new source's clock stands.
    /// Before the first frame it does nothing: the first frame fixes the origin anyway.
    pub fn restart(&mut self) {
        self.restarted = self.latest.is_some();
    }

    /// Maps a frame carrying source timestamps (90 kHz, as a
    /// [`MediaSource`](crate::ingest::MediaSource) yields them) onto the output timeline in
    /// place, keeping its composition offset (PTS - DTS, clamped to 0..=10 s), and sets
    /// [`Frame::discontinuity`] where the timeline was rebased.
    pub fn map_frame(&mut self, frame: &mut Frame) {
        let offset = frame.pts.saturating_sub(frame.dts).min(10 * CLOCK_HZ);
        let source = i64::try_from(frame.dts).unwrap_or(i64::MAX);
        let (dts, rebased) = self.map(frame.track, source);
        frame.dts = dts;
        frame.pts = dts + offset;
        frame.discontinuity |= rebased;
    }

    fn record(&mut self, i: usize, out: i64) -> u64 {
        if let Some(last) = self.last[i] {
            if out > last {
                self.step[i] = (out - last).min(MAX_STEP);
            }
        }
        self.last[i] = Some(out);
        self.latest = Some(self.latest.map_or(out, |l| l.max(out)));
        out as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 90;

    fn timeline() -> Timeline {
        Timeline::new(Duration::from_secs(5))
    }

    #[test]
    fn passes_interleaving_through_and_starts_at_base() {
        let mut t = timeline();
        let base = TIMESTAMP_BASE;
        assert_eq!(t.map(Track::Video, 1000 * MS), (base, false));
        // Audio 300 ms behind video, then video on: normal interleaving.
        assert_eq!(t.map(Track::Audio, 700 * MS), (base - 300 * 90, false));
        assert_eq!(t.map(Track::Video, 1040 * MS), (base + 40 * 90, false));
        assert_eq!(t.map(Track::Audio, 723 * MS), (base - 277 * 90, false));
    }

    #[test]
    fn rebases_forward_jump_and_backward_step() {
        let mut t = timeline();
        t.map(Track::Video, 0);
        t.map(Track::Video, 40 * MS);
        // One hour ahead: continues one frame (40 ms) after the latest output.
        let (dts, rebased) = t.map(Track::Video, 3_600_000 * MS);
        assert!(rebased);
        assert_eq!(dts, TIMESTAMP_BASE + 80 * 90);
        assert_eq!(t.map(Track::Video, 3_600_040 * MS), (TIMESTAMP_BASE + 120 * 90, false));
        // Audio of the new timeline is not a jump any more.
        assert!(!t.map(Track::Audio, 3_600_030 * MS).1);
        // Video stepping back by one frame is a discontinuity, and still monotonic.
        let (back, rebased) = t.map(Track::Video, 3_600_000 * MS);
        assert!(rebased);
        assert_eq!(back, TIMESTAMP_BASE + 160 * 90);
    }

    #[test]
    fn smooths_repeated_and_slightly_early_timestamps() {
        let mut t = timeline();
        let base = TIMESTAMP_BASE;
        t.map(Track::Video, 0);
        assert_eq!(t.map(Track::Video, 0), (base + 90, false), "equal video DTS");
        t.map(Track::Audio, 1000 * MS);
        // A spliced encoding: audio 30 ms early, then repeated, then on time again.
        assert_eq!(t.map(Track::Audio, 970 * MS), (base + 1001 * 90, false));
        assert_eq!(t.map(Track::Audio, 970 * MS), (base + 1002 * 90, false));
        assert_eq!(t.map(Track::Audio, 1021 * MS), (base + 1021 * 90, false));
        // 200 ms back is a discontinuity.
        assert!(t.map(Track::Audio, 821 * MS).1);
    }

    #[test]
    fn restart_rebases_the_next_frame_and_keeps_composition_offsets() {
        let mut t = timeline();
        t.map(Track::Video, 0);
        t.map(Track::Video, 40 * MS);
        t.restart();
        // A reconnected source 100 ms further on its own clock: no jump, still rebased.
        let mut frame = Frame {
            track: Track::Video,
            dts: (140 * MS) as u64,
            pts: (220 * MS) as u64,
            idr: true,
            discontinuity: false,
            data: Bytes::new(),
        };
        t.map_frame(&mut frame);
        assert!(frame.discontinuity);
        assert_eq!(frame.dts, TIMESTAMP_BASE + 80 * 90);
        assert_eq!(frame.pts, frame.dts + 80 * 90);
        // Only once.
        assert!(!t.map(Track::Video, 180 * MS).1);
    }

    #[test]
    fn restart_before_any_frame_changes_nothing() {
        let mut t = timeline();
        t.restart();
        t.restart();
        assert_eq!(t.map(Track::Video, 1000 * MS), (TIMESTAMP_BASE, false));
        // Audio 20 ms ahead keeps its offset, unflagged.
        assert_eq!(t.map(Track::Audio, 1020 * MS), (TIMESTAMP_BASE + 20 * 90, false));
    }

    #[test]
    fn rebases_a_track_far_behind_and_negative_times() {
        let mut t = timeline();
        t.map(Track::Video, 10_000 * MS);
        assert!(t.map(Track::Audio, 0).1, "10 s behind the video");
        let mut t = timeline();
        t.map(Track::Video, 3_000 * MS);
        // 2 s behind (within the jump) but before the output origin.
        let (dts, rebased) = t.map(Track::Audio, 1_000 * MS);
        assert!(rebased);
        assert!(dts >= TIMESTAMP_BASE);
    }
}
