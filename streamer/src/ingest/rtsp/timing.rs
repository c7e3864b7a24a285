//! RTP timestamps to the 90 kHz source timeline, and decode timestamps for H.264 that RTP
//! does not carry.
//!
//! RTP carries one timestamp per access unit, its presentation time (RFC 6184 §5.1: "the
//! RTP timestamp is set to the sampling timestamp of the content"); with B-frames those go
//! back and forth in decode order, while MPEG-TS needs a monotonic DTS with DTS <= PTS
//! (ISO/IEC 13818-1 §2.7.5). [`DecodeTimes`] derives one the way ffmpeg's demuxers do for
//! sources without DTS: each frame's DTS is the smallest PTS of a sliding window over the
//! last `reorder + 1` frames.

use crate::media::CLOCK_HZ;

/// Added to every source timestamp, 90 kHz ticks (10 s): audio a little before the session
/// start and the first frames' decode times (a few frames before their PTS) stay
/// non-negative. [`crate::media::Timeline`] maps the first timestamp to its own origin, so
/// the value is otherwise invisible.
pub(super) const ORIGIN: u64 = 10 * CLOCK_HZ;

/// Frames of reordering assumed for H.264 that may hold B-frames (every profile but
/// Baseline): x264 signals at most 2 (`max_num_reorder_frames`), hardware encoders rarely
/// more. A larger value than the stream needs only delays DTS a little further behind PTS.
pub(super) const REORDER_FRAMES: usize = 4;

/// Frame spacing assumed when the SPS has no timing information, 90 kHz ticks (25 fps).
pub(super) const DEFAULT_FRAME_TICKS: u64 = CLOCK_HZ / 25;

/// `profile_idc` of H.264 Baseline (ISO/IEC 14496-10 Annex A.2.1): no B slices, so decode
/// order is presentation order.
const PROFILE_BASELINE: u8 = 66;

/// A timestamp of `elapsed` units of a `clock_rate` Hz clock since the session start
/// (retina's [`retina::Timestamp::elapsed`]) as 90 kHz ticks after [`ORIGIN`]; 0 for
/// anything earlier than 10 s before the start. A zero clock rate counts as 90 kHz.
pub(super) fn ticks(elapsed: i64, clock_rate: u32) -> u64 {
    let rate = i128::from(clock_rate.max(1));
    let scaled = i128::from(elapsed) * i128::from(CLOCK_HZ) / rate + i128::from(ORIGIN);
    u64::try_from(scaled.max(0)).unwrap_or(u64::MAX)
}

/// Frames of reordering to allow for a stream with this SPS NAL unit (header byte first):
/// 0 for Baseline, [`REORDER_FRAMES`] otherwise.
pub(super) fn reorder_frames(sps: &[u8]) -> usize {
    match sps.get(1) {
        Some(&PROFILE_BASELINE) => 0,
        _ => REORDER_FRAMES,
    }
}

/// Frame spacing in 90 kHz ticks from retina's `frame_rate()` (`(num, den)`: one frame
/// lasts `num / den` seconds), [`DEFAULT_FRAME_TICKS`] when unknown or absurd.
pub(super) fn frame_ticks(frame_rate: Option<(u32, u32)>) -> u64 {
    match frame_rate {
        Some((num, den)) if num > 0 && den > 0 => {
            let ticks = u64::from(num) * CLOCK_HZ / u64::from(den);
            if (CLOCK_HZ / 240..=CLOCK_HZ).contains(&ticks) {
                ticks
            } else {
                DEFAULT_FRAME_TICKS
            }
        }
        _ => DEFAULT_FRAME_TICKS,
    }
}

/// Decode timestamps from presentation timestamps in decode order (see the module doc).
///
/// With `reorder` frames of reordering or less, the DTS it gives strictly increase (for
/// distinct PTS) and never exceed the frame's PTS. Before `reorder + 1` frames were seen,
/// the window is filled with virtual frames `step` apart ending one `step` before the first
/// PTS, so the first DTS is `reorder` frames before it, as encoders write them.
#[derive(Debug, Clone)]
pub(super) struct DecodeTimes {
    reorder: usize,
    /// The window, sorted ascending; empty until the first frame.
    window: Vec<u64>,
}

impl DecodeTimes {
    /// No frame seen yet; `reorder` frames of reordering allowed (0: DTS = PTS).
    pub(super) fn new(reorder: usize) -> Self {
        Self { reorder, window: Vec::with_capacity(reorder + 1) }
    }

