//! Tests of the segmenter: cut points, target duration bound, discontinuities, byte limit.

use super::*;
use crate::media::{AudioConfig, VideoConfig};
use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};
use proptest::prelude::*;

const FRAME: u64 = 3600; // 25 fps

fn tracks(sps: u8, audio: bool) -> Tracks {
    Tracks {
        video: Some(VideoConfig { parameter_sets: Bytes::from(vec![0, 0, 0, 1, 0x67, sps]) }),
        audio: audio.then_some(AudioConfig { profile: 1, sampling_index: 3, channels: 2 }),
    }
}

fn video(dts: u64, idr: bool) -> Frame {
    Frame {
        track: Track::Video,
        dts,
        pts: dts,
        idr,
        discontinuity: false,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
    }
}

fn audio(dts: u64) -> Frame {
    Frame {
        track: Track::Audio,
        idr: false,
        data: Bytes::from_static(&[0xFF]),
        ..video(dts, false)
    }
}

fn segmenter(target: u32, audio: bool) -> Segmenter {
    let mut s = Segmenter::new(target, MediaLimits::default());
    s.set_tracks(&tracks(1, audio));
    s
}

/// Feeds `secs` of 25 fps video with an IDR every `gop` frames (plus audio).
fn run(target: u32, gop: u64, secs: u64) -> Vec<Segment> {
    let mut s = segmenter(target, true);
    let mut out = Vec::new();
    for i in 0..secs * 25 {
        let dts = 126_000 + i * FRAME;
        out.extend(s.push(&video(dts, i % gop == 0)).unwrap());
        out.extend(s.push(&audio(dts)).unwrap());
    }
    out.extend(s.finish().unwrap());
    out
}

/// (PMT version, elementary streams) of the PMT at the start of a segment.
fn pmt(segment: &Segment) -> (u8, usize) {
    let mut reader = TsPacketReader::new(&segment.data[..]);
    reader.read_ts_packet().unwrap();
    match reader.read_ts_packet().unwrap().and_then(|p| p.payload) {
        Some(TsPayload::Pmt(pmt)) => (pmt.version_number.as_u8(), pmt.es_info.len()),
        other => panic!("no PMT: {other:?}"),
    }
}

fn durations(segs: &[Segment]) -> Vec<f64> {
    segs.iter().map(|s| s.duration).collect()
}

#[test]
fn cuts_at_target_when_gop_divides_it() {
    let segs = run(4, 50, 20);
    assert_eq!(segs.len(), 5);
    assert!(segs.iter().all(|s| (s.duration - 4.0).abs() < 1e-9), "{:?}", durations(&segs));
    assert_eq!(segs.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert!(segs.iter().all(|s| s.data.len() % 188 == 0 && s.data[0] == 0x47));
    assert!(segs.iter().all(|s| !s.discontinuity && pmt(s) == (0, 2)));
}

#[test]
fn never_rounds_above_target_when_gop_does_not_divide_it() {
    // 2.4 s GOP, 4 s target: waiting for 4.8 s would round to 5 > 4.
    for seg in &run(4, 60, 60)[..] {
        assert!(seg.duration.round() <= 4.0, "{}", seg.duration);
    }
}

#[test]
fn gop_longer_than_target_is_cut_on_non_idr_frames() {
    // 10 s GOP, 2 s target.
    let segs = run(2, 250, 30);
    assert!(segs.len() >= 12, "{:?}", durations(&segs));
    for seg in &segs[..segs.len() - 1] {
        assert!(seg.duration.round() <= 2.0 && seg.duration > 2.0, "{:?}", durations(&segs));
    }
    let total: f64 = segs.iter().map(|s| s.duration).sum();
    assert!((total - 30.0).abs() < 0.05, "{total}");
}

#[test]
fn drops_frames_before_first_idr() {
    let mut s = segmenter(2, false);
    assert!(s.push(&video(0, false)).unwrap().is_none());
    assert!(s.push(&audio(0)).unwrap().is_none());
    assert!(s.finish().unwrap().is_none());
}

#[test]
fn new_codec_configuration_cuts_at_next_idr_with_discontinuity_and_new_pmt() {
    let mut s = segmenter(4, false);
    let mut out = Vec::new();
    for i in 0..200u64 {
        let dts = 126_000 + i * FRAME;
        if i == 30 {
            // Identical re-sent configuration: no change.
            s.set_tracks(&tracks(1, false));
        }
        if i == 60 {
            s.set_tracks(&tracks(2, true));
        }
        // IDR every 2 s, plus an early one right after the change.
        out.extend(s.push(&video(dts, i % 50 == 0 || i == 62)).unwrap());
        out.extend(s.push(&audio(dts)).unwrap());
    }
    out.extend(s.finish().unwrap());
    let flags: Vec<bool> = out.iter().map(|s| s.discontinuity).collect();
    assert_eq!(flags, [false, true, false], "{:?}", durations(&out));
    // 0..2.48 s cut at the new configuration's IDR (frame 62), which starts segment 1; that
    // one ends at the IDR of 6 s (waiting for 8 s would round to 6 > 4).
    let expected = [2.48, 3.52, 2.0];
    assert!(
        out.iter().zip(expected).all(|(s, d)| (s.duration - d).abs() < 1e-9),
        "{:?}",
        durations(&out)
    );
    assert_eq!(pmt(&out[0]), (0, 1));
    assert_eq!(pmt(&out[1]), (1, 2));
}

#[test]
fn video_frames_between_new_configuration_and_its_idr_are_dropped() {
    let mut s = segmenter(2, false);
    s.push(&video(0, true)).unwrap();
    s.push(&video(FRAME, false)).unwrap();
    s.set_tracks(&tracks(2, false));
    assert!(s.push(&video(2 * FRAME, false)).unwrap().is_none());
    let first = s.push(&video(3 * FRAME, true)).unwrap().unwrap();
    assert!((first.duration - 0.12).abs() < 1e-9);
    let packets = |seg: &Segment| seg.data.len() / 188;
    // PAT, PMT and two one-packet frames: the dropped frame is not in it.
    assert_eq!(packets(&first), 4);
    assert!(s.finish().unwrap().unwrap().discontinuity);
}

#[test]
fn audio_appearing_in_the_first_segment_joins_it() {
    let mut s = segmenter(2, false);
    let mut out = Vec::new();
    for i in 0..100u64 {
        let dts = i * FRAME;
        if i == 3 {
            s.set_tracks(&tracks(1, true));
        }
        out.extend(s.push(&video(dts, i % 25 == 0)).unwrap());
        out.extend(s.push(&audio(dts)).unwrap());
    }
    out.extend(s.finish().unwrap());
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| !s.discontinuity && pmt(s).1 == 2));
}

