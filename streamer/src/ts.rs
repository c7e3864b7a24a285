//! MPEG-TS muxing (ISO/IEC 13818-1). PAT and PMT are written with the `mpeg2ts` crate's
//! packet writer; frames, the hot path, are packetized here straight into the segment buffer
//! (TS header, adaptation field with PCR and stuffing, PES header, payload: no intermediate
//! packet structs or 184-byte copies). A test checks that packetizer byte for byte against
//! `mpeg2ts`' writer.
//!
//! Layout: PAT on PID 0, PMT on PID 0x1000 (program 1), H.264 on PID 0x100 (stream type
//! 0x1B, also the PCR PID), ADTS AAC on PID 0x101 (stream type 0x0F). Each segment starts with
//! PAT + PMT ([`TsMuxer::write_tables`]); continuity counters run on across segments, and a
//! changed track set ([`TsMuxer::set_has_audio`]) bumps the PMT `version_number`
//! (§2.4.4.8) so demuxers reading segments back to back pick up the new program.

use crate::media::{Frame, Track};
use mpeg2ts::es::StreamType;
use mpeg2ts::ts::payload::{Pat, Pmt};
use mpeg2ts::ts::{
    ContinuityCounter, EsInfo, Pid, ProgramAssociation, TsHeader, TsPacket, TsPacketWriter,
    TsPayload, VersionNumber, WriteTsPacket,
};

/// PID of the video elementary stream (and PCR).
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PCR runs this many 90 kHz ticks (0.7 s) behind the video DTS, leaving decoders a buffer.
pub const PCR_DELAY: u64 = 63_000;
/// Timestamps in TS are 33-bit (ISO/IEC 13818-1 §2.4.3.7); they wrap every ~26.5 h.
const TS_WRAP: u64 = 1 << 33;
const PAYLOAD: usize = TsPacket::SIZE - 4;

