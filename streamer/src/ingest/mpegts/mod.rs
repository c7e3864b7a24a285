//! MPEG-TS (ISO/IEC 13818-1) to [`MediaEvent`]s, for sources that deliver a transport
//! stream in arbitrary chunks: UDP datagrams (usually 7 × 188 bytes), SRT messages, files.
//!
//! [`TsDemuxer`] finds the packets (resyncing on the 0x47 sync byte), reads each packet's
//! 4-byte header and adaptation field flags itself (continuity counters, discontinuity
//! indicator, PCR) and copies PES continuation payloads straight from the packet. The
//! `mpeg2ts-reader` crate reads the content of PAT and PMT sections (§2.4.4.3, §2.4.4.8), their
//! CRC_32 (Annex A) and PES headers (§2.4.3.6), all from byte slices; module `section`
//! reassembles the sections from packets (pointer_field, sections spanning packets, several
//! in one packet). Its demultiplexer framework (`demultiplex::Demultiplex`, filters built per
//! PID through a context) is not used: PES assembly, continuity and discontinuity handling
//! are ours, and its `psi::SectionPacketConsumer` refuses a section whose header straddles
//! packets and reads only the first section starting in a packet.
//!
//! `mpeg2ts` (which our muxer uses) is no longer on this path: its reader pulls from an
//! `io::Read` with a PID map it learns only from PATs/PMTs it can parse itself, and it refuses
//! a whole PMT listing a stream type it does not know (0x1C…0x23, 0x2D, 0xFF, many private
//! types), PSI sections spanning packets and a non-zero pointer_field, all of which broadcast
//! contribution feeds send.
//!
//! - Program: the first one whose PMT lists H.264 video (stream type 0x1B), or `program=N`.
//!   AAC in ADTS (0x0F) is used when present; other audio (MPEG-1/2 layer II 0x03/0x04,
//!   AC-3, LATM, …) is dropped with one warning; H.265 (0x24) without H.264 is refused
//!   ([`DemuxError::H265Refused`]); any other stream type, known or not, is left alone.
//! - PAT/PMT sections up to the 1021-byte `section_length` limit are reassembled per PID
//!   across packets; one with a bad CRC_32, cut off by a lost packet or malformed is dropped
//!   and counted ([`DemuxStats::invalid_packets`]) with one warning, and the next repetition
//!   of the table is used. Only the current table (`current_next_indicator` 1) counts.
//! - PES packets are assembled per PID up to [`MAX_PES_BYTES`] for video (or the segment
//!   limit if smaller) and [`MAX_AUDIO_PES_BYTES`] for audio; a larger one, one with a
//!   continuity-counter gap, a transport error or a malformed header is dropped and counted
//!   ([`DemuxStats`]), never fatal. Memory stays bounded whatever the input: two PES buffers,
//!   less than two packets of sync buffer, a section buffer of at most 1024 bytes on the PAT
//!   PID and each PMT PID of the PAT (a PAT section lists at most 253), and up to 64 audio
//!   frames (copies, at most 8 KiB each) held until the first video frame of their epoch.
//! - Output stays proportional to the input: one video frame per PES (its NAL units walked
//!   in place, never collected), at most [`MAX_AUDIO_PES_TICKS`] (1 s, 94 frames) of audio
//!   per PES, and audio more than [`MediaLimits::max_timestamp_jump`] away from the video is
//!   dropped, so audio cannot run the timeline (and the segments cut on it) ahead of the
//!   video. Every frame dropped is counted; counters that grow are logged (warn) at most
//!   every 10 s.
//! - Frames follow the [`crate::ingest::MediaSource`] contract (module `es` does the framing):
//!   video one Annex B access unit per PES, AUD first, SPS/PPS before an IDR lacking them;
//!   audio one ADTS frame each. [`MediaEvent::Tracks`] comes before the first frame and again
//!   when the in-band SPS/PPS of an IDR or an ADTS header's configuration change. Frames wait
//!   for the first IDR carrying SPS and PPS; audio completed before it is held and follows
//!   it, from the IDR's timestamp on. The same holds after each discontinuity: audio of the
//!   new epoch waits for its first video frame.
//! - Timestamps are the source's PTS/DTS unwrapped over the 33-bit wrap, plus 2^33 so they
//!   stay non-negative (the low 33 bits are the source's value). A set
//!   `discontinuity_indicator` (§2.4.3.5), a PCR stepping back or more than 1 s ahead, or a
//!   new program sets [`Frame::discontinuity`](crate::media::Frame::discontinuity) on the
//!   first video frame to come out of the PES packets started after it (one flag per event:
//!   the segmenter cuts once); frames of PES packets started before it that finish later are
//!   dropped, so the output never steps back over the discontinuity.
//!
//! Not handled: a PAT split into several sections (only section 0 is used, one warning), a
//! PES header not whole in the packet that starts the PES (the PES is dropped and counted).
//! One PES is taken as one H.264 access unit.

