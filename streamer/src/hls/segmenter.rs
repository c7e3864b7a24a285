//! Cutting a frame sequence into MPEG-TS segments, each within the channel's target duration.
//!
//! # Target duration
//! `EXT-X-TARGETDURATION` is fixed when a playlist is created (the channel's
//! `segment_duration`) and never changes (RFC 8216 §6.2.1). The segmenter guarantees every
//! segment's EXTINF rounds to at most that target, i.e. lasts less than `target + 0.5 s`
//! ([`Segmenter::max_duration`]), whatever the publisher sends:
//! - a segment starts at an IDR access unit and is cut at an IDR once it reached the target,
//!   or earlier when waiting one more GOP (the previous IDR interval) would make it round
//!   above the target;
//! - when the publisher's GOP is longer than that, the segment is cut on the frame (video
//!   non-IDR, or audio) that would carry it past the limit; the next segment then starts
//!   without an IDR (logged once per publish). Players decode it from the previous segment,
//!   as with any HLS stream without `EXT-X-INDEPENDENT-SEGMENTS`;
//! - a gap in the timestamps (shorter than the [`Timeline`](crate::media::Timeline) jump,
//!   which rebases) that would carry a segment past the limit ends it at its last frame; the
//!   next one is marked as a discontinuity.
//!
//! # Discontinuities
//! A new codec configuration ([`Segmenter::set_tracks`]) or a rebased timeline
//! ([`Frame::discontinuity`]) ends the running segment at the next IDR; the next segment
//! starts with that IDR (and its new SPS/PPS), a PMT for the new track set, and
//! [`Segment::discontinuity`] set (`EXT-X-DISCONTINUITY`, RFC 8216 §4.3.2.3). Video frames
//! between a new video configuration and its first IDR are dropped (nothing can decode
//! them). One exception: audio that appears during the very first segment joins it (its PMT
//! is written when the segment ends), as ffmpeg's late AudioSpecificConfig does.
//!
//! # Memory
//! A segment whose bytes exceed [`MediaLimits::max_segment_bytes`] is an error that ends
//! the publish (e.g. a publisher whose DTS stops advancing, so no cut ever comes).

use crate::media::{Frame, MediaEvent, MediaLimits, Track, Tracks, CLOCK_HZ};
use crate::ts::{TsError, TsMuxer};
use bytes::Bytes;

/// One finished media segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number (RFC 8216 §4.3.3.2), from 0 per publish.
    pub sequence: u64,
    /// Duration in seconds (EXTINF): from this segment's first frame to the next segment's;
    /// always below `target + 0.5`.
    pub duration: f64,
    /// The segment does not continue the previous one (new codec configuration or track set,
    /// rebased timestamps, or a gap): the playlist precedes it with `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// MPEG-TS bytes, starting with PAT and PMT, then (normally) an IDR access unit.
    pub data: Bytes,
}

/// Why the segmenter stopped.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Internal muxing error.
    #[error(transparent)]
    Mux(#[from] TsError),
    /// The running segment outgrew [`MediaLimits::max_segment_bytes`].
    #[error("segment of {bytes} bytes exceeds the limit of {limit} bytes without a cut")]
    TooLarge {
        /// Bytes buffered.
        bytes: usize,
        /// The limit, bytes.
        limit: usize,
    },
}

/// Largest frame spacing a track's next frame is predicted with, 90 kHz ticks (1 s).
const MAX_STEP: u64 = CLOCK_HZ;
/// Slack for the 1 ms resolution of RTMP timestamps, 90 kHz ticks.
const ONE_MS: u64 = 90;

