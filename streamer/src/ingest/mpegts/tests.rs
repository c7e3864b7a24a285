//! Unit and property tests of the MPEG-TS demuxer: streams written by our own muxer
//! ([`crate::ts::TsMuxer`], for exact expectations) and by ffmpeg.

use super::*;
use crate::flv::adts_header;
use crate::media::{AudioConfig, Frame, Track};
use crate::ts::TsMuxer;
use bytes::Bytes;
use mpeg2ts::es::StreamType;
use mpeg2ts::ts::payload::{Pat, Pmt};
use mpeg2ts::ts::{
    ContinuityCounter, EsInfo, Pid, ProgramAssociation, TransportScramblingControl, TsHeader,
    TsPacket, TsPacketWriter, TsPayload, VersionNumber, WriteTsPacket,
};
use mpeg2ts_reader::mpegts_crc::sum32;
use proptest::prelude::*;

mod hostile;

const CFG: AudioConfig = AudioConfig { profile: 1, sampling_index: 3, channels: 2 };
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];
/// 40 ms, 25 fps.
const FRAME: u64 = 3600;

fn params(n: u8) -> Vec<u8> {
    vec![0, 0, 0, 1, 0x67, 0x64, 0, 0x1F, n, 0xAC, 0, 0, 0, 1, 0x68, 0xEE, n]
}

/// An Annex B access unit: AUD, SPS/PPS (`sps`), and one slice of `size` bytes.
fn au(idr: bool, sps: Option<u8>, size: usize) -> Vec<u8> {
    let mut v = AUD.to_vec();
    if let Some(n) = sps {
        v.extend_from_slice(&params(n));
    }
    v.extend_from_slice(&[0, 0, 0, 1, if idr { 0x65 } else { 0x41 }]);
    v.extend((0..size).map(|i| 0x80 | i as u8));
    v
}

fn adts(len: usize) -> Vec<u8> {
    let mut v = adts_header(CFG, len).to_vec();
    v.extend(std::iter::repeat_n(0x21, len));
    v
}

fn frame(track: Track, dts: u64, pts: u64, idr: bool, data: Vec<u8>) -> Frame {
    Frame { track, dts, pts, idr, discontinuity: false, data: Bytes::from(data) }
}

/// A transport stream of `n` video frames at 25 fps from `dts0` (IDR with SPS/PPS every
/// 25th, PTS 80 ms ahead), two ADTS frames per video frame, tables every 10 frames.
pub(crate) fn stream(n: u64, dts0: u64) -> (Vec<u8>, Vec<Frame>) {
    stream_shifted(n, dts0, 0)
}

/// As [`stream`], the audio timestamps `shift` ticks from the video's.
fn stream_shifted(n: u64, dts0: u64, shift: i64) -> (Vec<u8>, Vec<Frame>) {
    let mut mux = TsMuxer::new(true);
    let (mut ts, mut frames) = (Vec::new(), Vec::new());
    for i in 0..n {
        write_av(&mut mux, i, dts0, shift, &mut ts, &mut frames);
    }
    (ts, frames)
}

/// Video frame `i` of [`stream_shifted`] and the two audio frames before it, written to `ts`
/// and appended to `frames`.
fn write_av(
    mux: &mut TsMuxer,
    i: u64,
    dts0: u64,
    shift: i64,
    ts: &mut Vec<u8>,
    frames: &mut Vec<Frame>,
) {
    if i.is_multiple_of(10) {
        mux.write_tables(ts).unwrap();
    }
    let dts = dts0 + i * FRAME;
    let idr = i.is_multiple_of(25);
    let size = if idr { 5000 } else { 300 + i as usize * 7 };
    let v = frame(Track::Video, dts, dts + 2 * FRAME, idr, au(idr, idr.then_some(1), size));
    for k in 0..2 {
        let at = (dts + k * 1920).saturating_add_signed(shift);
        let a = frame(Track::Audio, at, at, false, adts(100 + k as usize));
        mux.write_frame(&a, ts).unwrap();
        frames.push(a);
    }
    mux.write_frame(&v, ts).unwrap();
    frames.push(v);
}

fn demux_in_chunks(ts: &[u8], sizes: &[usize], d: &mut TsDemuxer) -> Vec<MediaEvent> {
    let mut out = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= ts.len() {
            break;
        }
        let end = (at + size).min(ts.len());
        d.push(&ts[at..end], &mut out).unwrap();
        at = end;
    }
    d.finish(&mut out);
    out
}

