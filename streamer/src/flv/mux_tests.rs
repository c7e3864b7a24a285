//! Round trips of the FLV muxer through [`FlvDemuxer`](crate::flv::FlvDemuxer).

use super::*;
use crate::flv::{adts_header, FlvDemuxer};
use crate::media::{VideoConfig, TIMESTAMP_BASE};

const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9, 0x40];
const PPS: &[u8] = &[0x68, 0xEE, 0x3C, 0x80];
const AUDIO: AudioConfig = AudioConfig { profile: 1, sampling_index: 3, channels: 2 };

fn annex_b(units: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    for u in units {
        out.put_slice(&START_CODE);
        out.put_slice(u);
    }
    out.freeze()
}

fn tracks(sps: &[u8]) -> MediaEvent {
    MediaEvent::Tracks(Tracks {
        video: Some(VideoConfig { parameter_sets: annex_b(&[sps, PPS]) }),
        audio: Some(AUDIO),
    })
}

/// A video frame as the demuxer makes them: AUD, (SPS, PPS,) slices.
fn video(dts_ms: u64, cts_ms: u64, idr: bool, sps: &[u8]) -> MediaEvent {
    let aud: &[u8] = &[0x09, 0xF0];
    let data = if idr {
        annex_b(&[aud, sps, PPS, &[0x65, 0x88, 0x84, 0x00, 0x10]])
    } else {
        annex_b(&[aud, &[0x41, 0x9A, 0x02, 0x03]])
    };
    let dts = TIMESTAMP_BASE + dts_ms * 90;
    MediaEvent::Frame(Frame {
        track: Track::Video,
        dts,
        pts: dts + cts_ms * 90,
        idr,
        discontinuity: false,
        data,
    })
}

fn audio(dts_ms: u64, payload: &[u8]) -> MediaEvent {
    let mut data = BytesMut::from(&adts_header(AUDIO, payload.len())[..]);
    data.put_slice(payload);
    let dts = TIMESTAMP_BASE + dts_ms * 90;
    MediaEvent::Frame(Frame {
        track: Track::Audio,
        dts,
        pts: dts,
        idr: false,
        discontinuity: false,
        data: data.freeze(),
    })
}

/// Muxes `events` and demuxes the tags again.
fn round_trip(events: &[MediaEvent]) -> Vec<MediaEvent> {
    let mut mux = FlvMuxer::new();
    let mut tags = Vec::new();
    for e in events {
        mux.push(e, &mut tags).unwrap();
    }
    let mut demux = FlvDemuxer::new();
    tags.iter()
        .filter_map(|t| match t.kind {
            TAG_VIDEO => demux.video(t.timestamp_ms, &t.body).unwrap(),
            _ => demux.audio(t.timestamp_ms, &t.body).unwrap(),
        })
        .collect()
}

fn same(a: &MediaEvent, b: &MediaEvent) -> bool {
    match (a, b) {
        (MediaEvent::Tracks(a), MediaEvent::Tracks(b)) => a == b,
        (MediaEvent::Frame(a), MediaEvent::Frame(b)) => {
            (a.track, a.dts, a.pts, a.idr, &a.data) == (b.track, b.dts, b.pts, b.idr, &b.data)
        }
        _ => false,
    }
}