/// Cuts frames into segments of about `target` seconds; see the module docs.
#[derive(Debug)]
pub struct Segmenter {
    target: u64,
    max_duration: u64,
    max_bytes: usize,
    muxer: TsMuxer,
    tracks: Tracks,
    started: bool,
    buf: Vec<u8>,
    start_dts: u64,
    frames: usize,
    discontinuity: bool,
    seg_max_dts: u64,
    seg_end: u64,
    last_dts: [Option<u64>; 2],
    step: [u64; 2],
    last_idr_dts: Option<u64>,
    last_gop: u64,
    pending_tracks: Option<Tracks>,
    pending_rebase: bool,
    video_wait_idr: bool,
    rebase_wait_idr: bool,
    warned_non_idr: bool,
    next_sequence: u64,
}

/// Where the running segment ends.
struct Cut {
    at: u64,
    gap: bool,
}

impl Segmenter {
    /// A segmenter for a target duration of `target_secs` seconds (at least 1), bounded by
    /// `limits.max_segment_bytes`.
    pub fn new(target_secs: u32, limits: MediaLimits) -> Self {
        let target = u64::from(target_secs.max(1)) * CLOCK_HZ;
        Self {
            target,
            max_duration: target + CLOCK_HZ / 2 - ONE_MS,
            max_bytes: limits.max_segment_bytes,
            muxer: TsMuxer::new(false),
            tracks: Tracks::default(),
            started: false,
            buf: Vec::new(),
            start_dts: 0,
            frames: 0,
            discontinuity: false,
            seg_max_dts: 0,
            seg_end: 0,
            last_dts: [None; 2],
            step: [0; 2],
            last_idr_dts: None,
            last_gop: 0,
            pending_tracks: None,
            pending_rebase: false,
            video_wait_idr: false,
            rebase_wait_idr: false,
            warned_non_idr: false,
            next_sequence: 0,
        }
    }

    /// Longest segment duration, 90 kHz ticks: `target + 0.5 s - 1 ms`, which rounds to the
    /// target.
    pub fn max_duration(&self) -> u64 {
        self.max_duration
    }

    /// Number of segments emitted so far.
    pub fn emitted(&self) -> u64 {
        self.next_sequence
    }

    /// Handles one ingest event: [`Segmenter::set_tracks`] or [`Segmenter::push`].
    ///
    /// # Errors
    /// As [`Segmenter::push`].
    pub fn push_event(&mut self, event: &MediaEvent) -> Result<Option<Segment>, SegmentError> {
        match event {
            MediaEvent::Tracks(tracks) => {
                self.set_tracks(tracks);
                Ok(None)
            }
            MediaEvent::Frame(frame) => self.push(frame),
        }
    }

    /// Declares the source's tracks. Before the first segment, and for audio appearing during
    /// the first segment, they apply at once; later, a change ends the running segment at the
    /// next IDR and the next segment is a discontinuity. An equal declaration changes nothing.
    pub fn set_tracks(&mut self, tracks: &Tracks) {
        if *tracks == self.tracks {
            self.pending_tracks = None;
            self.video_wait_idr = false;
            return;
        }
        if self.pending_tracks.as_ref() == Some(tracks) {
            return;
        }
        let audio_joins_first = self.next_sequence == 0
            && self.tracks.audio.is_none()
            && tracks.video == self.tracks.video;
        if !self.started || audio_joins_first {
            self.apply_tracks(tracks.clone());
            return;
        }
        if tracks.video != self.tracks.video {
            self.video_wait_idr = true;
        }
        self.pending_tracks = Some(tracks.clone());
    }

    fn apply_tracks(&mut self, tracks: Tracks) {
        if self.next_sequence == 0 && self.frames == 0 {
            // Nothing written yet: the first PMT is version 0 whatever was declared before.
            self.muxer = TsMuxer::new(tracks.audio.is_some());
        } else {
            self.muxer.set_has_audio(tracks.audio.is_some());
        }
        self.tracks = tracks;
    }