mod es;
mod pes;
mod psi;
mod section;
#[cfg(test)]
pub(crate) mod tests;

pub use es::AAC_BLOCK_SAMPLES;

use crate::media::{MediaEvent, MediaLimits, Tracks};
use pes::{PesStart, Streams};
use psi::Programs;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Bytes of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// Largest video PES packet assembled, bytes (8 MiB: a 4K intra frame is a few MiB).
pub const MAX_PES_BYTES: usize = 8 << 20;
/// Largest audio PES packet assembled, bytes (64 KiB). In a transport stream only video may
/// leave `PES_packet_length` 0 (ISO/IEC 13818-1 §2.4.3.7), and that 16-bit field counts at
/// most 65,535 bytes, so no conforming audio PES is larger; real ones are a few KiB (ffmpeg
/// sends ~2.9 KiB or 0.35 s; AAC at its maximum, 6,144 bits per channel per frame, 8
/// channels, fills 64 KiB with ~10 frames).
pub const MAX_AUDIO_PES_BYTES: usize = 64 << 10;
/// Audio taken from one PES packet, 90 kHz ticks (1 s): ADTS frames starting later in it are
/// dropped and counted ([`DemuxStats::excess_audio_frames`]). Muxers put a fraction of a
/// second in one PES (ffmpeg at most 0.35 s); the cap bounds the frames one PES yields to 94
/// (96 kHz, 1024 samples each), whatever their size: without it 64 KiB of 8-byte ADTS frames
/// would be 8,192 frames, 3 minutes of audio timeline and 8,192 output TS packets.
pub const MAX_AUDIO_PES_TICKS: i64 = 90_000;
/// PTS/DTS/PCR-base wrap: 2^33 ticks of 90 kHz (~26.5 h).
pub const WRAP: u64 = 1 << 33;
const SYNC_BYTE: u8 = 0x47;
/// A PCR more than this ahead of the previous one (90 kHz ticks, 1 s; §2.7.2 wants one every
/// 100 ms) is a discontinuity.
const PCR_JUMP: i64 = 90_000;
/// Counted problems are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The transport stream holds nothing we can record. Fatal for the source (and permanent:
/// reconnecting sends the same program).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DemuxError {
    /// The chosen program's video is H.265/HEVC.
    #[error("H.265/HEVC video (program {program}) is refused: HLS MPEG-TS players do not take it; send H.264")]
    H265Refused {
        /// The program number.
        program: u16,
    },
    /// No program (or not `program=N`) has H.264 video.
    #[error("no H.264 video in program {program} (stream types {stream_types:02x?})")]
    NoH264 {
        /// The program number looked at last.
        program: u16,
        /// Its elementary stream types.
        stream_types: Vec<u8>,
    },
    /// `program=N` is not in the PAT.
    #[error("program {program} is not in the PAT (programs {available:?})")]
    ProgramNotFound {
        /// The program asked for.
        program: u16,
        /// The programs the PAT lists.
        available: Vec<u16>,
    },
}

/// Counters of a [`TsDemuxer`], since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Bytes pushed.
    pub bytes: u64,
    /// Transport packets found (in sync).
    pub packets: u64,
    /// Times sync was lost (a packet not starting with 0x47) and searched for again.
    pub resyncs: u64,
    /// Continuity-counter gaps on the elementary streams used (lost packets).
    pub cc_errors: u64,
    /// Packets with `transport_error_indicator` or scrambling set on a PID used.
    pub transport_errors: u64,
    /// Packets of a PID used with an adaptation field running past the packet or a
    /// malformed PES header, and PAT/PMT sections dropped (bad CRC_32, cut off, malformed).
    pub invalid_packets: u64,
    /// PES packets dropped incomplete (after one of the errors above).
    pub dropped_pes: u64,
    /// PES packets dropped for exceeding the size cap ([`MAX_PES_BYTES`] or the segment
    /// limit for video, [`MAX_AUDIO_PES_BYTES`] for audio).
    pub oversize_pes: u64,
    /// ADTS frames dropped beyond the first [`MAX_AUDIO_PES_TICKS`] of their PES packet.
    pub excess_audio_frames: u64,
    /// Audio frames dropped for a timestamp more than [`MediaLimits::max_timestamp_jump`]
    /// ahead of or behind the DTS of the last video frame (of the same discontinuity epoch):
    /// they would run the timeline (and the segments cut on audio) ahead of the video.
    pub distant_audio_frames: u64,
    /// Audio frames dropped waiting for the first video frame of their epoch: more than 64
    /// waiting, or timestamped before that video frame, or a later epoch started first
    /// (normal at the start of a stream: audio before the first IDR).
    pub early_audio_frames: u64,
    /// Frames emitted.
    pub frames: u64,
    /// Discontinuities seen (indicator, PCR jump, program change).
    pub discontinuities: u64,
}