    /// Frames of reordering allowed.
    pub(super) fn reorder(&self) -> usize {
        self.reorder
    }

    /// The DTS of the next frame in decode order, whose PTS is `pts`; `step` is the frame
    /// spacing assumed for the first frames (both 90 kHz ticks).
    pub(super) fn next(&mut self, pts: u64, step: u64) -> u64 {
        if self.reorder == 0 {
            return pts;
        }
        if self.window.is_empty() {
            let step = step.max(1);
            for i in (1..=self.reorder as u64 + 1).rev() {
                self.window.push(pts.saturating_sub(i.saturating_mul(step)));
            }
        }
        self.window.remove(0);
        let at = self.window.partition_point(|&p| p < pts);
        self.window.insert(at, pts);
        self.window[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescales_to_90khz_after_the_origin() {
        assert_eq!(ticks(0, 90_000), ORIGIN);
        assert_eq!(ticks(48_000, 48_000), ORIGIN + CLOCK_HZ);
        assert_eq!(ticks(1_024, 44_100), ORIGIN + 1_024 * 90_000 / 44_100);
        assert_eq!(ticks(-8_000, 8_000), ORIGIN - CLOCK_HZ);
        assert_eq!(ticks(-20 * 8_000, 8_000), 0, "clamped at zero");
        assert_eq!(ticks(i64::MAX, 1), u64::MAX, "saturates");
        assert_eq!(ticks(90, 0), ORIGIN + 90 * 90_000);
    }

    #[test]
    fn frame_spacing_from_the_sps_timing() {
        assert_eq!(frame_ticks(Some((1, 25))), 3_600);
        assert_eq!(frame_ticks(Some((1001, 30_000))), 3_003);
        assert_eq!(frame_ticks(Some((6_000, 90_000))), 6_000);
        assert_eq!(frame_ticks(None), DEFAULT_FRAME_TICKS);
        assert_eq!(frame_ticks(Some((0, 25))), DEFAULT_FRAME_TICKS);
        assert_eq!(frame_ticks(Some((1, 100_000))), DEFAULT_FRAME_TICKS, "absurd rate");
        assert_eq!(reorder_frames(&[0x67, 66, 0xC0, 0x1E]), 0);
        assert_eq!(reorder_frames(&[0x67, 100, 0x00, 0x1F]), REORDER_FRAMES);
        assert_eq!(reorder_frames(&[]), REORDER_FRAMES);
    }

    /// x264's default GOP (3 B-frames, B-pyramid) in decode order, in frames.
    const PYRAMID: [u64; 13] = [0, 4, 2, 1, 3, 8, 6, 5, 7, 12, 10, 9, 11];

    #[test]
    fn b_pyramid_gets_monotonic_dts_at_or_before_pts() {
        for reorder in [2, REORDER_FRAMES] {
            let mut d = DecodeTimes::new(reorder);
            let step = 3_600;
            let mut last = None;
            for (i, frame) in PYRAMID.iter().enumerate() {
                let pts = ORIGIN + frame * step;
                let dts = d.next(pts, step);
                assert!(dts <= pts, "frame {i}: dts {dts} > pts {pts}");
                assert!(last.is_none_or(|l| dts > l), "frame {i}: dts {dts} after {last:?}");
                last = Some(dts);
            }
            // As an encoder writes them: DTS `reorder` frames before the first PTS, then
            // one frame apart.
            let mut d = DecodeTimes::new(reorder);
            let dts: Vec<u64> = PYRAMID.iter().map(|f| d.next(ORIGIN + f * step, step)).collect();
            let first = ORIGIN - reorder as u64 * step;
            assert_eq!(dts[0], first);
            assert_eq!(dts[reorder], ORIGIN);
            assert_eq!(dts[12], ORIGIN + (12 - reorder as u64) * step);
        }
    }

    #[test]
    fn without_reordering_dts_is_pts() {
        let mut d = DecodeTimes::new(0);
        assert_eq!(d.next(5, 3_600), 5);
        assert_eq!(d.next(9, 3_600), 9);
    }

    #[test]
    fn a_wrong_first_step_still_gives_monotonic_dts() {
        for step in [1, 100_000] {
            let mut d = DecodeTimes::new(REORDER_FRAMES);
            let mut last = 0;
            for frame in PYRAMID {
                let pts = ORIGIN + frame * 3_600;
                let dts = d.next(pts, step);
                assert!(dts <= pts && dts > last || last == 0);
                last = dts;
            }
        }
    }
}