    /// Adds a frame; returns the segment it completed, if any. Frames before the first IDR
    /// are dropped (nothing can decode them), as are audio frames while the track set has no
    /// audio.
    ///
    /// # Errors
    /// [`SegmentError::TooLarge`] when the running segment outgrew the byte limit (the publish
    /// should stop); [`SegmentError::Mux`] on an internal muxing inconsistency.
    pub fn push(&mut self, frame: &Frame) -> Result<Option<Segment>, SegmentError> {
        let video = frame.track == Track::Video;
        if !video && self.pending_tracks.as_ref().unwrap_or(&self.tracks).audio.is_none() {
            return Ok(None);
        }
        if frame.discontinuity {
            // Kept until a segment starts: the frame carrying it may be dropped below.
            self.pending_rebase = true;
            // The frames after it may come from another encoder: its non-IDR frames (and
            // audio, which would land in the old segment) wait for its first IDR.
            self.rebase_wait_idr = self.started;
        }
        if !self.started {
            if !(video && frame.idr) {
                return Ok(None);
            }
            self.started = true;
            self.begin(frame.dts, false);
        }
        if self.rebase_wait_idr {
            if !(video && frame.idr) {
                return Ok(None);
            }
            self.rebase_wait_idr = false;
        }
        if video && self.video_wait_idr {
            if !frame.idr {
                return Ok(None);
            }
            self.video_wait_idr = false;
        }
        if video && frame.idr {
            if let Some(prev) = self.last_idr_dts.filter(|&prev| frame.dts > prev) {
                self.last_gop = frame.dts - prev;
            }
            self.last_idr_dts = Some(frame.dts);
        }
        let done = match self.cut_before(frame) {
            Some(cut) => self.cut(cut)?,
            None => None,
        };
        self.write(frame)?;
        Ok(done)
    }

    /// Whether (and where) the running segment ends before `frame`.
    fn cut_before(&mut self, frame: &Frame) -> Option<Cut> {
        if self.frames == 0 {
            // Nothing buffered: pending changes apply to this segment instead.
            return None;
        }
        let elapsed = frame.dts.saturating_sub(self.start_dts);
        let gap = elapsed > self.max_duration;
        let cut = Cut { at: frame.dts, gap };
        let video_idr = frame.track == Track::Video && frame.idr;
        if video_idr && (self.pending_tracks.is_some() || self.pending_rebase) {
            return Some(cut);
        }
        // The next frame of this track would carry the segment past the limit: cut here.
        let leading = frame.dts >= self.seg_max_dts;
        if leading && elapsed + self.step[frame.track as usize] > self.max_duration {
            if !video_idr && !std::mem::replace(&mut self.warned_non_idr, true) {
                tracing::warn!(
                    target_s = self.target / CLOCK_HZ,
                    "no IDR within the target duration: cutting on a non-IDR frame \
                     (publisher's keyframe interval is longer than the segment duration)"
                );
            }
            return Some(cut);
        }
        if !video_idr {
            return None;
        }
        let half_second = CLOCK_HZ / 2;
        let reached = elapsed + ONE_MS >= self.target;
        // Only when GOPs fit in a segment at all: with longer ones, cutting at every IDR would
        // add a tiny segment per GOP.
        let gop_fits = self.last_gop > 0 && self.last_gop <= self.max_duration;
        let next_gop_too_long = gop_fits && elapsed + self.last_gop >= self.target + half_second;
        (reached || next_gop_too_long).then_some(cut)
    }

    /// Ends the running segment at `cut` and starts the next one there.
    fn cut(&mut self, cut: Cut) -> Result<Option<Segment>, SegmentError> {
        let end = if cut.gap {
            self.seg_end.clamp(self.start_dts, self.start_dts + self.max_duration)
        } else {
            cut.at
        };
        // A cut frame may carry a DTS below the segment's start (a video IDR after a segment
        // that began on audio): such a segment lasts no time rather than wrapping around.
        let segment = self.take_segment(end.saturating_sub(self.start_dts))?;
        self.begin(cut.at, cut.gap);
        Ok(Some(segment))
    }