fn frames(events: &[MediaEvent]) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) => Some(f),
            MediaEvent::Tracks(_) => None,
        })
        .collect()
}

fn demuxer() -> TsDemuxer {
    TsDemuxer::new(MediaLimits::default(), None)
}

#[test]
fn frames_come_back_exactly_in_any_chunking() {
    let (ts, sent) = stream(60, 900_000);
    for sizes in [&[1316][..], &[188], &[1], &[7, 187, 189, 1000], &[65_536]] {
        let mut d = demuxer();
        let events = demux_in_chunks(&ts, sizes, &mut d);
        let MediaEvent::Tracks(tracks) = &events[0] else { panic!("{:?}", events[0]) };
        assert_eq!(tracks.video.as_ref().unwrap().parameter_sets[..], params(1)[..]);
        assert_eq!(tracks.audio, Some(CFG));
        assert_eq!(events.iter().filter(|e| matches!(e, MediaEvent::Tracks(_))).count(), 1);
        let got = frames(&events);
        assert!(got[0].idr, "the first IDR comes first");
        assert_eq!(got.len(), sent.len(), "chunks {sizes:?}");
        for track in [Track::Video, Track::Audio] {
            let got = got.iter().filter(|f| f.track == track);
            let expected = sent.iter().filter(|f| f.track == track);
            for (g, e) in got.zip(expected) {
                assert_eq!((g.idr, g.discontinuity), (e.idr, false));
                assert_eq!((g.dts - WRAP, g.pts - WRAP), (e.dts, e.pts), "{track:?}");
                assert_eq!(g.data, e.data);
            }
        }
        let stats = d.stats();
        assert_eq!(stats.packets, ts.len() as u64 / 188);
        assert_eq!(stats.cc_errors + stats.resyncs + stats.dropped_pes, 0, "{stats:?}");
    }
}

#[test]
fn idr_without_parameter_sets_gets_them_and_auds_are_not_doubled() {
    let mut mux = TsMuxer::new(false);
    let mut ts = Vec::new();
    mux.write_tables(&mut ts).unwrap();
    // An IDR with SPS/PPS but no AUD, then one without SPS/PPS, then a non-IDR with two AUDs.
    let first = au(true, Some(3), 50)[AUD.len()..].to_vec();
    let mut third = AUD.to_vec();
    third.extend(au(false, None, 10));
    for (i, data) in [first, au(true, None, 20), third].into_iter().enumerate() {
        let dts = i as u64 * FRAME;
        mux.write_frame(&frame(Track::Video, dts, dts, i < 2, data), &mut ts).unwrap();
    }
    let events = demux_in_chunks(&ts, &[1316], &mut demuxer());
    let got = frames(&events);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].data[..], au(true, Some(3), 50)[..]);
    let mut want = AUD.to_vec();
    want.extend(params(3));
    want.extend(&au(true, None, 20)[AUD.len()..]);
    assert_eq!(got[1].data[..], want[..]);
    assert!(got[1].idr && !got[2].idr);
    assert_eq!(got[2].data[..], au(false, None, 10)[..]);
}

#[test]
fn frames_wait_for_an_idr_with_parameter_sets_and_a_new_sps_is_announced() {
    let mut mux = TsMuxer::new(false);
    let mut ts = Vec::new();
    mux.write_tables(&mut ts).unwrap();
    let aus = [
        au(false, None, 10),
        au(true, None, 10),
        au(true, Some(1), 10),
        au(false, None, 10),
        au(true, Some(2), 10),
    ];
    for (i, data) in aus.into_iter().enumerate() {
        let dts = i as u64 * FRAME;
        mux.write_frame(&frame(Track::Video, dts, dts, false, data), &mut ts).unwrap();
    }
    let events = demux_in_chunks(&ts, &[188], &mut demuxer());
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            MediaEvent::Tracks(t) => {
                format!("tracks {}", t.video.as_ref().unwrap().parameter_sets[8])
            }
            MediaEvent::Frame(f) => format!("frame {}", (f.dts - WRAP) / FRAME),
        })
        .collect();
    assert_eq!(kinds, ["tracks 1", "frame 2", "frame 3", "tracks 2", "frame 4"]);
}

