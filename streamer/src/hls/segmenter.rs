//! Cutting a frame sequence into MPEG-TS segments.

use crate::media::{Frame, Track, CLOCK_HZ};
use crate::ts::{TsError, TsMuxer};
use bytes::Bytes;

/// Without an IDR for this long (90 kHz ticks, 30 s), a segment is cut anyway so memory
/// stays bounded; the next segment then starts on a non-IDR frame (logged).
pub const MAX_SEGMENT_TICKS: u64 = 30 * CLOCK_HZ;

/// One finished media segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number (RFC 8216 §4.3.3.2), from 0 per publish.
    pub sequence: u64,
    /// Duration in seconds: from this segment's first video DTS to the next one's.
    pub duration: f64,
    /// MPEG-TS bytes, starting with PAT and PMT, then an IDR access unit.
    pub data: Bytes,
}

/// Cuts frames into segments of about `target` seconds.
///
/// A segment starts at an IDR access unit. At each IDR, the running segment is cut when it
/// has reached the target, or when waiting one more GOP (the previous IDR interval) would make
/// its duration round above the target: the EXTINF of every segment then rounds to at most
/// `EXT-X-TARGETDURATION` (RFC 8216 §4.3.3.1) whenever the publisher's GOP is at most the
/// target. Timestamps pass through unchanged, so PTS/DTS are continuous across segments.
#[derive(Debug)]
pub struct Segmenter {
    target: u64,
    muxer: Option<TsMuxer>,
    buf: Vec<u8>,
    start_dts: u64,
    last_idr_dts: Option<u64>,
    last_gop: u64,
    last_video_dts: u64,
    last_frame_ticks: u64,
    next_sequence: u64,
}

impl Segmenter {
    /// A segmenter with a target duration of `target_secs` seconds.
    pub fn new(target_secs: u32) -> Self {
        Self {
            target: u64::from(target_secs) * CLOCK_HZ,
            muxer: None,
            buf: Vec::new(),
            start_dts: 0,
            last_idr_dts: None,
            last_gop: 0,
            last_video_dts: 0,
            last_frame_ticks: 0,
            next_sequence: 0,
        }
    }

    /// Number of segments emitted so far.
    pub fn emitted(&self) -> u64 {
        self.next_sequence
    }

    /// Adds a frame; returns the segment it completed, if any. Frames before the first IDR are
    /// dropped (nothing can decode them). `has_audio` says whether the stream has an AAC track;
    /// it is read when the first IDR arrives and fixes the program's PMT.
    ///
    /// # Errors
    /// [`TsError`] on an internal muxing inconsistency.
    pub fn push(&mut self, frame: &Frame, has_audio: bool) -> Result<Option<Segment>, TsError> {
        let mut done = None;
        if frame.track == Track::Video {
            if self.muxer.is_none() {
                if !frame.idr {
                    return Ok(None);
                }
                self.muxer = Some(TsMuxer::new(has_audio));
                self.start_segment(frame.dts)?;
            } else {
                done = self.maybe_cut(frame)?;
            }
            if frame.dts > self.last_video_dts {
                self.last_frame_ticks = frame.dts - self.last_video_dts;
            }
            self.last_video_dts = frame.dts;
        }
        if let Some(muxer) = self.muxer.as_mut() {
            muxer.write_frame(frame, &mut self.buf)?;
        }
        Ok(done)
    }

    fn maybe_cut(&mut self, frame: &Frame) -> Result<Option<Segment>, TsError> {
        let elapsed = frame.dts.saturating_sub(self.start_dts);
        let half_second = CLOCK_HZ / 2;
        let cut = if frame.idr {
            if let Some(prev) = self.last_idr_dts {
                self.last_gop = frame.dts.saturating_sub(prev);
            }
            self.last_idr_dts = Some(frame.dts);
            // A millisecond of slack absorbs the 1 ms resolution of RTMP timestamps.
            elapsed + 90 >= self.target
                || (self.last_gop > 0 && elapsed + self.last_gop >= self.target + half_second)
        } else if elapsed >= MAX_SEGMENT_TICKS {
            tracing::warn!(
                elapsed_s = elapsed / CLOCK_HZ,
                "no IDR frame: cutting on a non-IDR frame"
            );
            true
        } else {
            false
        };
        if !cut {
            return Ok(None);
        }
        let segment = self.take_segment(elapsed);
        self.start_segment(frame.dts)?;
        Ok(Some(segment))
    }

    fn start_segment(&mut self, dts: u64) -> Result<(), TsError> {
        self.start_dts = dts;
        self.last_idr_dts.get_or_insert(dts);
        match self.muxer.as_mut() {
            Some(muxer) => muxer.write_tables(&mut self.buf),
            None => Ok(()),
        }
    }

    fn take_segment(&mut self, ticks: u64) -> Segment {
        let capacity = self.buf.len() + self.buf.len() / 8;
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        let segment = Segment {
            sequence: self.next_sequence,
            duration: ticks as f64 / CLOCK_HZ as f64,
            data: Bytes::from(data),
        };
        self.next_sequence += 1;
        segment
    }

    /// Ends the stream: returns the last, possibly short, segment (its duration counts the
    /// last video frame's own duration), or `None` if nothing was buffered.
    pub fn finish(&mut self) -> Option<Segment> {
        if self.muxer.is_none() || self.buf.is_empty() {
            return None;
        }
        let ticks = self.last_video_dts.saturating_sub(self.start_dts) + self.last_frame_ticks;
        let segment = self.take_segment(ticks);
        self.buf = Vec::new();
        self.muxer = None;
        Some(segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `secs` of 25 fps video with an IDR every `gop` frames (plus audio).
    fn run(target: u32, gop: u64, secs: u64) -> Vec<Segment> {
        let mut s = Segmenter::new(target);
        let mut out = Vec::new();
        for i in 0..secs * 25 {
            let dts = 126_000 + i * 3600;
            let v = Frame {
                track: Track::Video,
                dts,
                pts: dts,
                idr: i % gop == 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            };
            out.extend(s.push(&v, true).unwrap());
            let a = Frame {
                track: Track::Audio,
                dts,
                pts: dts,
                idr: false,
                data: Bytes::from_static(&[0xFF]),
            };
            out.extend(s.push(&a, true).unwrap());
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn cuts_at_target_when_gop_divides_it() {
        let segs = run(4, 50, 20);
        assert_eq!(segs.len(), 5);
        assert!(
            segs.iter().all(|s| (s.duration - 4.0).abs() < 1e-9),
            "{:?}",
            segs.iter().map(|s| s.duration).collect::<Vec<_>>()
        );
        assert_eq!(segs.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(segs.iter().all(|s| s.data.len() % 188 == 0 && s.data[0] == 0x47));
    }

    #[test]
    fn never_rounds_above_target_when_gop_does_not_divide_it() {
        // 2.4 s GOP, 4 s target: waiting for 4.8 s would round to 5 > 4.
        for seg in &run(4, 60, 60)[..] {
            assert!(seg.duration.round() <= 4.0, "{}", seg.duration);
        }
    }

    #[test]
    fn drops_frames_before_first_idr() {
        let mut s = Segmenter::new(2);
        let p = Frame {
            track: Track::Video,
            dts: 0,
            pts: 0,
            idr: false,
            data: Bytes::from_static(&[1]),
        };
        assert!(s.push(&p, false).unwrap().is_none());
        assert!(s.finish().is_none());
    }
}