    /// Starts a segment at `dts`, applying pending track changes; `gap` marks it as a
    /// discontinuity even without one pending.
    fn begin(&mut self, dts: u64, gap: bool) {
        let mut discontinuity = gap || self.pending_rebase;
        if let Some(tracks) = self.pending_tracks.take() {
            self.apply_tracks(tracks);
            discontinuity = true;
        }
        if discontinuity {
            self.last_gop = 0;
        }
        self.pending_rebase = false;
        self.discontinuity = discontinuity && self.next_sequence > 0;
        self.start_dts = dts;
        self.seg_max_dts = dts;
        self.seg_end = dts;
        self.frames = 0;
        // PAT and PMT are written over this space when the segment ends, so they describe the
        // track set the segment ended with.
        self.buf.resize(TsMuxer::TABLES_LEN, 0);
    }

    fn write(&mut self, frame: &Frame) -> Result<(), SegmentError> {
        if self.frames == 0 && self.pending_rebase {
            // Rebased before anything was buffered: this segment is the discontinuity.
            self.pending_rebase = false;
            self.discontinuity = self.next_sequence > 0;
        }
        if self.frames == 0 {
            if let Some(tracks) = self.pending_tracks.take() {
                self.apply_tracks(tracks);
                self.discontinuity = self.next_sequence > 0;
            }
        }
        if frame.track == Track::Audio && self.tracks.audio.is_none() {
            return Ok(());
        }
        self.muxer.write_frame(frame, &mut self.buf)?;
        self.frames += 1;
        let i = frame.track as usize;
        if let Some(last) = self.last_dts[i].filter(|&last| frame.dts > last) {
            self.step[i] = (frame.dts - last).min(MAX_STEP);
        }
        self.last_dts[i] = Some(frame.dts);
        self.seg_max_dts = self.seg_max_dts.max(frame.dts);
        self.seg_end = self.seg_end.max(frame.dts + self.step[i]);
        if self.buf.len() > self.max_bytes {
            let bytes = self.buf.len();
            self.discard();
            return Err(SegmentError::TooLarge { bytes, limit: self.max_bytes });
        }
        Ok(())
    }

    fn take_segment(&mut self, ticks: u64) -> Result<Segment, SegmentError> {
        let mut tables = Vec::with_capacity(TsMuxer::TABLES_LEN);
        self.muxer.write_tables(&mut tables)?;
        self.buf[..TsMuxer::TABLES_LEN].copy_from_slice(&tables);
        let capacity = (self.buf.len() + self.buf.len() / 8).min(self.max_bytes);
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        let segment = Segment {
            sequence: self.next_sequence,
            duration: ticks.min(self.max_duration) as f64 / CLOCK_HZ as f64,
            discontinuity: self.discontinuity,
            data: Bytes::from(data),
        };
        self.next_sequence += 1;
        Ok(segment)
    }

    /// Drops the running segment (its memory too) after it outgrew the byte limit; the next
    /// segment starts at an IDR and is marked as a discontinuity, so a source that recovers
    /// records on.
    fn discard(&mut self) {
        self.buf = Vec::new();
        self.frames = 0;
        self.started = false;
        self.pending_rebase = true;
    }

    /// Ends the stream: returns the last, possibly short, segment (its duration counts its
    /// last frame's own duration), or `None` if nothing was buffered.
    ///
    /// # Errors
    /// [`SegmentError::Mux`] on an internal muxing inconsistency.
    pub fn finish(&mut self) -> Result<Option<Segment>, SegmentError> {
        if !self.started || self.frames == 0 {
            return Ok(None);
        }
        let ticks = self.seg_end.saturating_sub(self.start_dts);
        let segment = self.take_segment(ticks)?;
        self.buf = Vec::new();
        self.started = false;
        self.frames = 0;
        Ok(Some(segment))
    }
}

#[cfg(test)]
#[path = "segmenter_tests.rs"]
mod tests;