#[test]
fn a_pes_with_several_adts_frames_is_split_with_timestamps_per_1024_samples() {
    let mut mux = TsMuxer::new(true);
    let mut ts = Vec::new();
    mux.write_tables(&mut ts).unwrap();
    mux.write_frame(&frame(Track::Video, 0, 0, true, au(true, Some(1), 10)), &mut ts).unwrap();
    let three: Vec<u8> = [adts(10), adts(20), adts(30)].concat();
    mux.write_frame(&frame(Track::Audio, 9000, 9000, false, three), &mut ts).unwrap();
    let events = demux_in_chunks(&ts, &[1316], &mut demuxer());
    let audio: Vec<_> = frames(&events).into_iter().filter(|f| f.track == Track::Audio).collect();
    let times: Vec<u64> = audio.iter().map(|f| f.pts - WRAP).collect();
    // 1024 samples at 48 kHz = 1920 ticks.
    assert_eq!(times, [9000, 10_920, 12_840]);
    assert_eq!(audio[2].data[..], adts(30)[..]);
}

/// Offsets of the TS packets of `pid` in `ts`.
fn packets_of(ts: &[u8], pid: u16) -> Vec<usize> {
    (0..ts.len())
        .step_by(188)
        .filter(|&at| u16::from(ts[at + 1] & 0x1F) << 8 | u16::from(ts[at + 2]) == pid)
        .collect()
}

#[test]
fn a_lost_packet_drops_only_its_frame_and_is_counted() {
    let (mut ts, sent) = stream(30, 0);
    // The 2nd packet of the 5th video PES (a 300+ byte P frame, 2-3 packets).
    let video = packets_of(&ts, crate::ts::VIDEO_PID);
    let starts: Vec<usize> = video.iter().copied().filter(|&at| ts[at + 1] & 0x40 != 0).collect();
    let lost = starts[4] + 188;
    assert!(video.contains(&lost) && ts[lost + 1] & 0x40 == 0);
    ts.drain(lost..lost + 188);
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    let got = frames(&events);
    assert_eq!(got.len(), sent.len() - 1);
    assert!(got.iter().all(|f| f.track == Track::Audio || f.dts - WRAP != 4 * FRAME));
    let stats = d.stats();
    assert_eq!((stats.cc_errors, stats.dropped_pes), (1, 1), "{stats:?}");
}

#[test]
fn garbage_between_packets_is_skipped_by_resyncing() {
    let (ts, sent) = stream(30, 0);
    let mut dirty = Vec::new();
    for (i, packet) in ts.chunks(188).enumerate() {
        dirty.extend_from_slice(packet);
        if i % 50 == 49 {
            dirty.extend_from_slice(&[0x47, 1, 2, 0x47, 0x47, 9]);
        }
    }
    let mut d = demuxer();
    let events = demux_in_chunks(&dirty, &[1000], &mut d);
    let stats = d.stats();
    assert_eq!(stats.resyncs, ts.len() as u64 / 188 / 50);
    // Frames whose packets straddle garbage survive: no packet was lost.
    assert_eq!(frames(&events).len(), sent.len());
    assert_eq!(stats.cc_errors, 0);
}

#[test]
fn timestamps_unwrap_across_the_33_bit_wrap() {
    let (ts, sent) = stream(50, WRAP - 20 * FRAME);
    let events = demux_in_chunks(&ts, &[1316], &mut demuxer());
    let video: Vec<&Frame> =
        frames(&events).into_iter().filter(|f| f.track == Track::Video).collect();
    assert_eq!(video.len(), 50);
    for (i, f) in video.iter().enumerate() {
        assert_eq!(f.dts, sent[2].dts + WRAP + i as u64 * FRAME);
        assert_eq!(f.dts % WRAP, (WRAP - 20 * FRAME + i as u64 * FRAME) % WRAP);
    }
    assert!(video.windows(2).all(|w| w[1].dts == w[0].dts + FRAME));
    assert!(video.iter().all(|f| !f.discontinuity));
}

