//! FLV tag bodies (as carried by RTMP audio/video messages and FLV files) to [`Frame`]s.
//!
//! Follows the FLV specification v10.1 §E.4.2/§E.4.3 (VIDEODATA / AUDIODATA with
//! AVCVIDEOPACKET / AACAUDIODATA), ISO/IEC 14496-15 §5.2.4.1 (AVCDecoderConfigurationRecord)
//! and ISO/IEC 14496-3 §1.6.2.1 (AudioSpecificConfig) / §1.A.2 (ADTS).

use crate::media::{Frame, Track};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Offset added to every timestamp so that B-frame reordering (negative composition offsets
/// relative to the first DTS) never goes below zero: 1.4 s in 90 kHz ticks, as ffmpeg does.
pub const TIMESTAMP_BASE: u64 = 126_000;

const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// A tag body that cannot be turned into frames. Fatal for the connection that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    /// The body ends before a field it announces.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Video that is not H.264 (FLV codec id 7), e.g. enhanced-RTMP HEVC.
    #[error("unsupported video codec id {0} (only H.264/AVC is supported)")]
    UnsupportedVideoCodec(u8),
    /// Coded frames arrived before the AVC sequence header.
    #[error("H.264 frame before the AVC sequence header")]
    MissingVideoConfig,
    /// An AVCDecoderConfigurationRecord or AudioSpecificConfig we cannot use.
    #[error("invalid {0}")]
    InvalidConfig(&'static str),
}

/// Per-publisher demuxing state: codec configuration and timestamp unwrapping.
#[derive(Debug, Default)]
pub struct FlvDemuxer {
    nal_length_size: usize,
    parameter_sets: Option<Bytes>,
    adts: Option<AdtsConfig>,
    clock: Option<Clock>,
    warned_audio_codec: bool,
}

#[derive(Debug, Clone, Copy)]
struct AdtsConfig {
    profile: u8,
    sampling_index: u8,
    channels: u8,
}

/// Extends 32-bit millisecond timestamps (RTMP/FLV) to a monotonic 64-bit timeline in 90 kHz.
#[derive(Debug, Clone, Copy)]
struct Clock {
    last_raw: u32,
    last_ms: i64,
}

impl Clock {
    fn ticks(&mut self, raw: u32) -> u64 {
        // Interpret the step as a signed 32-bit delta: handles the 2^32 ms wrap (~49.7 days)
        // and small backwards steps between interleaved audio and video.
        let delta = raw.wrapping_sub(self.last_raw) as i32;
        self.last_raw = raw;
        self.last_ms += i64::from(delta);
        (TIMESTAMP_BASE as i64 + self.last_ms * 90).max(0) as u64
    }
}

struct Reader<'a>(&'a [u8], &'static str);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FlvError> {
        if self.0.len() < n {
            return Err(FlvError::Truncated(self.1));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FlvError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, FlvError> {
        let b = self.take(2)?;
        Ok(usize::from(b[0]) << 8 | usize::from(b[1]))
    }
}

impl FlvDemuxer {
    /// A demuxer awaiting sequence headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an AAC sequence header has been seen (the stream has a usable audio track).
    pub fn has_audio(&self) -> bool {
        self.adts.is_some()
    }

    fn clock(&mut self, raw_ms: u32) -> u64 {
        self.clock.get_or_insert(Clock { last_raw: raw_ms, last_ms: 0 }).ticks(raw_ms)
    }

    /// Parses a VIDEODATA body with timestamp `ts_ms` (RTMP/FLV milliseconds).
    ///
    /// Returns `Ok(None)` for sequence headers, end-of-sequence and empty frames.
    ///
    /// # Errors
    /// [`FlvError`] for non-H.264 video, truncated bodies, or frames before the sequence header.
    pub fn video(&mut self, ts_ms: u32, body: &[u8]) -> Result<Option<Frame>, FlvError> {
        let mut r = Reader(body, "VIDEODATA");
        let first = r.u8()?;
        let codec = first & 0x0F;
        if first & 0x80 != 0 || codec != 7 {
            return Err(FlvError::UnsupportedVideoCodec(if first & 0x80 != 0 {
                first
            } else {
                codec
            }));
        }
        if first >> 4 == 5 {
            return Ok(None); // video info / command frame
        }
        let packet_type = r.u8()?;
        let cts = r.take(3)?;
        // SI24 composition time offset in milliseconds.
        let cts = ((i32::from(cts[0]) << 24 | i32::from(cts[1]) << 16 | i32::from(cts[2]) << 8)
            >> 8) as i64;
        match packet_type {
            0 => {
                self.parse_avc_config(r.0)?;
                Ok(None)
            }
            1 => {
                let params = self.parameter_sets.clone().ok_or(FlvError::MissingVideoConfig)?;
                let dts = self.clock(ts_ms);
                let pts = (dts as i64 + cts * 90).max(0) as u64;
                self.annex_b(r.0, &params).map(|(data, idr)| {
                    data.map(|data| Frame { track: Track::Video, dts, pts, idr, data })
                })
            }
            _ => Ok(None),
        }
    }

    fn parse_avc_config(&mut self, record: &[u8]) -> Result<(), FlvError> {
        let mut r = Reader(record, "AVCDecoderConfigurationRecord");
        let header = r.take(5)?;
        if header[0] != 1 {
            return Err(FlvError::InvalidConfig("AVCDecoderConfigurationRecord version"));
        }
        let length_size = usize::from(header[4] & 0x03) + 1;
        if length_size == 3 {
            return Err(FlvError::InvalidConfig("NAL unit length size 3"));
        }
        let mut sets = BytesMut::new();
        let sps_count = r.u8()? & 0x1F;
        for _ in 0..sps_count {
            let len = r.u16()?;
            sets.put_slice(&START_CODE);
            sets.put_slice(r.take(len)?);
        }
        let pps_count = r.u8()?;
        for _ in 0..pps_count {
            let len = r.u16()?;
            sets.put_slice(&START_CODE);
            sets.put_slice(r.take(len)?);
        }
        if sps_count == 0 || pps_count == 0 {
            return Err(FlvError::InvalidConfig("AVCDecoderConfigurationRecord without SPS/PPS"));
        }
        self.nal_length_size = length_size;
        self.parameter_sets = Some(sets.freeze());
        Ok(())
    }

    /// Length-prefixed NAL units -> Annex B access unit: AUD, then SPS/PPS before an IDR that
    /// lacks them, then the NAL units (dropping AUDs already present). Returns the data
    /// (`None` if no NAL units) and whether it holds an IDR slice.
    fn annex_b(&self, mut nals: &[u8], params: &Bytes) -> Result<(Option<Bytes>, bool), FlvError> {
        let n = self.nal_length_size;
        let mut units: Vec<&[u8]> = Vec::with_capacity(4);
        let (mut idr, mut has_sps) = (false, false);
        while !nals.is_empty() {
            if nals.len() < n {
                return Err(FlvError::Truncated("NAL unit length"));
            }
            let len = nals[..n].iter().fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            let unit = nals.get(n..n + len).ok_or(FlvError::Truncated("NAL unit"))?;
            nals = &nals[n + len..];
            match unit.first().map(|b| b & 0x1F) {
                None | Some(9) => continue,
                Some(5) => idr = true,
                Some(7) => has_sps = true,
                _ => {}
            }
            units.push(unit);
        }
        if units.is_empty() {
            return Ok((None, false));
        }
        let payload: usize = units.iter().map(|u| u.len() + 4).sum();
        let mut out = BytesMut::with_capacity(AUD.len() + params.len() + payload);
        out.put_slice(&AUD);
        if idr && !has_sps {
            out.put_slice(params);
        }
        for unit in units {
            out.put_slice(&START_CODE);
            out.put_slice(unit);
        }
        Ok((Some(out.freeze()), idr))
    }

    /// Parses an AUDIODATA body with timestamp `ts_ms` (milliseconds).
    ///
    /// Returns `Ok(None)` for the AAC sequence header and for non-AAC audio (logged once and
    /// dropped: video goes on without it).
    ///
    /// # Errors
    /// [`FlvError`] for truncated bodies or an unusable AudioSpecificConfig.
    pub fn audio(&mut self, ts_ms: u32, body: &[u8]) -> Result<Option<Frame>, FlvError> {
        let mut r = Reader(body, "AUDIODATA");
        let format = r.u8()? >> 4;
        if format != 10 {
            if !self.warned_audio_codec {
                tracing::warn!(sound_format = format, "dropping non-AAC audio");
                self.warned_audio_codec = true;
            }
            return Ok(None);
        }
        match r.u8()? {
            0 => {
                let asc = r.take(2).map_err(|_| FlvError::InvalidConfig("AudioSpecificConfig"))?;
                let object_type = asc[0] >> 3;
                let sampling_index = (asc[0] & 0x07) << 1 | asc[1] >> 7;
                let channels = (asc[1] >> 3) & 0x0F;
                // ADTS can express object types 1..=4 (profile 0..=3) and table sample rates.
                if !(1..=4).contains(&object_type) && object_type != 5 && object_type != 29
                    || sampling_index > 12
                {
                    return Err(FlvError::InvalidConfig("AudioSpecificConfig"));
                }
                // HE-AAC (5) and HE-AACv2 (29) are signalled implicitly as AAC-LC in ADTS.
                let profile = if object_type > 4 { 1 } else { object_type - 1 };
                self.adts = Some(AdtsConfig { profile, sampling_index, channels });
                Ok(None)
            }
            1 => {
                let Some(cfg) = self.adts else {
                    return Ok(None);
                };
                let raw = r.0;
                if raw.is_empty() {
                    return Ok(None);
                }
                let pts = self.clock(ts_ms);
                let mut out = BytesMut::with_capacity(7 + raw.len());
                out.put_slice(&adts_header(cfg, raw.len()));
                out.put_slice(raw);
                Ok(Some(Frame {
                    track: Track::Audio,
                    dts: pts,
                    pts,
                    idr: false,
                    data: out.freeze(),
                }))
            }
            _ => Ok(None),
        }
    }
}

fn adts_header(cfg: AdtsConfig, payload_len: usize) -> [u8; 7] {
    let len = (payload_len + 7).min(0x1FFF);
    [
        0xFF,
        0xF1, // MPEG-4, layer 0, no CRC
        cfg.profile << 6 | cfg.sampling_index << 2 | (cfg.channels >> 2) & 0x01,
        (cfg.channels & 0x03) << 6 | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len & 0x07) as u8) << 5 | 0x1F,
        0xFC,
    ]
}