#[test]
fn rebased_timestamps_cut_at_next_idr_as_discontinuity() {
    let mut s = segmenter(4, false);
    let mut out = Vec::new();
    for i in 0..150u64 {
        let mut f = video(i * FRAME, i % 25 == 0);
        f.discontinuity = i == 40;
        out.extend(s.push(&f).unwrap());
    }
    out.extend(s.finish().unwrap());
    assert_eq!(out.iter().map(|s| s.discontinuity).collect::<Vec<_>>(), [false, true]);
    assert!((out[0].duration - 2.0).abs() < 1e-9, "{:?}", durations(&out));
    assert!((out[1].duration - 4.0).abs() < 1e-9, "{:?}", durations(&out));
}

#[test]
fn a_gap_ends_the_segment_within_target_and_marks_a_discontinuity() {
    let mut s = segmenter(2, false);
    let mut out = Vec::new();
    let mut dts = 0;
    for i in 0..100u64 {
        dts += if i == 30 { 3 * CLOCK_HZ } else { FRAME };
        out.extend(s.push(&video(dts, i % 25 == 0)).unwrap());
    }
    out.extend(s.finish().unwrap());
    assert!(out.iter().all(|s| s.duration < 2.5), "{:?}", durations(&out));
    assert_eq!(out.iter().filter(|s| s.discontinuity).count(), 1, "{:?}", durations(&out));
}