#[test]
fn a_pcr_jump_or_discontinuity_indicator_marks_the_next_frames() {
    let (mut ts, mut sent) = stream(10, 0);
    let (second, second_sent) = stream(10, 1000 * 90_000);
    sent.extend(second_sent);
    ts.extend_from_slice(&second);
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    // One frame flagged: the first video frame of the PES packets started after the packet
    // that showed the jump, the new clock's IDR; nothing of the old clock after it. The new
    // clock's first two audio frames, sent before that PCR, are 1000 s from the video of
    // their epoch: dropped and counted.
    let got = frames(&events);
    let marked: Vec<usize> = (0..got.len()).filter(|&i| got[i].discontinuity).collect();
    assert_eq!(marked.len(), 1, "{marked:?}");
    let secs = |f: &Frame| (f.dts - WRAP) / 90_000;
    assert_eq!(secs(got[marked[0]]), 1000);
    assert!(got[marked[0]].track == Track::Video && got[marked[0]].idr);
    assert!(got[marked[0]..].iter().all(|f| secs(f) >= 1000));
    // Also lost: the old clock's last video frame, cut short by the new stream's continuity
    // counters.
    let stats = d.stats();
    assert_eq!((stats.distant_audio_frames, stats.cc_errors, stats.dropped_pes), (2, 2, 1));
    assert_eq!(got.len(), sent.len() - 3, "{stats:?}");

    // The indicator alone (same clock): set it on the first packet of the 5th video PES.
    let (mut ts, _) = stream(10, 0);
    let start = packets_of(&ts, crate::ts::VIDEO_PID)
        .into_iter()
        .filter(|&at| ts[at + 1] & 0x40 != 0)
        .nth(4)
        .unwrap();
    assert_eq!(ts[start + 3] & 0x20, 0x20, "video PES starts carry an adaptation field");
    ts[start + 5] |= 0x80;
    let events = demux_in_chunks(&ts, &[1316], &mut demuxer());
    // The first video frame of a PES started at the indicator: frame 4. The audio of frame
    // 5, complete before it (audio PES end with their length, video ones only when the next
    // starts), waits for it and follows it: nothing is lost.
    let got = frames(&events);
    let marked: Vec<(Track, u64)> =
        got.iter().filter(|f| f.discontinuity).map(|f| (f.track, (f.dts - WRAP) / FRAME)).collect();
    assert_eq!(marked, [(Track::Video, 4)]);
    assert_eq!(got.len(), 30);
}

#[test]
fn an_oversize_pes_is_dropped_and_counted() {
    let mut mux = TsMuxer::new(false);
    let mut ts = Vec::new();
    mux.write_tables(&mut ts).unwrap();
    for (i, size) in [100, 30_000, 100, 100].into_iter().enumerate() {
        let dts = i as u64 * FRAME;
        mux.write_frame(&frame(Track::Video, dts, dts, true, au(true, Some(1), size)), &mut ts)
            .unwrap();
    }
    let limits = MediaLimits { max_segment_bytes: 20_000, ..MediaLimits::default() };
    let mut d = TsDemuxer::new(limits, None);
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    assert_eq!(frames(&events).len(), 3);
    assert_eq!(d.stats().oversize_pes, 1);
}

/// (program number, PMT PID, [(stream type, PID)]).
pub(crate) type Program<'a> = (u16, u16, &'a [(StreamType, u16)]);

/// PAT and PMTs for `programs`: (program number, PMT PID, [(stream type, PID)]); the PCR on
/// the first stream.
pub(crate) fn tables(programs: &[Program]) -> Vec<u8> {
    let pid = |n: u16| Pid::new(n).unwrap();
    let header = |n: u16| TsHeader {
        transport_error_indicator: false,
        transport_priority: false,
        pid: pid(n),
        transport_scrambling_control: TransportScramblingControl::NotScrambled,
        continuity_counter: ContinuityCounter::new(),
    };
    let mut out = Vec::new();
    let mut w = TsPacketWriter::new(&mut out);
    let table = programs
        .iter()
        .map(|&(n, pmt, _)| ProgramAssociation { program_num: n, program_map_pid: pid(pmt) })
        .collect();
    let pat = Pat { transport_stream_id: 1, version_number: VersionNumber::new(), table };
    w.write_ts_packet(&TsPacket {
        header: header(0),
        adaptation_field: None,
        payload: Some(TsPayload::Pat(pat)),
    })
    .unwrap();
    for &(n, pmt, streams) in programs {
        let es_info = streams
            .iter()
            .map(|&(stream_type, es)| EsInfo {
                stream_type,
                elementary_pid: pid(es),
                descriptors: vec![],
            })
            .collect();
        let pmt_payload = Pmt {
            program_num: n,
            pcr_pid: Some(pid(streams[0].1)),
            version_number: VersionNumber::new(),
            program_info: vec![],
            es_info,
        };
        w.write_ts_packet(&TsPacket {
            header: header(pmt),
            adaptation_field: None,
            payload: Some(TsPayload::Pmt(pmt_payload)),
        })
        .unwrap();
    }
    out
}