/// One FLV tag (FLV spec §E.4.1).
#[derive(Debug, Clone, Copy)]
pub struct FlvTag<'a> {
    /// Tag type: 8 audio, 9 video, 18 script data.
    pub kind: u8,
    /// Timestamp, milliseconds (24 bits + 8 extended bits).
    pub timestamp_ms: u32,
    /// Tag body (AUDIODATA / VIDEODATA / SCRIPTDATA).
    pub body: &'a [u8],
}

/// Streams tags out of an FLV file (FLV spec §E.2-§E.3) with one reused body buffer.
#[derive(Debug)]
pub struct FlvFileReader<R> {
    inner: R,
    body: Vec<u8>,
}

impl<R: std::io::Read> FlvFileReader<R> {
    /// Checks the `FLV` signature and skips the header.
    ///
    /// # Errors
    /// [`FlvError::Truncated`] when the input does not start with an FLV header.
    pub fn new(mut inner: R) -> Result<Self, FlvError> {
        let mut header = [0u8; 9];
        inner.read_exact(&mut header).map_err(|_| FlvError::Truncated("FLV header"))?;
        if &header[..3] != b"FLV" {
            return Err(FlvError::Truncated("FLV header"));
        }
        let offset = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as u64;
        // Skip the rest of the header and PreviousTagSize0.
        let skip = (offset + 4).saturating_sub(9);
        std::io::copy(&mut std::io::Read::take(&mut inner, skip), &mut std::io::sink())
            .map_err(|_| FlvError::Truncated("FLV header"))?;
        Ok(Self { inner, body: Vec::new() })
    }

