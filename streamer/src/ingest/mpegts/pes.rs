//! PES assembly on the chosen program's PIDs (ISO/IEC 13818-1 §2.4.3.6), continuity checks
//! (§2.4.3.3), timestamp unwrapping and discontinuities, and the frames that come out.

mod frames;

use super::psi::Selection;
use super::{
    signed33, DemuxStats, Header, MAX_AUDIO_PES_BYTES, MAX_PES_BYTES, PACKET_SIZE, PCR_JUMP, WRAP,
};
use crate::media::{Frame, MediaEvent, MediaLimits, Track, Tracks};
use mpeg2ts_reader::pes::{PesContents, PesError, PesHeader, PesLength, PtsDts};

/// The header of a PES packet (§2.4.3.6, §2.4.3.7), as `mpeg2ts-reader` reads it from the
/// packet that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesStart {
    /// PTS and DTS (33 bits, 90 kHz).
    pts: Option<u64>,
    dts: Option<u64>,
    /// Payload bytes `PES_packet_length` announces (`None`: unbounded, as for video).
    expected: Option<usize>,
    /// Offset of the payload in the packet's payload.
    payload: usize,
}

impl PesStart {
    /// Reads the PES header at the start of `payload` (a packet's payload); `None` when it is
    /// not whole in this packet, lacks the start code or the optional header
    /// (`stream_id`s without one, such as padding), or has malformed PTS/DTS.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        // The crate logs each header it refuses through `log`, unthrottled: the common
        // damage (no start code, marker bits, header past the packet) is refused here first,
        // quietly (the demuxer counts and reports it).
        let whole = payload.len() >= 9
            && payload[..3] == [0, 0, 1]
            && payload[6] >> 6 == 0b10
            && 9 + usize::from(payload[8]) <= payload.len();
        if !whole {
            return None;
        }
        let header = PesHeader::from_bytes(payload)?;
        let PesContents::Parsed(Some(contents)) = header.contents() else {
            return None;
        };
        let (pts, dts) = match contents.pts_dts() {
            Ok(PtsDts::PtsOnly(pts)) => (Some(pts.ok()?.value()), None),
            Ok(PtsDts::Both { pts, dts }) => (Some(pts.ok()?.value()), Some(dts.ok()?.value())),
            Ok(PtsDts::None) | Err(PesError::FieldNotPresent) => (None, None),
            Ok(PtsDts::Invalid) | Err(_) => return None,
        };
        let data = contents.payload();
        let offset = payload.len() - data.len();
        // PES_packet_length counts from after itself (the 6th byte).
        let expected = match header.pes_packet_length() {
            PesLength::Unbounded => None,
            PesLength::Bounded(n) => usize::from(n.get()).checked_sub(offset - 6),
        };
        Some(Self { pts, dts, expected, payload: offset })
    }
}

/// A PES packet being assembled.
#[derive(Debug)]
struct Pes {
    data: Vec<u8>,
    /// PTS and DTS as sent (33 bits).
    pts: Option<u64>,
    dts: Option<u64>,
    /// Payload bytes `PES_packet_length` announces (`None`: unbounded, as for video).
    expected: Option<usize>,
    /// The discontinuity epoch it started in.
    epoch: u64,
}

/// One elementary stream's PID state.
#[derive(Debug, Default)]
struct Stream {
    continuity: Option<u8>,
    /// `None` while waiting for the next PES start (at first, or after damage).
    pes: Option<Pes>,
    /// Size of the previous PES, the next one's capacity hint (up to 512 KiB).
    last_len: usize,
}

/// One-time warnings already logged.
#[derive(Debug, Default)]
struct Warned {
    before_idr: bool,
    big_sets: bool,
    no_pts: bool,
    oversize: bool,
    adts: bool,
}

/// Audio frames held until the first video frame of their epoch: at most this many (~1.3 s
/// at 48 kHz), each a copy of its ADTS frame (at most 8 KiB), so 512 KiB at worst.
const MAX_HELD: usize = 64;