#[test]
fn a_segment_over_the_byte_limit_is_an_error() {
    let limits = MediaLimits { max_segment_bytes: 10_000, ..MediaLimits::default() };
    let mut s = Segmenter::new(2, limits);
    s.set_tracks(&tracks(1, false));
    s.push(&video(0, true)).unwrap();
    // DTS stuck: no cut ever comes.
    let err = (0..100).find_map(|_| s.push(&video(0, false)).err()).expect("limit reached");
    assert!(matches!(err, SegmentError::TooLarge { limit: 10_000, .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the timestamps, IDR placement and configuration changes, every segment
    /// rounds to at most the target, and sequence numbers run on.
    #[test]
    fn every_segment_rounds_to_at_most_the_target(
        target in 1u32..6,
        events in proptest::collection::vec(
            (0u8..10, 0u64..(3 * CLOCK_HZ), any::<bool>(), 0u8..3), 1..400),
    ) {
        let mut s = segmenter(target, true);
        let mut out = Vec::new();
        let mut dts = [126_000u64; 2];
        for (kind, step, idr, change) in events {
            let is_audio = kind < 3;
            // Mostly regular steps, sometimes long ones.
            let step = if kind == 9 { step } else { step % 5000 };
            let i = usize::from(is_audio);
            dts[i] += step;
            if change == 0 && kind == 0 {
                s.set_tracks(&tracks(kind ^ step as u8, step % 2 == 0));
            }
            let f = if is_audio { audio(dts[i]) } else { video(dts[i], idr) };
            out.extend(s.push(&f).unwrap());
        }
        out.extend(s.finish().unwrap());
        for (n, seg) in out.iter().enumerate() {
            prop_assert_eq!(seg.sequence, n as u64);
            prop_assert!(seg.duration.round() <= f64::from(target), "{:?}", durations(&out));
            prop_assert!(seg.data.len() % 188 == 0);
        }
    }
}

/// Video frames in a segment: PES packets with a payload unit start on the video PID.
fn video_frames(segment: &Segment) -> usize {
    segment
        .data
        .chunks(188)
        .filter(|p| p[1] & 0x40 != 0 && u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]) == 0x100)
        .count()
}

#[test]
fn frames_after_a_discontinuity_wait_for_the_next_idr() {
    let mut s = segmenter(2, true);
    let mut out = Vec::new();
    for i in 0..60u64 {
        let dts = 126_000 + i * FRAME;
        // Another encoder joins at frame 30, mid-GOP: its IDRs come at 35, 60, ...
        let idr = if i < 30 { i % 25 == 0 } else { i >= 35 && (i - 35) % 25 == 0 };
        let mut frame = video(dts, idr);
        frame.discontinuity = i == 30;
        out.extend(s.push(&audio(dts)).unwrap());
        out.extend(s.push(&frame).unwrap());
    }
    out.extend(s.finish().unwrap());
    let first_new = out.iter().position(|seg| seg.discontinuity).expect("a discontinuity");
    assert_eq!(out.iter().filter(|seg| seg.discontinuity).count(), 1);
    // Frames 30..35 (audio and video) are dropped: the old segments end at frame 30, and the
    // new one starts with the IDR of frame 35.
    let old: usize = out[..first_new].iter().map(video_frames).sum();
    let new: usize = out[first_new..].iter().map(video_frames).sum();
    assert_eq!((old, new), (30, 25));
}

#[test]
fn an_oversized_segment_is_dropped_and_the_stream_records_on() {
    let limits = MediaLimits { max_segment_bytes: 20_000, ..MediaLimits::default() };
    let mut s = Segmenter::new(4, limits);
    s.set_tracks(&tracks(1, false));
    let big = Frame { data: Bytes::from(vec![0u8; 4_000]), ..video(126_000, true) };
    let mut errors = 0;
    let mut out = Vec::new();
    for i in 0..10u64 {
        // Timestamps stuck: no cut ever comes, the segment outgrows its limit.
        match s.push(&Frame { idr: i == 0, ..big.clone() }) {
            Ok(seg) => out.extend(seg),
            Err(SegmentError::TooLarge { .. }) => errors += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(errors, 1, "one error, then frames wait for an IDR");
    for i in 0..100u64 {
        out.extend(s.push(&video(200_000 + i * FRAME, i % 25 == 0)).unwrap());
    }
    out.extend(s.finish().unwrap());
    assert!(!out.is_empty());
    assert!(!out[0].discontinuity && out[0].sequence == 0, "nothing of the lost one");
    assert!(out.iter().all(|seg| seg.data.len() <= 20_000));
    assert_eq!(out.iter().map(video_frames).sum::<usize>(), 100);
}

#[test]
fn finish_then_more_frames_start_a_discontinuity_at_an_idr() {
    let mut s = segmenter(2, false);
    let mut out = Vec::new();
    for i in 0..30u64 {
        out.extend(s.push(&video(126_000 + i * FRAME, i % 25 == 0)).unwrap());
    }
    out.extend(s.finish().unwrap());
    let before = out.len();
    // A reconnected source: the first frame (not an IDR) carries the discontinuity.
    for i in 30..80u64 {
        let mut frame = video(126_000 + i * FRAME, i % 25 == 10);
        frame.discontinuity = i == 30;
        out.extend(s.push(&frame).unwrap());
    }
    out.extend(s.finish().unwrap());
    assert!(out[before].discontinuity, "the first segment after the flush");
    assert!(out[before + 1..].iter().all(|seg| !seg.discontinuity));
    assert_eq!(out[before..].iter().map(video_frames).sum::<usize>(), 45);
}