/// The fields of a packet's header and adaptation field the demuxer reads itself
/// (§2.4.3.2, §2.4.3.4).
#[derive(Debug, Clone, Copy)]
struct Header {
    pid: u16,
    start: bool,
    error: bool,
    continuity: u8,
    /// Offset of the payload, `None` without one.
    payload: Option<usize>,
    discontinuity: bool,
    /// PCR base, 90 kHz.
    pcr: Option<u64>,
}

impl Header {
    /// `None` for an adaptation field running past the packet.
    fn parse(p: &[u8; PACKET_SIZE]) -> Option<Self> {
        let control = (p[3] >> 4) & 0x03;
        let mut header = Header {
            pid: u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]),
            start: p[1] & 0x40 != 0,
            error: p[1] & 0x80 != 0 || p[3] & 0xC0 != 0,
            continuity: p[3] & 0x0F,
            payload: None,
            discontinuity: false,
            pcr: None,
        };
        let mut offset = 4;
        if control & 0x02 != 0 {
            let len = usize::from(p[4]);
            if len > PACKET_SIZE - 5 {
                return None;
            }
            if len > 0 {
                header.discontinuity = p[5] & 0x80 != 0;
                if p[5] & 0x10 != 0 && len >= 7 {
                    let b = &p[6..11];
                    header.pcr = Some(
                        u64::from(b[0]) << 25
                            | u64::from(b[1]) << 17
                            | u64::from(b[2]) << 9
                            | u64::from(b[3]) << 1
                            | u64::from(b[4] >> 7),
                    );
                }
            }
            offset += 1 + len;
        }
        if control & 0x01 != 0 && offset < PACKET_SIZE {
            header.payload = Some(offset);
        }
        Some(header)
    }
}

/// An MPEG-TS demuxer for one source. See the module documentation for what it does.
#[derive(Debug)]
pub struct TsDemuxer {
    /// Bytes of an incomplete packet, or under examination while out of sync.
    buf: Vec<u8>,
    synced: bool,
    programs: Programs,
    streams: Streams,
    stats: DemuxStats,
    /// When damage was last logged, and the counters then.
    logged: (Option<Instant>, DemuxStats),
}