/// Frames from our muxer (H.264 on 0x100, AAC on 0x101) behind the given tables.
pub(crate) fn with_tables(tables: Vec<u8>) -> Vec<u8> {
    let (ts, _) = stream(5, 0);
    let mut out = tables;
    // Our muxer's own PAT/PMT packets are left out.
    for p in ts.chunks(188).filter(|p| p[1] & 0x1F != 0x10 && !(p[1] & 0x1F == 0 && p[2] == 0)) {
        out.extend_from_slice(p);
    }
    out
}

fn push_all(d: &mut TsDemuxer, ts: &[u8]) -> Result<Vec<MediaEvent>, DemuxError> {
    let mut out = Vec::new();
    for chunk in ts.chunks(1316) {
        d.push(chunk, &mut out)?;
    }
    d.finish(&mut out);
    Ok(out)
}

#[test]
fn h265_is_refused_and_other_audio_dropped() {
    let h265 = with_tables(tables(&[(
        1,
        0x1000,
        &[(StreamType::H265, 0x100), (StreamType::AdtsAac, 0x101)],
    )]));
    let err = push_all(&mut demuxer(), &h265).unwrap_err();
    assert_eq!(err, DemuxError::H265Refused { program: 1 });
    assert!(err.to_string().contains("H.265"), "{err}");

    let mp2 = with_tables(tables(&[(
        1,
        0x1000,
        &[(StreamType::H264, 0x100), (StreamType::Mpeg1Audio, 0x101)],
    )]));
    let events = push_all(&mut demuxer(), &mp2).unwrap();
    assert!(matches!(&events[0], MediaEvent::Tracks(t) if t.audio.is_none()));
    let got = frames(&events);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|f| f.track == Track::Video));
}

#[test]
fn the_first_program_with_h264_or_the_one_asked_for_is_used() {
    let programs: &[Program] = &[
        (1, 0x1000, &[(StreamType::Mpeg1Audio, 0x200)]),
        (2, 0x1001, &[(StreamType::H264, 0x100), (StreamType::AdtsAac, 0x101)]),
    ];
    let ts = with_tables(tables(programs));
    let events = push_all(&mut demuxer(), &ts).unwrap();
    assert_eq!(frames(&events).len(), 5 * 3);
    let events = push_all(&mut TsDemuxer::new(MediaLimits::default(), Some(2)), &ts).unwrap();
    assert_eq!(frames(&events).len(), 5 * 3);
    let err = push_all(&mut TsDemuxer::new(MediaLimits::default(), Some(1)), &ts).unwrap_err();
    assert!(matches!(err, DemuxError::NoH264 { program: 1, .. }), "{err}");
    let err = push_all(&mut TsDemuxer::new(MediaLimits::default(), Some(3)), &ts).unwrap_err();
    assert_eq!(err, DemuxError::ProgramNotFound { program: 3, available: vec![1, 2] });
    // No program with H.264 at all.
    let ts = with_tables(tables(&programs[..1]));
    assert!(matches!(push_all(&mut demuxer(), &ts), Err(DemuxError::NoH264 { program: 1, .. })));
}