/// A muxing failure; only reachable through a bug (field out of range), never through input.
#[derive(Debug, thiserror::Error)]
#[error("MPEG-TS mux: {0}")]
pub struct TsError(#[from] mpeg2ts::Error);

/// Writes PAT/PMT and PES packets for one program, tracking continuity counters.
#[derive(Debug)]
pub struct TsMuxer {
    has_audio: bool,
    pmt_version: VersionNumber,
    pat_cc: ContinuityCounter,
    pmt_cc: ContinuityCounter,
    video_cc: ContinuityCounter,
    audio_cc: ContinuityCounter,
}

fn pid(n: u16) -> Pid {
    Pid::new(n).expect("constant PIDs are below 0x1FFF")
}

fn header(pid_n: u16, cc: &mut ContinuityCounter) -> TsHeader {
    let header = TsHeader {
        transport_error_indicator: false,
        transport_priority: false,
        pid: pid(pid_n),
        transport_scrambling_control: mpeg2ts::ts::TransportScramblingControl::NotScrambled,
        continuity_counter: *cc,
    };
    cc.increment();
    header
}

/// First byte of every TS packet.
const SYNC_BYTE: u8 = 0x47;

/// A PES packet header (ISO/IEC 13818-1 §2.4.3.6): start code, `stream_id`,
/// `PES_packet_length` (0, "unbounded", for video), data alignment, and the PTS (and the DTS
/// when it differs): the first 14 or 19 bytes of the returned array.
fn pes_header(
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    frame: &Frame,
    video: bool,
) -> ([u8; 19], usize) {
    let header_data_len: u8 = if dts.is_some() { 10 } else { 5 };
    let after_length = 3 + usize::from(header_data_len) + frame.data.len();
    let length = if video { 0 } else { u16::try_from(after_length).unwrap_or(0) };
    let [length_hi, length_lo] = length.to_be_bytes();
    let mut pes = [0u8; 19];
    // Start code, stream_id, PES_packet_length, '10' marker with data_alignment_indicator,
    // PTS_DTS_flags, PES_header_data_length.
    let flags = if dts.is_some() { 0xC0 } else { 0x80 };
    pes[..9].copy_from_slice(&[
        0,
        0,
        1,
        stream_id,
        length_hi,
        length_lo,
        0x84,
        flags,
        header_data_len,
    ]);
    pes[9..14].copy_from_slice(&timestamp_field(if dts.is_some() { 0b0011 } else { 0b0010 }, pts));
    if let Some(dts) = dts {
        pes[14..19].copy_from_slice(&timestamp_field(0b0001, dts));
    }
    (pes, 9 + usize::from(header_data_len))
}

/// A 33-bit PTS/DTS with its 4-bit prefix and marker bits (§2.4.3.7), 5 bytes.
fn timestamp_field(prefix: u8, ts: u64) -> [u8; 5] {
    [
        prefix << 4 | ((ts >> 30) as u8 & 0x07) << 1 | 1,
        (ts >> 22) as u8,
        ((ts >> 15) as u8 & 0x7F) << 1 | 1,
        (ts >> 7) as u8,
        (ts as u8 & 0x7F) << 1 | 1,
    ]
}

impl TsMuxer {
    /// A muxer for a program with video and, if `has_audio`, audio.
    pub fn new(has_audio: bool) -> Self {
        Self {
            has_audio,
            pmt_version: VersionNumber::new(),
            pat_cc: ContinuityCounter::new(),
            pmt_cc: ContinuityCounter::new(),
            video_cc: ContinuityCounter::new(),
            audio_cc: ContinuityCounter::new(),
        }
    }

    /// Whether the PMT declares an audio stream.
    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    /// Declares whether the program has audio from the next [`TsMuxer::write_tables`] on;
    /// a change increments the PMT version (modulo 32).
    pub fn set_has_audio(&mut self, has_audio: bool) {
        if has_audio != self.has_audio {
            self.has_audio = has_audio;
            self.pmt_version.increment();
        }
    }

    /// Bytes written by [`TsMuxer::write_tables`]: one PAT and one PMT packet.
    pub const TABLES_LEN: usize = 2 * TsPacket::SIZE;

    /// Appends a PAT and a PMT packet ([`TsMuxer::TABLES_LEN`] bytes) to `out`.
    ///
    /// # Errors
    /// [`TsError`] only on an internal inconsistency.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) -> Result<(), TsError> {
        let mut w = TsPacketWriter::new(out);
        let pat = TsPacket {
            header: header(0, &mut self.pat_cc),
            adaptation_field: None,
            payload: Some(TsPayload::Pat(Pat {
                transport_stream_id: 1,
                version_number: VersionNumber::new(),
                table: vec![ProgramAssociation { program_num: 1, program_map_pid: pid(PMT_PID) }],
            })),
        };
        w.write_ts_packet(&pat)?;
        let mut es_info = vec![EsInfo {
            stream_type: StreamType::H264,
            elementary_pid: pid(VIDEO_PID),
            descriptors: vec![],
        }];
        if self.has_audio {
            es_info.push(EsInfo {
                stream_type: StreamType::AdtsAac,
                elementary_pid: pid(AUDIO_PID),
                descriptors: vec![],
            });
        }
        let pmt = TsPacket {
            header: header(PMT_PID, &mut self.pmt_cc),
            adaptation_field: None,
            payload: Some(TsPayload::Pmt(Pmt {
                program_num: 1,
                pcr_pid: Some(pid(VIDEO_PID)),
                version_number: self.pmt_version,
                program_info: vec![],
                es_info,
            })),
        };
        w.write_ts_packet(&pmt)?;
        Ok(())
    }

    /// Appends one frame as a PES packet split over TS packets. Video frames carry a PCR (and
    /// the random-access flag on IDR). Audio frames are dropped when the PMT has no audio.
    ///
    /// # Errors
    /// [`TsError`] only on an internal inconsistency.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), TsError> {
        let (pid, stream_id, video) = match frame.track {
            Track::Video => (VIDEO_PID, 0xE0, true),
            Track::Audio if self.has_audio => (AUDIO_PID, 0xC0, false),
            Track::Audio => return Ok(()),
        };
        let pts = frame.pts % TS_WRAP;
        let dts = frame.dts % TS_WRAP;
        let (pes, pes_len) =
            pes_header(stream_id, pts, (video && pts != dts).then_some(dts), frame, video);
        let pes = &pes[..pes_len];
        let data = &frame.data[..];
        let cc = if video { &mut self.video_cc } else { &mut self.audio_cc };
        let mut first = true;
        let mut rest = data;
        out.reserve((pes.len() + data.len()) / PAYLOAD * TsPacket::SIZE + 2 * TsPacket::SIZE);
        while first || !rest.is_empty() {
            let start = out.len();
            // The PCR (video) rides in the first packet's adaptation field.
            let pcr = (first && video).then(|| frame.dts.saturating_sub(PCR_DELAY) % TS_WRAP);
            let head = if first { pes.len() } else { 0 };
            let fixed_adaptation = if pcr.is_some() { 8 } else { 0 };
            let room = PAYLOAD - fixed_adaptation - head;
            let take = rest.len().min(room);
            // Stuffing fills a short last packet through the adaptation field (§2.4.3.5).
            let stuffing = room - take;
            let adaptation = fixed_adaptation + stuffing;
            out.extend_from_slice(&[
                SYNC_BYTE,
                u8::from(first) << 6 | (pid >> 8) as u8 & 0x1F,
                pid as u8,
                if adaptation > 0 { 0x30 } else { 0x10 } | cc.as_u8(),
            ]);
            cc.increment();
            if adaptation > 0 {
                // adaptation_field_length counts the bytes after itself.
                out.push((adaptation - 1) as u8);
                if adaptation > 1 {
                    let random_access = if first && frame.idr { 0x40 } else { 0 };
                    out.push(random_access | if pcr.is_some() { 0x10 } else { 0 });
                }
                if let Some(base) = pcr {
                    // program_clock_reference_base (33 bits), 6 reserved bits, extension 0.
                    out.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base & 1) as u8) << 7 | 0x7E,
                        0,
                    ]);
                }
                out.resize(start + 4 + adaptation, 0xFF);
            }
            if first {
                out.extend_from_slice(pes);
            }
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
            debug_assert_eq!(out.len() - start, TsPacket::SIZE);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mpeg2ts::ts::{ReadTsPacket, TsPacketReader};

    fn frame(track: Track, len: usize, idr: bool) -> Frame {
        Frame {
            track,
            dts: 126_000,
            pts: 129_000,
            idr,
            discontinuity: false,
            data: Bytes::from(vec![0xAB; len]),
        }
    }

    #[test]
    fn packets_are_188_bytes_and_parse_back() {
        let mut m = TsMuxer::new(true);
        let mut out = Vec::new();
        m.write_tables(&mut out).unwrap();
        for len in [1, 150, 165, 166, 184, 1000, 50_000] {
            m.write_frame(&frame(Track::Video, len, true), &mut out).unwrap();
            m.write_frame(&frame(Track::Audio, len.min(6000), false), &mut out).unwrap();
        }
        assert_eq!(out.len() % 188, 0);
        let mut reader = TsPacketReader::new(&out[..]);
        let mut pes_starts = 0;
        let mut pcrs = 0;
        while let Some(p) = reader.read_ts_packet().unwrap() {
            if matches!(p.payload, Some(TsPayload::PesStart(_))) {
                pes_starts += 1;
            }
            if p.adaptation_field.and_then(|a| a.pcr).is_some() {
                pcrs += 1;
            }
        }
        assert_eq!(pes_starts, 14);
        assert_eq!(pcrs, 7);
    }

    #[test]
    fn a_new_track_set_bumps_the_pmt_version() {
        let pmt = |m: &mut TsMuxer| {
            let mut out = Vec::new();
            m.write_tables(&mut out).unwrap();
            assert_eq!(out.len(), TsMuxer::TABLES_LEN);
            let mut reader = TsPacketReader::new(&out[..]);
            reader.read_ts_packet().unwrap();
            match reader.read_ts_packet().unwrap().and_then(|p| p.payload) {
                Some(TsPayload::Pmt(pmt)) => (pmt.version_number.as_u8(), pmt.es_info.len()),
                other => panic!("{other:?}"),
            }
        };
        let mut m = TsMuxer::new(false);
        assert_eq!(pmt(&mut m), (0, 1));
        m.set_has_audio(false);
        assert_eq!(pmt(&mut m), (0, 1));
        m.set_has_audio(true);
        assert_eq!(pmt(&mut m), (1, 2));
    }

    /// The same frame as `mpeg2ts`' packet writer lays it out (the muxer's previous
    /// implementation): the reference the hand-written packetizer must match byte for byte.
    fn reference_frame(cc: &mut ContinuityCounter, frame: &Frame, out: &mut Vec<u8>) {
        let start = out.len();
        use mpeg2ts::es::StreamId;
        use mpeg2ts::pes::PesHeader;
        use mpeg2ts::time::{ClockReference, Timestamp};
        use mpeg2ts::ts::payload::{Bytes as TsBytes, Pes};
        use mpeg2ts::ts::AdaptationField;
        let video = frame.track == Track::Video;
        let (pid_n, stream_id) = if video { (VIDEO_PID, 0xE0) } else { (AUDIO_PID, 0xC0) };
        let (pts, dts) = (frame.pts % TS_WRAP, frame.dts % TS_WRAP);
        let pes_header = PesHeader {
            stream_id: StreamId::new(stream_id),
            priority: false,
            data_alignment_indicator: true,
            copyright: false,
            original_or_copy: false,
            pts: Some(Timestamp::new(pts).unwrap()),
            dts: (video && pts != dts).then(|| Timestamp::new(dts).unwrap()),
            escr: None,
        };
        let pes_header_len = 9 + if pes_header.dts.is_some() { 10 } else { 5 };
        let adaptation = video.then(|| AdaptationField {
            discontinuity_indicator: false,
            random_access_indicator: frame.idr,
            es_priority_indicator: false,
            pcr: ClockReference::new(frame.dts.saturating_sub(PCR_DELAY) % TS_WRAP * 300).ok(),
            opcr: None,
            splice_countdown: None,
            transport_private_data: Vec::new(),
            extension: None,
        });
        let adaptation_len = if video { 8 } else { 0 };
        let pes_packet_len = if video {
            0
        } else {
            u16::try_from(pes_header_len - 6 + frame.data.len()).unwrap_or(0)
        };
        let mut w = TsPacketWriter::new(&mut *out);
        let data = &frame.data[..];
        let first_len = data.len().min(PAYLOAD - adaptation_len - pes_header_len);
        w.write_ts_packet(&TsPacket {
            header: header(pid_n, cc),
            adaptation_field: adaptation,
            payload: Some(TsPayload::PesStart(Pes {
                header: pes_header,
                pes_packet_len,
                data: TsBytes::new(&data[..first_len]).unwrap(),
            })),
        })
        .unwrap();
        for chunk in data[first_len..].chunks(PAYLOAD) {
            w.write_ts_packet(&TsPacket {
                header: header(pid_n, cc),
                adaptation_field: None,
                payload: Some(TsPayload::PesContinuation(TsBytes::new(chunk).unwrap())),
            })
            .unwrap();
        }
        // `mpeg2ts` writes the PCR's 6 reserved bits as 0; §2.4.3.4 (like ffmpeg) sets
        // reserved bits to 1. The only difference allowed.
        if video {
            out[start + 10] |= 0x7E;
        }
    }

    #[test]
    fn packetizer_matches_mpeg2ts_byte_for_byte() {
        let mut m = TsMuxer::new(true);
        let (mut video_cc, mut audio_cc) = (ContinuityCounter::new(), ContinuityCounter::new());
        for len in (0..=400).chain([1000, 4096, 50_000, 65_000]) {
            for (track, idr, pts_offset) in [
                (Track::Video, true, 3000),
                (Track::Video, false, 0),
                (Track::Video, false, 9000),
                (Track::Audio, false, 0),
            ] {
                let mut f = frame(track, len, idr);
                f.dts = 126_000 + len as u64 * 1_234_567;
                f.pts = f.dts + pts_offset;
                let (mut ours, mut reference) = (Vec::new(), Vec::new());
                m.write_frame(&f, &mut ours).unwrap();
                let cc = if track == Track::Video { &mut video_cc } else { &mut audio_cc };
                reference_frame(cc, &f, &mut reference);
                assert_eq!(ours, reference, "{track:?} {len} bytes, idr {idr}, +{pts_offset}");
            }
        }
    }

    #[test]
    fn audio_is_dropped_without_audio_track() {
        let mut m = TsMuxer::new(false);
        let mut out = Vec::new();
        m.write_frame(&frame(Track::Audio, 100, false), &mut out).unwrap();
        assert!(out.is_empty());
    }
}