impl TsDemuxer {
    /// A demuxer using program `program` (`program_number` of the PAT), or the first program
    /// with H.264 video when `None`. Video PES packets are capped at the smaller of
    /// [`MAX_PES_BYTES`] and `limits.max_segment_bytes`, audio ones at
    /// [`MAX_AUDIO_PES_BYTES`]; in-band parameter sets over `limits.max_parameter_set_bytes`
    /// are ignored; audio more than `limits.max_timestamp_jump` from the video is dropped.
    pub fn new(limits: MediaLimits, program: Option<u16>) -> Self {
        Self {
            buf: Vec::new(),
            synced: false,
            programs: Programs::new(program),
            streams: Streams::new(limits),
            stats: DemuxStats::default(),
            logged: (None, DemuxStats::default()),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// The tracks declared so far (the last [`MediaEvent::Tracks`] emitted).
    pub fn tracks(&self) -> Option<&Tracks> {
        self.streams.announced()
    }

    /// Demuxes `data`, the next bytes of the stream in any chunking, appending the events it
    /// completes to `out`. A PES packet is complete when the next one on its PID starts, so
    /// events trail the input by one frame per track.
    ///
    /// # Errors
    /// [`DemuxError`] when the PAT/PMT show the stream holds nothing we record; the demuxer
    /// should then be dropped. Damage (lost or corrupt packets) is never an error.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<MediaEvent>) -> Result<(), DemuxError> {
        self.stats.bytes += data.len() as u64;
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(data);
        let mut at = 0;
        let mut result = Ok(());
        // A packet counts when it starts with 0x47 and so does the next one, so a packet
        // waits for the next chunk when it is the last one here (garbage starting with 0x47
        // would otherwise eat a packet).
        while buf.len() - at >= 2 * PACKET_SIZE {
            if buf[at] != SYNC_BYTE || buf[at + PACKET_SIZE] != SYNC_BYTE {
                if std::mem::replace(&mut self.synced, false) {
                    self.stats.resyncs += 1;
                }
                at = buf[at + 1..]
                    .iter()
                    .position(|&b| b == SYNC_BYTE)
                    .map_or(buf.len(), |p| at + 1 + p);
                continue;
            }
            self.synced = true;
            let mut packet = [0; PACKET_SIZE];
            packet.copy_from_slice(&buf[at..at + PACKET_SIZE]);
            at += PACKET_SIZE;
            if let Err(e) = self.packet(&packet, out) {
                result = Err(e);
                break;
            }
        }
        buf.drain(..at.min(buf.len()));
        if buf.capacity() > 64 << 10 {
            buf.shrink_to(4 * PACKET_SIZE);
        }
        self.buf = buf;
        self.log_errors();
        result
    }

    /// End of a finite stream: demuxes the last packet (held back until the next one would
    /// confirm it) and emits the PES packets still being assembled.
    pub fn finish(&mut self, out: &mut Vec<MediaEvent>) {
        if let Some(packet) = self.buf.get(..PACKET_SIZE).filter(|p| p[0] == SYNC_BYTE) {
            let mut last = [0; PACKET_SIZE];
            last.copy_from_slice(packet);
            self.buf.clear();
            // The stream ends here: a table refused now changes nothing.
            let _ = self.packet(&last, out);
        }
        self.streams.finish(out, &mut self.stats);
    }

    fn packet(
        &mut self,
        p: &[u8; PACKET_SIZE],
        out: &mut Vec<MediaEvent>,
    ) -> Result<(), DemuxError> {
        self.stats.packets += 1;
        let Some(header) = Header::parse(p) else {
            let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
            if self.programs.is_psi(pid) || self.streams.track_of(pid).is_some() {
                self.stats.invalid_packets += 1;
            }
            return Ok(());
        };
        if self.programs.is_psi(header.pid) {
            let mut changes = Vec::new();
            let result = self.programs.packet(&header, p, &mut self.stats, &mut changes);
            for selection in changes {
                self.streams.select(selection, out, &mut self.stats);
            }
            return result;
        }
        if self.streams.is_pcr(header.pid) {
            if let Some(pcr) = header.pcr {
                self.streams.pcr(pcr, &mut self.stats);
            }
        }
        let Some(track) = self.streams.track_of(header.pid) else {
            return Ok(());
        };
        let pes_start = match header.payload {
            Some(offset) if header.start && !header.error => {
                let start = PesStart::parse(&p[offset..]);
                self.stats.invalid_packets += u64::from(start.is_none());
                start
            }
            _ => None,
        };
        self.streams.packet(track, &header, p, pes_start, out, &mut self.stats);
        Ok(())
    }

    /// Logs the error counters that grew, at most every [`LOG_EVERY`].
    fn log_errors(&mut self) {
        let (at, before) = self.logged;
        let s = self.stats;
        let grew = s.cc_errors > before.cc_errors
            || s.resyncs > before.resyncs
            || s.transport_errors > before.transport_errors
            || s.invalid_packets > before.invalid_packets
            || s.oversize_pes > before.oversize_pes
            || s.excess_audio_frames > before.excess_audio_frames
            || s.distant_audio_frames > before.distant_audio_frames;
        if !grew || at.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        tracing::warn!(
            cc_errors = s.cc_errors - before.cc_errors,
            resyncs = s.resyncs - before.resyncs,
            transport_errors = s.transport_errors - before.transport_errors,
            invalid_packets = s.invalid_packets - before.invalid_packets,
            dropped_pes = s.dropped_pes - before.dropped_pes,
            oversize_pes = s.oversize_pes - before.oversize_pes,
            excess_audio_frames = s.excess_audio_frames - before.excess_audio_frames,
            distant_audio_frames = s.distant_audio_frames - before.distant_audio_frames,
            packets = s.packets - before.packets,
            "MPEG-TS damage since the last report (packets lost or corrupt; frames dropped)"
        );
        self.logged = (Some(Instant::now()), s);
    }
}

/// A 33-bit difference `a - b` as a signed step (the shorter way round the wrap).
fn signed33(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & (WRAP - 1);
    if d >= WRAP / 2 {
        d as i64 - WRAP as i64
    } else {
        d as i64
    }
}
