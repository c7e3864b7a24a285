//! Unit and property tests of the FLV demuxer, configuration parsers and file reader.

use super::*;
use crate::media::{AudioConfig, VideoConfig, TIMESTAMP_BASE};
use proptest::prelude::*;

fn avc_config() -> Vec<u8> {
    vec![1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 3, 0x67, 0x64, 0x00, 1, 0, 2, 0x68, 0xEE]
}

fn video(frame_type: u8, packet_type: u8, cts: i32, payload: &[u8]) -> Vec<u8> {
    let c = cts.to_be_bytes();
    let mut v = vec![frame_type << 4 | 7, packet_type, c[1], c[2], c[3]];
    v.extend_from_slice(payload);
    v
}

fn frame(event: Option<MediaEvent>) -> Frame {
    match event {
        Some(MediaEvent::Frame(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn tracks(event: Option<MediaEvent>) -> Tracks {
    match event {
        Some(MediaEvent::Tracks(t)) => t,
        other => panic!("expected tracks, got {other:?}"),
    }
}

#[test]
fn idr_gets_aud_and_parameter_sets() {
    let mut d = FlvDemuxer::new();
    assert!(d.video(0, &video(1, 1, 0, &[0, 0, 0, 1, 0x65])).unwrap().is_none(), "no config");
    let t = tracks(d.video(0, &video(1, 0, 0, &avc_config())).unwrap());
    assert_eq!(
        t.video.unwrap().parameter_sets[..],
        [0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 0, 1, 0x68, 0xEE]
    );
    let f = frame(d.video(40, &video(1, 1, 80, &[0, 0, 0, 2, 0x65, 0xAA])).unwrap());
    assert!(f.idr && !f.discontinuity);
    assert_eq!(f.dts, TIMESTAMP_BASE);
    assert_eq!(f.pts, TIMESTAMP_BASE + 80 * 90);
    assert_eq!(
        &f.data[..],
        &[
            0, 0, 0, 1, 9, 0xF0, 0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1,
            0x65, 0xAA
        ]
    );
    let p = frame(d.video(80, &video(2, 1, -40, &[0, 0, 0, 1, 0x41])).unwrap());
    assert!(!p.idr);
    assert_eq!(p.dts, TIMESTAMP_BASE + 40 * 90);
    assert_eq!(p.pts, TIMESTAMP_BASE);
}

#[test]
fn malformed_video_is_an_error_not_a_panic() {
    let mut d = FlvDemuxer::new();
    d.video(0, &video(1, 0, 0, &avc_config())).unwrap();
    assert_eq!(
        d.video(0, &video(1, 1, 0, &[0, 0, 0, 9, 0x65])).unwrap_err(),
        FlvError::Truncated("NAL unit")
    );
    assert_eq!(d.video(0, &[0x17]).unwrap_err(), FlvError::Truncated("VIDEODATA"));
    assert_eq!(d.video(0, &[0x1C, 1, 0, 0, 0]).unwrap_err(), FlvError::UnsupportedVideoCodec(12));
}

#[test]
fn unusable_avc_headers_are_ignored_and_identical_ones_are_no_change() {
    let mut d = FlvDemuxer::new();
    for bad in
        [&[][..], &[1, 2], &[2, 0x64, 0, 0x1F, 0xFF, 0xE1], &[1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0]]
    {
        assert!(d.video(0, &video(1, 0, 0, bad)).unwrap().is_none(), "{bad:?}");
    }
    assert_eq!(d.tracks(), &Tracks::default());
    assert!(d.video(0, &video(1, 0, 0, &avc_config())).unwrap().is_some());
    assert!(d.video(0, &video(1, 0, 0, &avc_config())).unwrap().is_none(), "re-sent");
    assert!(d.video(0, &video(1, 0, 0, &[])).unwrap().is_none(), "empty later: ignored");
    let mut other = avc_config();
    other[10] = 0x01; // a different SPS byte
    let t = tracks(d.video(0, &video(1, 0, 0, &other)).unwrap());
    assert_eq!(t.video.unwrap().parameter_sets[6], 0x01);
}

#[test]
fn parameter_sets_over_the_limit_end_the_connection() {
    let limits = MediaLimits { max_parameter_set_bytes: 12, ..MediaLimits::default() };
    let mut d = FlvDemuxer::with_limits(limits);
    // SPS 3 bytes + PPS 2 bytes + two start codes = 13 bytes.
    assert_eq!(
        d.video(0, &video(1, 0, 0, &avc_config())).unwrap_err(),
        FlvError::ParameterSetsTooLarge { bytes: 13, limit: 12 }
    );
    let limits = MediaLimits { max_parameter_set_bytes: 13, ..MediaLimits::default() };
    assert!(FlvDemuxer::with_limits(limits).video(0, &video(1, 0, 0, &avc_config())).is_ok());
}

#[test]
fn aac_gets_adts_header() {
    let mut d = FlvDemuxer::new();
    assert!(d.audio(0, &[0xAF, 1, 1, 2]).unwrap().is_none(), "no config yet: dropped");
    // AAC-LC (2), 48 kHz (index 3), stereo.
    let t = tracks(d.audio(0, &[0xAF, 0, 0x11, 0x90]).unwrap());
    assert_eq!(t.audio, Some(AudioConfig { profile: 1, sampling_index: 3, channels: 2 }));
    let f = frame(d.audio(21, &[0xAF, 1, 0xDE, 0xAD]).unwrap());
    assert_eq!(&f.data[..], &[0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x3F, 0xFC, 0xDE, 0xAD]);
    assert_eq!(f.pts, TIMESTAMP_BASE);
}

/// ffmpeg relaying MPEG-TS: an empty AudioSpecificConfig first, the real one later.
#[test]
fn empty_aac_sequence_header_is_ignored_until_a_usable_one() {
    let mut d = FlvDemuxer::new();
    assert!(d.audio(0, &[0xAF, 0]).unwrap().is_none());
    assert!(d.audio(0, &[0xAF, 0, 0x11]).unwrap().is_none());
    assert!(d.audio(0, &[0xAF, 0, 0xF8, 0x00]).unwrap().is_none(), "object type 31");
    assert!(d.audio(5, &[0xAF, 1, 0xDE]).unwrap().is_none(), "frame before config: dropped");
    assert!(d.tracks().audio.is_none());
    tracks(d.audio(5, &[0xAF, 0, 0x11, 0x90]).unwrap());
    assert!(d.audio(5, &[0xAF, 0, 0x11, 0x90]).unwrap().is_none(), "re-sent");
    let t = tracks(d.audio(5, &[0xAF, 0, 0x11, 0x88]).unwrap());
    assert_eq!(t.audio.map(|a| a.channels), Some(1));
    assert!(d.audio(5, &[0xAF]).is_err());
}

#[test]
fn timestamps_survive_32_bit_wrap() {
    let mut c = Clock { last_raw: u32::MAX - 10, last_ms: 0 };
    assert_eq!(c.ms(5), 16);
}

#[test]
fn timestamp_jumps_are_rebased_and_flagged() {
    let mut d = FlvDemuxer::new();
    d.video(0, &video(1, 0, 0, &avc_config())).unwrap();
    let idr = video(1, 1, 0, &[0, 0, 0, 1, 0x65]);
    let mut dts = Vec::new();
    for ts in [1000, 1040, 3_601_000, 3_601_040, 0, 40] {
        let f = frame(d.video(ts, &idr).unwrap());
        dts.push((f.dts, f.discontinuity));
    }
    let base = TIMESTAMP_BASE;
    assert_eq!(
        dts,
        [
            (base, false),
            (base + 3600, false),
            (base + 7200, true),
            (base + 10_800, false),
            (base + 14_400, true),
            (base + 18_000, false)
        ]
    );
}

#[test]
fn new_inband_sps_on_an_idr_replaces_the_configuration_and_flags_a_discontinuity() {
    let mut d = FlvDemuxer::new();
    d.video(0, &video(1, 0, 0, &avc_config())).unwrap();
    // Same SPS in-band as configured: no change.
    let same = [&[0, 0, 0, 3, 0x67, 0x64, 0x00][..], &[0, 0, 0, 1, 0x65]].concat();
    assert!(!frame(d.video(0, &video(1, 1, 0, &same)).unwrap()).discontinuity);
    // A new SPS (and PPS) in-band.
    let new = [&[0, 0, 0, 3, 0x67, 0x4D, 0x01][..], &[0, 0, 0, 2, 0x68, 0xCE], &[0, 0, 0, 1, 0x65]]
        .concat();
    let f = frame(d.video(40, &video(1, 1, 0, &new)).unwrap());
    assert!(f.idr && f.discontinuity);
    let sets = d.tracks().video.as_ref().unwrap().parameter_sets.clone();
    assert_eq!(sets[..], [0, 0, 0, 1, 0x67, 0x4D, 0x01, 0, 0, 0, 1, 0x68, 0xCE]);
    // The next IDR without in-band sets gets the new ones; no second discontinuity.
    let idr = frame(d.video(80, &video(1, 1, 0, &[0, 0, 0, 1, 0x65])).unwrap());
    assert!(!idr.discontinuity);
    assert_eq!(idr.data[6..6 + sets.len()], sets[..]);
}

/// An FLV file with the given tags.
fn flv_file(tags: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for (kind, ts, body) in tags {
        let len = body.len() as u32;
        out.push(*kind);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(len + 11).to_be_bytes());
    }
    out
}

/// Bodies that often start like real AVC / AAC packets, so parsing goes deep.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(vec![]),
        (0u8..3).prop_map(|t| vec![0x17, t]),
        (0u8..3).prop_map(|t| vec![0x27, t, 0, 0, 0]),
        (0u8..3).prop_map(|t| vec![0xAF, t]),
        Just(vec![0x17, 0, 0, 0, 0, 1]),
    ];
    (prefix, proptest::collection::vec(any::<u8>(), 0..96)).prop_map(|(mut p, rest)| {
        p.extend(rest);
        p
    })
}

fn avc_record() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<Vec<u8>>, u8)> {
    let unit = proptest::collection::vec(any::<u8>(), 0..40);
    (
        proptest::collection::vec(unit.clone(), 1..4),
        proptest::collection::vec(unit, 1..4),
        prop_oneof![Just(0u8), Just(1), Just(3)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary tag bodies never panic the demuxer; what comes out is bounded by what went in.
    #[test]
    fn demuxer_output_is_bounded_by_its_input(
        bodies in proptest::collection::vec((any::<bool>(), any::<u32>(), body()), 1..12),
    ) {
        let mut d = FlvDemuxer::new();
        let _ = d.video(0, &video(1, 0, 0, &avc_config()));
        let params = d.tracks().video.as_ref().map_or(0, |v| v.parameter_sets.len());
        for (is_video, ts, body) in &bodies {
            let out = if *is_video { d.video(*ts, body) } else { d.audio(*ts, body) };
            match out {
                Ok(Some(MediaEvent::Frame(f))) => {
                    let bound = if *is_video { 6 + params + body.len() * 5 / 2 } else { 7 + body.len() };
                    prop_assert!(f.data.len() <= bound, "{} > {bound}", f.data.len());
                    prop_assert!(!f.idr || f.track == Track::Video);
                }
                Ok(Some(MediaEvent::Tracks(t))) => {
                    let sets = t.video.map_or(0, |v| v.parameter_sets.len());
                    prop_assert!(sets <= MediaLimits::default().max_parameter_set_bytes);
                }
                Ok(None) | Err(_) => {}
            }
        }
    }

    /// Output DTS strictly increase within a track, whatever the source timestamps.
    #[test]
    fn output_timestamps_are_monotonic_per_track(
        stamps in proptest::collection::vec((any::<bool>(), any::<u32>()), 1..64),
    ) {
        let mut d = FlvDemuxer::new();
        d.video(0, &video(1, 0, 0, &avc_config())).unwrap();
        d.audio(0, &[0xAF, 0, 0x11, 0x90]).unwrap();
        let mut last = [None::<u64>; 2];
        for (is_video, ts) in stamps {
            let event = if is_video {
                d.video(ts, &video(2, 1, 0, &[0, 0, 0, 1, 0x41])).unwrap()
            } else {
                d.audio(ts, &[0xAF, 1, 0x21]).unwrap()
            };
            let f = frame(event);
            let i = f.track as usize;
            prop_assert!(last[i].is_none_or(|l| f.dts > l), "{:?} then {}", last[i], f.dts);
            last[i] = Some(f.dts);
        }
    }

    /// Arbitrary records never panic the AVC parser; a parsed one respects the limit.
    #[test]
    fn avc_config_parser_never_panics(record in proptest::collection::vec(any::<u8>(), 0..256), limit in 0usize..300) {
        if let Ok(c) = parse_avc_config(&record, limit) {
            prop_assert!(c.video.parameter_sets.len() <= limit);
            prop_assert!(c.video.parameter_sets.len() <= record.len());
            prop_assert!(matches!(c.nal_length_size, 1 | 2 | 4));
        }
    }

    /// Well-formed records parse back to their SPS/PPS in Annex B form.
    #[test]
    fn avc_config_round_trips((sps, pps, size) in avc_record()) {
        let mut record = vec![1, 0x64, 0, 0x1F, 0xFC | size, 0xE0 | sps.len() as u8];
        for unit in &sps {
            record.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            record.extend_from_slice(unit);
        }
        record.push(pps.len() as u8);
        for unit in &pps {
            record.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            record.extend_from_slice(unit);
        }
        let mut expected = Vec::new();
        for unit in sps.iter().chain(&pps) {
            expected.extend_from_slice(&START_CODE);
            expected.extend_from_slice(unit);
        }
        let parsed = parse_avc_config(&record, 4096).unwrap();
        prop_assert_eq!(parsed, AvcConfig {
            video: VideoConfig { parameter_sets: expected.into() },
            nal_length_size: usize::from(size) + 1,
            sps_len: sps.iter().map(|u| u.len() + 4).sum(),
        });
    }

    /// Arbitrary AudioSpecificConfigs never panic; accepted ones fit an ADTS header, and every
    /// ADTS-expressible one is accepted with its fields.
    #[test]
    fn audio_specific_config_parser(asc in proptest::collection::vec(any::<u8>(), 0..8),
                                    object in prop_oneof![1u8..=5, Just(29)], index in 0u8..=12, channels in 0u8..=7) {
        if let Ok(c) = parse_audio_specific_config(&asc) {
            prop_assert!(c.profile <= 3 && c.sampling_index <= 12 && c.channels <= 7);
        }
        let built = [object << 3 | index >> 1, (index & 1) << 7 | channels << 3];
        let parsed = parse_audio_specific_config(&built).unwrap();
        let profile = if object > 4 { 1 } else { object - 1 };
        prop_assert_eq!(parsed, AudioConfig { profile, sampling_index: index, channels });
        let header = adts_header(parsed, 100);
        prop_assert_eq!(header[2] >> 6, profile);
        prop_assert_eq!((header[2] >> 2) & 0x0F, index);
    }

    /// Arbitrary bytes after an FLV header never panic the reader, and its buffer grows with
    /// the bytes actually read, not with the sizes a header claims.
    #[test]
    fn file_reader_memory_follows_input(rest in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        file.extend_from_slice(&rest);
        let mut r = FlvFileReader::new(&file[..]).unwrap();
        while let Ok(Some(_)) = r.next_tag() {}
        prop_assert!(r.buffer_capacity() <= 2 * file.len() + 64, "{}", r.buffer_capacity());
    }

    /// Well-formed files give back their tags.
    #[test]
    fn file_reader_round_trips(
        tags in proptest::collection::vec((prop_oneof![Just(8u8), Just(9), Just(18)], any::<u32>(),
                                           proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
    ) {
        let file = flv_file(&tags);
        let mut r = FlvFileReader::new(&file[..]).unwrap();
        for (kind, ts, body) in &tags {
            let tag = r.next_tag().unwrap().unwrap();
            prop_assert_eq!((tag.kind, tag.timestamp_ms, tag.body), (*kind, *ts, &body[..]));
        }
        prop_assert!(r.next_tag().unwrap().is_none());
    }
}