/// The chosen program's elementary streams and the media state they drive.
#[derive(Debug)]
pub struct Streams {
    limits: MediaLimits,
    /// PES size caps, bytes: video, audio.
    cap: usize,
    audio_cap: usize,
    /// [`MediaLimits::max_timestamp_jump`] in 90 kHz ticks.
    max_jump: i64,
    selection: Option<Selection>,
    video: Stream,
    audio: Stream,
    /// The last DTS as sent and unwrapped.
    clock: Option<(u64, i64)>,
    /// The last PCR base.
    pcr: Option<u64>,
    /// Discontinuities so far: PES packets started after the n-th belong to epoch n.
    epoch: u64,
    /// The epoch and unwrapped DTS of the last video frame emitted. The first video frame of
    /// an epoch carries its discontinuity flag; frames of older epochs that complete later
    /// are dropped, so the output never steps back over a discontinuity. Audio goes out only
    /// within `max_jump` of the video of its own epoch.
    video_at: Option<(u64, i64)>,
    /// Unwrapped PTS the next audio frame would have.
    next_audio: Option<i64>,
    tracks: Tracks,
    announced: Option<Tracks>,
    /// Audio completed before the first video frame of its epoch (video PES end only when
    /// the next one starts), with its epoch, emitted after that frame.
    held: std::collections::VecDeque<(u64, Frame)>,
    warned: Warned,
}

/// An unwrapped timestamp as emitted: plus 2^33, so timestamps before the first stay
/// non-negative.
fn ticks(unwrapped: i64) -> u64 {
    unwrapped.saturating_add(WRAP as i64).max(0) as u64
}

impl Streams {
    /// No program chosen yet.
    pub fn new(limits: MediaLimits) -> Self {
        Self {
            limits,
            cap: MAX_PES_BYTES.min(limits.max_segment_bytes),
            audio_cap: MAX_AUDIO_PES_BYTES.min(limits.max_segment_bytes),
            max_jump: i64::try_from(limits.max_timestamp_jump.as_millis().saturating_mul(90))
                .unwrap_or(i64::MAX),
            selection: None,
            video: Stream::default(),
            audio: Stream::default(),
            clock: None,
            pcr: None,
            epoch: 0,
            video_at: None,
            next_audio: None,
            tracks: Tracks::default(),
            announced: None,
            held: std::collections::VecDeque::new(),
            warned: Warned::default(),
        }
    }

    /// The tracks last announced.
    pub fn announced(&self) -> Option<&Tracks> {
        self.announced.as_ref()
    }

    /// The track carried on `pid`, if it is one the chosen program's streams.
    pub fn track_of(&self, pid: u16) -> Option<Track> {
        let sel = self.selection?;
        if sel.video == pid {
            Some(Track::Video)
        } else if sel.audio == Some(pid) {
            Some(Track::Audio)
        } else {
            None
        }
    }

    /// Whether `pid` carries the chosen program's PCR.
    pub fn is_pcr(&self, pid: u16) -> bool {
        self.selection.is_some_and(|s| s.pcr == Some(pid))
    }

    /// Uses `selection` from now on (none: the program went away). Frames being assembled
    /// are emitted; a change of program is a discontinuity.
    pub fn select(
        &mut self,
        selection: Option<Selection>,
        out: &mut Vec<MediaEvent>,
        stats: &mut DemuxStats,
    ) {
        self.finish(out, stats);
        if self.selection.is_some() {
            self.discontinuity(stats);
        }
        self.selection = selection;
        self.video = Stream::default();
        self.audio = Stream::default();
        self.pcr = None;
        self.next_audio = None;
        self.held.clear();
        if selection.is_some_and(|s| s.audio.is_none()) {
            self.tracks.audio = None;
        }
    }

    /// A PCR (base, 90 kHz) on the PCR PID: one stepping back or jumping ahead is a
    /// discontinuity.
    pub fn pcr(&mut self, base: u64, stats: &mut DemuxStats) {
        if let Some(last) = self.pcr.replace(base) {
            let step = signed33(base, last);
            if !(0..=PCR_JUMP).contains(&step) {
                tracing::debug!(step, "PCR discontinuity");
                self.discontinuity(stats);
            }
        }
    }