fn assert_same(got: &[MediaEvent], want: &[MediaEvent]) {
    assert_eq!(got.len(), want.len(), "{got:#?}\n{want:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(same(g, w), "got {g:#?}\nwant {w:#?}");
    }
}

#[test]
fn mux_then_demux_gives_back_tracks_and_frames() {
    let events = vec![
        tracks(SPS),
        video(0, 80, true, SPS),
        audio(0, &[0x21, 0x10, 0x04]),
        video(40, 120, false, SPS),
        audio(23, &[0x21, 0x10, 0x05, 0x06]),
        video(80, 0, false, SPS),
        video(120, 40, true, SPS),
    ];
    // The demuxer declares video and audio in two Tracks events.
    let mut want = vec![
        MediaEvent::Tracks(Tracks { video: tracks_video(), audio: None }),
        events[1].clone(),
        events[0].clone(),
    ];
    want.extend(events[2..].iter().cloned());
    assert_same(&round_trip(&events), &want);
}

fn tracks_video() -> Option<VideoConfig> {
    Some(VideoConfig { parameter_sets: annex_b(&[SPS, PPS]) })
}

#[test]
fn starts_at_the_first_idr_and_drops_earlier_audio() {
    let events = vec![
        tracks(SPS),
        audio(0, &[1, 2, 3]),
        video(0, 0, false, SPS),
        video(40, 0, true, SPS),
        audio(30, &[4, 5, 6]),
        audio(50, &[7, 8, 9]),
    ];
    let got = round_trip(&events);
    // Video tracks, IDR, audio tracks, the audio at 50 ms (the one at 30 ms precedes the IDR).
    assert_eq!(got.len(), 4, "{got:#?}");
    let MediaEvent::Frame(idr) = &got[1] else { panic!("frame") };
    assert!(idr.idr && idr.dts == TIMESTAMP_BASE);
    let MediaEvent::Frame(a) = &got[3] else { panic!("frame") };
    assert_eq!(a.dts, TIMESTAMP_BASE + 10 * 90);
    assert_eq!(&a.data[7..], &[7, 8, 9]);
}

#[test]
fn new_parameter_sets_get_a_new_sequence_header_before_the_idr() {
    let sps2: &[u8] = &[0x67, 0x4D, 0x00, 0x28, 0xAB];
    let events = vec![
        tracks(SPS),
        video(0, 0, true, SPS),
        video(40, 0, false, SPS),
        tracks(sps2),
        video(80, 0, true, sps2),
    ];
    let mut mux = FlvMuxer::new();
    let mut tags = Vec::new();
    for e in &events {
        mux.push(e, &mut tags).unwrap();
    }
    let headers: Vec<u32> =
        tags.iter().filter(|t| t.body[1] == 0).map(|t| t.timestamp_ms).collect();
    assert_eq!(headers, [0, 80]);
    let got = round_trip(&events);
    assert!(
        matches!(&got[3], MediaEvent::Tracks(t) if t.video.as_ref().unwrap().parameter_sets == annex_b(&[sps2, PPS]))
    );
}

#[test]
fn sequence_headers_and_bodies_have_the_flv_layout() {
    let header = avc_sequence_header(&annex_b(&[SPS, PPS])).unwrap();
    assert_eq!(&header[..11], &[0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x1F, 0xFF, 0xE1]);
    assert_eq!(aac_sequence_header(AUDIO)[..], [0xAF, 0, 0x11, 0x90]);
    assert_eq!(avc_sequence_header(&annex_b(&[PPS])), Err(MuxError::ParameterSets("no SPS")));
    assert_eq!(avc_sequence_header(&annex_b(&[SPS])), Err(MuxError::ParameterSets("no PPS")));
    // Negative composition time, 3-byte start codes, trailing zeros, AUD removed.
    let body =
        video_body(&[0, 0, 1, 9, 0xF0, 0, 0, 1, 0x41, 7, 0, 0, 0, 0, 1, 0x41, 8], false, -40);
    assert_eq!(&body[..], &[0x27, 1, 0xFF, 0xFF, 0xD8, 0, 0, 0, 2, 0x41, 7, 0, 0, 0, 2, 0x41, 8]);
    let mut crc = adts_header(AUDIO, 4).to_vec();
    crc[1] &= 0xFE; // protection_absent 0: 2 CRC bytes follow
    crc.extend_from_slice(&[0xAA, 0xBB, 1, 2]);
    assert_eq!(&audio_body(&crc).unwrap()[..], &[0xAF, 1, 1, 2]);
    assert_eq!(audio_body(&[1, 2, 3]), Err(MuxError::NotAdts));
}