/// A PSI section with the long syntax (§2.4.4.4): `table_id`, `id` (transport_stream_id or
/// program_number), version 0, current, section 0 of 0, `body`, CRC_32.
fn section(table_id: u8, id: u16, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut s = vec![table_id, 0xB0 | (len >> 8) as u8, len as u8];
    s.extend_from_slice(&[(id >> 8) as u8, id as u8, 0xC1, 0, 0]);
    s.extend_from_slice(body);
    let crc = sum32(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// A PAT section listing (program_number, PMT PID).
fn pat_section(programs: &[(u16, u16)]) -> Vec<u8> {
    let body: Vec<u8> = programs
        .iter()
        .flat_map(|&(n, pid)| [(n >> 8) as u8, n as u8, 0xE0 | (pid >> 8) as u8, pid as u8])
        .collect();
    section(0x00, 1, &body)
}

/// A descriptor of `len` bytes of payload (a private tag, as broadcast PMTs carry many).
fn descriptor(len: usize) -> Vec<u8> {
    let mut d = vec![0xF0, len as u8];
    d.extend((0..len).map(|i| i as u8));
    d
}

/// A PMT section of `program`: PCR on the first stream, `info` as program_info, and
/// (stream_type, PID, ES_info) per elementary stream.
fn pmt_section(program: u16, info: &[u8], streams: &[(u8, u16, Vec<u8>)]) -> Vec<u8> {
    let pcr = streams.first().map_or(0x1FFF, |s| s.1);
    let mut body = vec![0xE0 | (pcr >> 8) as u8, pcr as u8];
    body.extend_from_slice(&[0xF0 | (info.len() >> 8) as u8, info.len() as u8]);
    body.extend_from_slice(info);
    for (stream_type, pid, es_info) in streams {
        body.extend_from_slice(&[*stream_type, 0xE0 | (pid >> 8) as u8, *pid as u8]);
        body.extend_from_slice(&[0xF0 | (es_info.len() >> 8) as u8, es_info.len() as u8]);
        body.extend_from_slice(es_info);
    }
    section(0x02, program, &body)
}

/// `sections` packed back to back on `pid` as a muxer does (§2.4.4.1): `lead` bytes first
/// (the end of a section sent before), a packet in which a section starts has
/// payload_unit_start_indicator and a pointer_field to the first one starting in it, the last
/// packet is stuffed with 0xFF. `cc` is the PID's continuity counter.
fn psi_packets(pid: u16, lead: &[u8], sections: &[Vec<u8>], cc: &mut u8) -> Vec<u8> {
    let mut data = lead.to_vec();
    let mut starts = Vec::new();
    for s in sections {
        starts.push(data.len());
        data.extend_from_slice(s);
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let first = starts.iter().copied().find(|&s| s >= pos && s < pos + 183);
        let mut packet = vec![0x47, (pid >> 8) as u8, pid as u8, 0x10 | *cc];
        *cc = (*cc + 1) & 0x0F;
        let cap = match first {
            Some(start) => {
                packet[1] |= 0x40;
                packet.push((start - pos) as u8);
                183
            }
            // A section starting at the last byte would start in a packet without the flag.
            None if starts.contains(&(pos + 183)) => 183,
            None => 184,
        };
        let end = (pos + cap).min(data.len());
        packet.extend_from_slice(&data[pos..end]);
        packet.resize(188, 0xFF);
        out.extend_from_slice(&packet);
        pos = end;
    }
    out
}

/// A PAT of program 1 on PMT PID 0x1000 and `pmt` on that PID.
fn pat_and(pmt: &[Vec<u8>]) -> Vec<u8> {
    let mut ts = psi_packets(0, &[], &[pat_section(&[(1, 0x1000)])], &mut 0);
    ts.extend(psi_packets(0x1000, &[], pmt, &mut 0));
    ts
}

/// H.264 on 0x100 and AAC on 0x101, as [`with_tables`]' frames use.
fn h264_aac() -> Vec<(u8, u16, Vec<u8>)> {
    vec![(0x1B, 0x100, vec![]), (0x0F, 0x101, vec![])]
}

/// The frames of [`with_tables`] all came out, audio included.
fn assert_recorded(events: &[MediaEvent]) {
    assert!(matches!(&events[0], MediaEvent::Tracks(t) if t.audio == Some(CFG)), "{events:?}");
    assert_eq!(frames(events).len(), 5 * 3);
}

#[test]
fn unknown_stream_types_beside_h264_and_aac_are_left_alone() {
    for unknown in [0xFF, 0x1C, 0x2D, 0x86] {
        let mut streams = vec![(unknown, 0x200, descriptor(4)), (0x1C, 0x201, vec![])];
        streams.extend(h264_aac());
        streams.push((0xFF, 0x202, vec![]));
        let ts = with_tables(pat_and(&[pmt_section(1, &[], &streams)]));
        let mut d = demuxer();
        assert_recorded(&push_all(&mut d, &ts).unwrap());
        assert_eq!(d.stats().invalid_packets, 0);
    }
    // Unknown types only: no H.264, and they are named.
    let ts = with_tables(pat_and(&[pmt_section(1, &[], &[(0xFF, 0x100, vec![])])]));
    let err = push_all(&mut demuxer(), &ts).unwrap_err();
    assert_eq!(err, DemuxError::NoH264 { program: 1, stream_types: vec![0xFF] });
}

#[test]
fn a_pmt_spanning_packets_is_reassembled() {
    // 40 elementary streams with descriptors (~900 bytes, 5 packets), H.264 and AAC last.
    let mut streams: Vec<_> = (0..38).map(|i| (0x06, 0x300 + i, descriptor(14))).collect();
    streams.extend(h264_aac());
    let pmt = pmt_section(1, &descriptor(60), &streams);
    assert!((800..=1024).contains(&pmt.len()), "{}", pmt.len());
    let ts = with_tables(pat_and(&[pmt]));
    let mut d = demuxer();
    assert_recorded(&push_all(&mut d, &ts).unwrap());
    assert_eq!(d.stats().invalid_packets, 0);

    // Two programs' PMTs on one PID, back to back: the second starts in the packet the first
    // ends in, one byte before its end (its header straddles two packets), after a radio
    // program whose PMT fills 182 bytes.
    let radio = pmt_section(1, &descriptor(159), &[(0x03, 0x200, vec![])]);
    assert_eq!(radio.len(), 182);
    let tv = pmt_section(2, &[], &h264_aac());
    let mut tables = psi_packets(0, &[], &[pat_section(&[(1, 0x1000), (2, 0x1000)])], &mut 0);
    tables.extend(psi_packets(0x1000, &[], &[radio, tv], &mut 0));
    assert_eq!(tables[188 + 4], 0, "pointer_field");
    assert_eq!(tables[2 * 188 + 1] & 0x40, 0, "the second packet continues the TV PMT");
    let ts = with_tables(tables);
    for program in [None, Some(2)] {
        let mut d = TsDemuxer::new(MediaLimits::default(), program);
        assert_recorded(&push_all(&mut d, &ts).unwrap());
    }
}

#[test]
fn a_non_zero_pointer_field_is_followed() {
    // The PAT after the end of a section whose start was never seen.
    let mut ts = psi_packets(0, &[0x12; 37], &[pat_section(&[(1, 0x1000)])], &mut 0);
    assert_eq!((ts[1] & 0x40, ts[4]), (0x40, 37));
    // The PMT repeated back to back, its copies starting mid-packet.
    let pmt = pmt_section(1, &descriptor(100), &h264_aac());
    let packed = psi_packets(0x1000, &[], &[pmt.clone(), pmt.clone(), pmt], &mut 0);
    assert!(packed.chunks(188).skip(1).any(|p| p[1] & 0x40 != 0 && p[4] > 0));
    ts.extend(packed);
    let mut d = demuxer();
    assert_recorded(&push_all(&mut d, &with_tables(ts)).unwrap());
    assert_eq!(d.stats().invalid_packets, 0);
}

#[test]
fn corrupt_sections_are_dropped_and_counted_and_the_next_copy_is_used() {
    let good = pmt_section(1, &descriptor(200), &h264_aac());
    let mut bad_crc = good.clone();
    bad_crc[20] ^= 0x01;
    // Alone, a PMT with a bad CRC records nothing and is no error.
    let mut d = demuxer();
    assert!(push_all(&mut d, &with_tables(pat_and(&[bad_crc.clone()]))).unwrap().is_empty());
    assert_eq!(d.stats().invalid_packets, 1);
    // Each damaged PMT (2 packets, on PID 0x1000 after the PAT's packet), then a good copy.
    let damaged = |damage: &dyn Fn(&mut Vec<u8>), mut cc: u8| {
        let mut ts = pat_and(std::slice::from_ref(&good));
        damage(&mut ts);
        ts.extend(psi_packets(0x1000, &[], std::slice::from_ref(&good), &mut cc));
        ts
    };
    let cases: [(&str, Vec<u8>); 6] = [
        ("crc", pat_and(&[bad_crc, good.clone()])),
        // The second packet lost: the next copy starts after a continuity gap.
        ("cut", damaged(&|ts| drop(ts.drain(2 * 188..3 * 188)), 2)),
        // The next copy starts (no continuity gap) before the first one is complete.
        ("truncated", damaged(&|ts| drop(ts.drain(2 * 188..3 * 188)), 1)),
        ("pointer", damaged(&|ts| ts[188 + 4] = 184, 2)),
        ("too long", damaged(&|ts| ts[188 + 6] |= 0x0F, 2)),
        ("short", damaged(&|ts| ts[188 + 7] = 4, 2)),
    ];
    for (name, tables) in cases {
        let mut d = demuxer();
        assert_recorded(&push_all(&mut d, &with_tables(tables)).unwrap());
        assert_eq!(d.stats().invalid_packets, 1, "{name}");
    }
}

/// A transport stream ffmpeg writes from 2 s of test video (and a sine for `-map 1:a`)
/// with `args` for the outputs (codecs, maps) before `-f mpegts`.
fn ffmpeg_ts(name: &str, args: &[&str]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("mpegts-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.ts");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "25"])
        .args(["-keyint_min", "25", "-sc_threshold", "0", "-pix_fmt", "yuv420p"])
        .args(args)
        .args(["-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    let ts = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    ts
}

#[test]
fn an_ffmpeg_pmt_over_two_packets_demuxes() {
    // 20 audio tracks with a language each: ffmpeg's PMT is 241 bytes, two packets.
    let mut args = vec!["-map", "0:v"];
    args.extend(std::iter::repeat_n(["-map", "1:a"], 20).flatten());
    args.extend(["-c:a", "aac", "-b:a", "32k", "-metadata:s:a", "language=eng"]);
    let ts = ffmpeg_ts("pmt", &args);
    let pmt = packets_of(&ts, 0x1000);
    assert!(ts[pmt[0] + 1] & 0x40 != 0 && ts[pmt[1] + 1] & 0x40 == 0, "PMT over two packets");
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    let got = frames(&events);
    assert_eq!(got.iter().filter(|f| f.track == Track::Video).count(), 50);
    assert!(got.iter().filter(|f| f.track == Track::Audio).count() >= 90);
    assert_eq!(d.stats().invalid_packets, 0);
}

#[test]
fn an_ffmpeg_transport_stream_demuxes() {
    let ts = ffmpeg_ts("clip", &["-c:a", "aac"]);
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316, 100, 3000], &mut d);
    // ffmpeg sends its first audio PES after the first video one: audio may join later.
    assert!(matches!(&events[0], MediaEvent::Tracks(t) if t.video.is_some()));
    assert!(events.iter().filter(|e| matches!(e, MediaEvent::Tracks(_))).count() <= 2);
    let audio_config = AudioConfig { profile: 1, sampling_index: 3, channels: 1 };
    assert_eq!(d.tracks().unwrap().audio, Some(audio_config));
    let got = frames(&events);
    let video: Vec<_> = got.iter().filter(|f| f.track == Track::Video).collect();
    let audio: Vec<_> = got.iter().filter(|f| f.track == Track::Audio).collect();
    assert_eq!(video.len(), 50);
    assert_eq!(video.iter().filter(|f| f.idr).count(), 2);
    assert!(video.iter().all(|f| f.data.starts_with(&AUD)));
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
    assert!(video.iter().any(|f| f.pts > f.dts), "B-frames keep their composition offset");
    // 2 s of 48 kHz in 1024-sample frames (the encoder's priming frame included).
    assert!((90..=96).contains(&audio.len()), "{}", audio.len());
    assert!(audio.windows(2).all(|w| w[1].dts == w[0].dts + 1920));
    assert_eq!(d.stats().cc_errors, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tables_in_any_layout_are_parsed(
        lead in 0usize..=183,
        info in 0usize..=255,
        extra in 0usize..=25,
        chunk in 1usize..1400,
    ) {
        let mut streams: Vec<_> = (0..extra as u16).map(|i| (0xFF, 0x300 + i, descriptor(20))).collect();
        streams.extend(h264_aac());
        let pmt = pmt_section(1, &descriptor(info), &streams);
        let mut tables = psi_packets(0, &vec![0; lead], &[pat_section(&[(1, 0x1000)])], &mut 0);
        tables.extend(psi_packets(0x1000, &vec![0; lead], &[pmt.clone(), pmt], &mut 0));
        let ts = with_tables(tables);
        let mut d = demuxer();
        let events = demux_in_chunks(&ts, &[chunk], &mut d);
        prop_assert_eq!(frames(&events).len(), 5 * 3);
        prop_assert_eq!(d.stats().invalid_packets, 0);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..40),
    ) {
        let mut d = demuxer();
        let mut out = Vec::new();
        for chunk in &chunks {
            let _ = d.push(chunk, &mut out);
            prop_assert!(d.buf.len() < 2 * PACKET_SIZE);
        }
        d.finish(&mut out);
    }

    #[test]
    fn a_corrupted_stream_never_panics(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..60),
        chunk in 1usize..2000,
    ) {
        let (mut ts, _) = stream(30, 0);
        let len = ts.len();
        for (at, byte) in flips {
            ts[at % len] = byte;
        }
        let mut d = demuxer();
        let mut out = Vec::new();
        for c in ts.chunks(chunk) {
            if d.push(c, &mut out).is_err() {
                break;
            }
        }
        d.finish(&mut out);
        for f in frames(&out) {
            prop_assert!(f.track == Track::Audio || f.data.starts_with(&AUD));
        }
    }
}