    /// The next tag, `Ok(None)` at a clean end of file.
    ///
    /// # Errors
    /// [`FlvError::Truncated`] when the file ends inside a tag.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag<'_>>, FlvError> {
        let mut h = [0u8; 11];
        match self.inner.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(_) => return Err(FlvError::Truncated("FLV tag header")),
        }
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        // Grow with the data actually read, not the 24-bit size a corrupt header claims.
        self.body.clear();
        let want = size as u64 + 4; // body + PreviousTagSize
        let got = std::io::Read::read_to_end(
            &mut std::io::Read::take(&mut self.inner, want),
            &mut self.body,
        )
        .map_err(|_| FlvError::Truncated("FLV tag body"))?;
        if (got as u64) < want {
            return Err(FlvError::Truncated("FLV tag body"));
        }
        Ok(Some(FlvTag { kind: h[0] & 0x1F, timestamp_ms: ts, body: &self.body[..size] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc_config() -> Vec<u8> {
        vec![1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 3, 0x67, 0x64, 0x00, 1, 0, 2, 0x68, 0xEE]
    }

    fn video(frame_type: u8, packet_type: u8, cts: i32, payload: &[u8]) -> Vec<u8> {
        let c = cts.to_be_bytes();
        let mut v = vec![frame_type << 4 | 7, packet_type, c[1], c[2], c[3]];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn idr_gets_aud_and_parameter_sets() {
        let mut d = FlvDemuxer::new();
        assert_eq!(
            d.video(0, &video(1, 1, 0, &[0, 0, 0, 1, 0x65])).unwrap_err(),
            FlvError::MissingVideoConfig
        );
        assert!(d.video(0, &video(1, 0, 0, &avc_config())).unwrap().is_none());
        let f = d.video(40, &video(1, 1, 80, &[0, 0, 0, 2, 0x65, 0xAA])).unwrap().unwrap();
        assert!(f.idr);
        assert_eq!(f.dts, TIMESTAMP_BASE);
        assert_eq!(f.pts, TIMESTAMP_BASE + 80 * 90);
        assert_eq!(
            &f.data[..],
            &[
                0, 0, 0, 1, 9, 0xF0, 0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1,
                0x65, 0xAA
            ]
        );
        let p = d.video(80, &video(2, 1, -40, &[0, 0, 0, 1, 0x41])).unwrap().unwrap();
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
        assert_eq!(
            d.video(0, &[0x1C, 1, 0, 0, 0]).unwrap_err(),
            FlvError::UnsupportedVideoCodec(12)
        );
        assert!(matches!(d.video(0, &video(1, 0, 0, &[1, 2])), Err(FlvError::Truncated(_))));
    }

    #[test]
    fn aac_gets_adts_header() {
        let mut d = FlvDemuxer::new();
        assert!(d.audio(0, &[0xAF, 1, 1, 2]).unwrap().is_none(), "no config yet: dropped");
        // AAC-LC (2), 48 kHz (index 3), stereo.
        d.audio(0, &[0xAF, 0, 0x11, 0x90]).unwrap();
        let f = d.audio(21, &[0xAF, 1, 0xDE, 0xAD]).unwrap().unwrap();
        assert_eq!(&f.data[..], &[0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x3F, 0xFC, 0xDE, 0xAD]);
        assert_eq!(f.pts, TIMESTAMP_BASE);
    }

    #[test]
    fn timestamps_survive_32_bit_wrap() {
        let mut c = Clock { last_raw: u32::MAX - 10, last_ms: 0 };
        assert_eq!(c.ticks(5), TIMESTAMP_BASE + 16 * 90);
    }

    /// Arbitrary bytes never panic the demuxer or the file reader: they are frames or errors.
    #[test]
    fn arbitrary_input_never_panics() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards the interesting prefixes so parsing goes deep.
            if round % 2 == 0 && len > 2 {
                body[0] = if round % 4 == 0 { 0x17 } else { 0xAF };
                body[1] = (next() % 2) as u8;
            }
            let mut d = FlvDemuxer::new();
            let _ = d.video(next() as u32, &avc_config());
            let _ = d.video(next() as u32, &body);
            let _ = d.audio(next() as u32, &body);
            let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
            file.extend_from_slice(&body);
            if let Ok(mut r) = FlvFileReader::new(&file[..]) {
                while let Ok(Some(_)) = r.next_tag() {}
            }
        }
    }
}