    /// Frames of PES packets started from now on are a new epoch; the first of them to come
    /// out is flagged.
    fn discontinuity(&mut self, stats: &mut DemuxStats) {
        stats.discontinuities += 1;
        self.epoch += 1;
        self.next_audio = None;
    }

    /// The epoch of the last video frame emitted.
    fn emitted_epoch(&self) -> u64 {
        self.video_at.map_or(0, |(epoch, _)| epoch)
    }

    /// Whether a PES of `epoch` may still yield frames: not when a later epoch's video went
    /// out (counted as a dropped PES).
    fn admit(&self, epoch: u64, stats: &mut DemuxStats) -> bool {
        let admitted = epoch >= self.emitted_epoch();
        stats.dropped_pes += u64::from(!admitted);
        admitted
    }

    fn stream(&mut self, track: Track) -> &mut Stream {
        match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        }
    }

    /// One packet of `track`'s PID; `start` is its PES header when it starts a PES (`None`
    /// if [`PesStart::parse`] refused it).
    pub fn packet(
        &mut self,
        track: Track,
        header: &Header,
        p: &[u8; PACKET_SIZE],
        start: Option<PesStart>,
        out: &mut Vec<MediaEvent>,
        stats: &mut DemuxStats,
    ) {
        let cap = match track {
            Track::Video => self.cap,
            Track::Audio => self.audio_cap,
        };
        let stream = self.stream(track);
        if header.error {
            stats.transport_errors += 1;
            stats.dropped_pes += u64::from(stream.pes.take().is_some());
            return;
        }
        if header.payload.is_some() {
            if let Some(last) = stream.continuity {
                if header.continuity == last && !header.discontinuity {
                    return; // a duplicate packet (§2.4.3.3)
                }
                if header.continuity != (last + 1) & 0x0F && !header.discontinuity {
                    stats.cc_errors += 1;
                    stats.dropped_pes += u64::from(stream.pes.take().is_some());
                }
            }
            stream.continuity = Some(header.continuity);
        }
        if header.start {
            self.finish_pes(track, out, stats);
        }
        if header.discontinuity {
            self.discontinuity(stats);
        }
        let epoch = self.epoch;
        let stream = self.stream(track);
        let Some(offset) = header.payload else {
            return;
        };
        if header.start {
            if let Some(pes) = start {
                let mut data =
                    Vec::with_capacity(stream.last_len.min(cap).clamp(PACKET_SIZE, 512 << 10));
                data.extend_from_slice(&p[offset + pes.payload..]);
                stream.pes =
                    Some(Pes { data, pts: pes.pts, dts: pes.dts, expected: pes.expected, epoch });
            }
        } else if let Some(pes) = stream.pes.as_mut() {
            let payload = &p[offset..];
            if pes.data.len() + payload.len() > cap {
                stream.pes = None;
                stats.oversize_pes += 1;
                if !std::mem::replace(&mut self.warned.oversize, true) {
                    tracing::warn!(cap, ?track, "dropping a PES packet over the size cap");
                }
                return;
            }
            pes.data.extend_from_slice(payload);
        }
        // A PES with a length is complete as soon as it is all here.
        if let Some(pes) = stream.pes.as_mut() {
            if let Some(expected) = pes.expected.filter(|&n| pes.data.len() >= n) {
                pes.data.truncate(expected);
                self.finish_pes(track, out, stats);
            }
        }
    }

    /// Emits the PES packets being assembled (end of stream, or a new program).
    pub fn finish(&mut self, out: &mut Vec<MediaEvent>, stats: &mut DemuxStats) {
        self.finish_pes(Track::Video, out, stats);
        self.finish_pes(Track::Audio, out, stats);
    }

    fn finish_pes(&mut self, track: Track, out: &mut Vec<MediaEvent>, stats: &mut DemuxStats) {
        let stream = self.stream(track);
        let Some(pes) = stream.pes.take() else {
            return;
        };
        stream.last_len = pes.data.len();
        match track {
            Track::Video => self.video_frame(pes, out, stats),
            Track::Audio => self.audio_frames(pes, out, stats),
        }
    }
}
