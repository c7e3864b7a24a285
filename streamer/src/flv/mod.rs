//! FLV tag bodies (as carried by RTMP audio/video messages and FLV files) to [`MediaEvent`]s.
//!
//! Follows the FLV specification v10.1 §E.4.2/§E.4.3 (VIDEODATA / AUDIODATA with
//! AVCVIDEOPACKET / AACAUDIODATA); the codec configuration records are parsed in
//! [`config`], FLV files are read by [`FlvFileReader`].
//!
//! Tolerance, as publishers really behave:
//! - An unusable sequence header (empty, truncated, unknown version or object type, an
//!   explicit AAC sampling rate) is ignored, with one warning per track: ffmpeg relaying
//!   MPEG-TS sends an empty AudioSpecificConfig before the real one. Frames of a track
//!   without a usable configuration are dropped (one warning per track).
//! - A re-sent identical configuration is no event (encoders repeat them); a different one is
//!   a [`MediaEvent::Tracks`] the segmenter turns into a discontinuity. An IDR whose in-band
//!   SPS differ from the configuration (ffmpeg relaying a source that switched resolution
//!   sends no new sequence header) replaces the parameter sets and is flagged
//!   [`Frame::discontinuity`].
//! - Timestamps go through a [`Timeline`]: 32-bit millisecond wrap, jumps and backward steps
//!   come out as a monotonic timeline with [`Frame::discontinuity`] set where it was rebased.
//!
//! What stays fatal for the connection ([`FlvError`]): non-H.264 video, a truncated frame
//! body, and parameter sets over [`MediaLimits::max_parameter_set_bytes`] (repeated before
//! every IDR, they would let one tiny IDR cost that much).

pub mod config;
mod file;
pub mod mux;
#[cfg(test)]
mod tests;

pub use config::{adts_header, parse_audio_specific_config, parse_avc_config, AvcConfig};
pub use file::{FlvFileReader, FlvTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

use crate::media::VideoConfig;
use crate::media::{Frame, MediaEvent, MediaLimits, Timeline, Track, Tracks};
use bytes::{BufMut, Bytes, BytesMut};
use config::{Reader, ADTS_HEADER_LEN, NAL_SPS, START_CODE};
use thiserror::Error;

/// Access unit delimiter NAL unit (primary_pic_type 7: any slice type), with start code.
pub(crate) const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];
/// NAL unit types (ISO/IEC 14496-10 Table 7-1).
pub(crate) const NAL_IDR: u8 = 5;
pub(crate) const NAL_PPS: u8 = 8;
pub(crate) const NAL_AUD: u8 = 9;
/// VIDEODATA codec id of AVC (FLV spec §E.4.3.1).
const CODEC_AVC: u8 = 7;
/// VIDEODATA frame type of a video info / command frame.
const FRAME_COMMAND: u8 = 5;
/// AUDIODATA sound format of AAC (FLV spec §E.4.2.1).
const SOUND_AAC: u8 = 10;
/// AVCPacketType / AACPacketType: sequence header, coded frame.
const PACKET_SEQUENCE_HEADER: u8 = 0;
const PACKET_CODED: u8 = 1;

/// A tag body that cannot be turned into frames. Fatal for the connection that sent it,
/// except [`FlvError::InvalidConfig`] from a sequence header, which the demuxer ignores.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    /// The body ends before a field it announces.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Video that is not H.264 (FLV codec id 7), e.g. enhanced-RTMP HEVC.
    #[error("unsupported video codec id {0} (only H.264/AVC is supported)")]
    UnsupportedVideoCodec(u8),
    /// An AVCDecoderConfigurationRecord or AudioSpecificConfig we cannot use.
    #[error("invalid {0}")]
    InvalidConfig(&'static str),
    /// SPS + PPS (Annex B) larger than [`MediaLimits::max_parameter_set_bytes`].
    #[error("parameter sets of {bytes}+ bytes exceed the limit of {limit} bytes")]
    ParameterSetsTooLarge {
        /// Bytes counted when the limit was crossed.
        bytes: usize,
        /// The limit, bytes.
        limit: usize,
    },
}

/// Per-publisher demuxing state: codec configuration, timestamp unwrapping and rebasing.
#[derive(Debug)]
pub struct FlvDemuxer {
    limits: MediaLimits,
    tracks: Tracks,
    nal_length_size: usize,
    /// Bytes of the video parameter sets taken by the SPS.
    sps_len: usize,
    clock: Option<Clock>,
    timeline: Timeline,
    warned: Warned,
}

/// Which one-time warnings were logged.
#[derive(Debug, Default)]
struct Warned {
    audio_codec: bool,
    video_config: bool,
    audio_config: bool,
    video_before_config: bool,
}

/// Extends 32-bit millisecond timestamps (RTMP/FLV) to 64 bits.
#[derive(Debug, Clone, Copy)]
struct Clock {
    last_raw: u32,
    last_ms: i64,
}

impl Clock {
    fn ms(&mut self, raw: u32) -> i64 {
        // Interpret the step as a signed 32-bit delta: handles the 2^32 ms wrap (~49.7 days)
        // and backward steps (interleaving, or a source restarting at 0).
        let delta = raw.wrapping_sub(self.last_raw) as i32;
        self.last_raw = raw;
        self.last_ms += i64::from(delta);
        self.last_ms
    }
}

impl Default for FlvDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvDemuxer {
    /// A demuxer awaiting sequence headers, with [`MediaLimits::default`].
    pub fn new() -> Self {
        Self::with_limits(MediaLimits::default())
    }

    /// A demuxer awaiting sequence headers, bounded by `limits`
    /// (`max_parameter_set_bytes`, `max_timestamp_jump`).
    pub fn with_limits(limits: MediaLimits) -> Self {
        Self {
            limits,
            tracks: Tracks::default(),
            nal_length_size: 4,
            sps_len: 0,
            clock: None,
            timeline: Timeline::new(limits.max_timestamp_jump),
            warned: Warned::default(),
        }
    }

    /// The tracks declared so far (usable configurations only).
    pub fn tracks(&self) -> &Tracks {
        &self.tracks
    }

    /// Output timestamps (90 kHz) of a tag: the frame's DTS on the rebased timeline, and
    /// whether the timeline was rebased at it.
    fn timestamp(&mut self, track: Track, raw_ms: u32) -> (u64, bool) {
        let ms = self.clock.get_or_insert(Clock { last_raw: raw_ms, last_ms: 0 }).ms(raw_ms);
        self.timeline.map(track, ms.saturating_mul(90))
    }

    /// Parses a VIDEODATA body with timestamp `ts_ms` (RTMP/FLV milliseconds).
    ///
    /// Returns [`MediaEvent::Tracks`] for a sequence header with new parameter sets,
    /// [`MediaEvent::Frame`] for a coded frame, and `Ok(None)` for everything else: an
    /// identical or unusable sequence header, end of sequence, command frames, empty frames,
    /// and frames before the first usable sequence header.
    ///
    /// # Errors
    /// [`FlvError`] for non-H.264 video, a truncated body, or parameter sets over the limit.
    pub fn video(&mut self, ts_ms: u32, body: &[u8]) -> Result<Option<MediaEvent>, FlvError> {
        let mut r = Reader::new(body, "VIDEODATA");
        let first = r.u8()?;
        let codec = first & 0x0F;
        if first & 0x80 != 0 {
            return Err(FlvError::UnsupportedVideoCodec(first)); // enhanced RTMP
        }
        if codec != CODEC_AVC {
            return Err(FlvError::UnsupportedVideoCodec(codec));
        }
        if first >> 4 == FRAME_COMMAND {
            return Ok(None);
        }
        let packet_type = r.u8()?;
        let cts = r.take(3)?;
        // SI24 composition time offset in milliseconds.
        let cts = i64::from(
            (i32::from(cts[0]) << 24 | i32::from(cts[1]) << 16 | i32::from(cts[2]) << 8) >> 8,
        );
        match packet_type {
            PACKET_SEQUENCE_HEADER => self.video_config(r.rest),
            PACKET_CODED => {
                let Some(video) = self.tracks.video.as_ref() else {
                    if !std::mem::replace(&mut self.warned.video_before_config, true) {
                        tracing::warn!("dropping H.264 frames before a usable AVC sequence header");
                    }
                    return Ok(None);
                };
                let au =
                    annex_b(r.rest, self.nal_length_size, &video.parameter_sets, self.sps_len)?;
                let Some(data) = au.data else {
                    return Ok(None);
                };
                let mut new_sets = false;
                if let Some((parameter_sets, sps_len)) = au.new_parameter_sets {
                    if parameter_sets.len() <= self.limits.max_parameter_set_bytes {
                        self.tracks.video = Some(VideoConfig { parameter_sets });
                        self.sps_len = sps_len;
                        new_sets = true;
                    }
                }
                let idr = au.idr;
                let (dts, rebased) = self.timestamp(Track::Video, ts_ms);
                let discontinuity = rebased || new_sets;
                let pts = (dts as i64).saturating_add(cts * 90).max(0) as u64;
                Ok(Some(MediaEvent::Frame(Frame {
                    track: Track::Video,
                    dts,
                    pts,
                    idr,
                    discontinuity,
                    data,
                })))
            }
            _ => Ok(None),
        }
    }

    fn video_config(&mut self, record: &[u8]) -> Result<Option<MediaEvent>, FlvError> {
        match parse_avc_config(record, self.limits.max_parameter_set_bytes) {
            Ok(config) => {
                self.nal_length_size = config.nal_length_size;
                self.sps_len = config.sps_len;
                if self.tracks.video.as_ref() == Some(&config.video) {
                    return Ok(None);
                }
                self.tracks.video = Some(config.video);
                Ok(Some(MediaEvent::Tracks(self.tracks.clone())))
            }
            Err(e @ FlvError::ParameterSetsTooLarge { .. }) => Err(e),
            Err(e) => {
                if !std::mem::replace(&mut self.warned.video_config, true) {
                    tracing::warn!(error = %e, bytes = record.len(), "ignoring AVC sequence header");
                }
                Ok(None)
            }
        }
    }

    /// Parses an AUDIODATA body with timestamp `ts_ms` (milliseconds).
    ///
    /// Returns [`MediaEvent::Tracks`] for a sequence header with a new AAC configuration,
    /// [`MediaEvent::Frame`] (with its ADTS header) for a raw AAC frame, and `Ok(None)` for
    /// everything else: an identical or unusable sequence header, frames before a usable one,
    /// and non-AAC audio (logged once and dropped: video goes on without it).
    ///
    /// # Errors
    /// [`FlvError::Truncated`] for a body without its AAC packet type.
    pub fn audio(&mut self, ts_ms: u32, body: &[u8]) -> Result<Option<MediaEvent>, FlvError> {
        let mut r = Reader::new(body, "AUDIODATA");
        let format = r.u8()? >> 4;
        if format != SOUND_AAC {
            if !std::mem::replace(&mut self.warned.audio_codec, true) {
                tracing::warn!(sound_format = format, "dropping non-AAC audio");
            }
            return Ok(None);
        }
        match r.u8()? {
            PACKET_SEQUENCE_HEADER => Ok(self.audio_config(r.rest)),
            PACKET_CODED => {
                let Some(cfg) = self.tracks.audio else {
                    return Ok(None);
                };
                let raw = r.rest;
                if raw.is_empty() {
                    return Ok(None);
                }
                let (dts, discontinuity) = self.timestamp(Track::Audio, ts_ms);
                let mut out = BytesMut::with_capacity(ADTS_HEADER_LEN + raw.len());
                out.put_slice(&adts_header(cfg, raw.len()));
                out.put_slice(raw);
                Ok(Some(MediaEvent::Frame(Frame {
                    track: Track::Audio,
                    dts,
                    pts: dts,
                    idr: false,
                    discontinuity,
                    data: out.freeze(),
                })))
            }
            _ => Ok(None),
        }
    }

    fn audio_config(&mut self, asc: &[u8]) -> Option<MediaEvent> {
        match parse_audio_specific_config(asc) {
            Ok(config) if self.tracks.audio == Some(config) => None,
            Ok(config) => {
                self.tracks.audio = Some(config);
                Some(MediaEvent::Tracks(self.tracks.clone()))
            }
            Err(e) => {
                if !std::mem::replace(&mut self.warned.audio_config, true) {
                    tracing::warn!(error = %e, bytes = asc.len(), "ignoring AAC sequence header");
                }
                None
            }
        }
    }
}

/// One access unit in Annex B form.
pub(crate) struct AccessUnit {
    /// The bytes, `None` if the frame held no NAL units.
    pub(crate) data: Option<Bytes>,
    /// It holds an IDR slice.
    pub(crate) idr: bool,
    /// An IDR whose in-band SPS differ from the configured ones: the new parameter sets
    /// (in-band SPS, then in-band PPS or else the configured PPS) and the SPS bytes in them.
    pub(crate) new_parameter_sets: Option<(Bytes, usize)>,
}

/// Length-prefixed NAL units (`n`-byte lengths) -> Annex B access unit: AUD, then `params`
/// (SPS/PPS, the first `sps_len` bytes being the SPS) before an IDR that lacks them, then the
/// NAL units (dropping AUDs already present). The data is at most
/// `6 + params.len() + 2.5 × nals.len()` bytes. Shared with RTSP, whose depacketizer
/// hands over 4-byte length-prefixed NAL units.
pub(crate) fn annex_b(
    mut nals: &[u8],
    n: usize,
    params: &Bytes,
    sps_len: usize,
) -> Result<AccessUnit, FlvError> {
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
            None | Some(NAL_AUD) => continue,
            Some(NAL_IDR) => idr = true,
            Some(NAL_SPS) => has_sps = true,
            _ => {}
        }
        units.push(unit);
    }
    if units.is_empty() {
        return Ok(AccessUnit { data: None, idr: false, new_parameter_sets: None });
    }
    let new_parameter_sets =
        if idr && has_sps { inband_parameter_sets(&units, params, sps_len) } else { None };
    let payload: usize = units.iter().map(|u| u.len() + START_CODE.len()).sum();
    let mut out = BytesMut::with_capacity(AUD.len() + params.len() + payload);
    out.put_slice(&AUD);
    if idr && !has_sps {
        out.put_slice(params);
    }
    for unit in units {
        out.put_slice(&START_CODE);
        out.put_slice(unit);
    }
    Ok(AccessUnit { data: Some(out.freeze()), idr, new_parameter_sets })
}

/// The parameter sets an IDR carries in-band, if its SPS differ from the configured ones
/// (`params`, SPS in the first `sps_len` bytes): encoders switching resolution through
/// `-c copy` relays announce it only this way.
fn inband_parameter_sets(
    units: &[&[u8]],
    params: &Bytes,
    sps_len: usize,
) -> Option<(Bytes, usize)> {
    let of_type = |t: u8| units.iter().filter(move |u| u.first().map(|b| b & 0x1F) == Some(t));
    let mut sets = BytesMut::new();
    for unit in of_type(NAL_SPS) {
        sets.put_slice(&START_CODE);
        sets.put_slice(unit);
    }
    let configured_sps = params.get(..sps_len).unwrap_or(params);
    if sets[..] == configured_sps[..] {
        return None;
    }
    let new_sps_len = sets.len();
    for unit in of_type(NAL_PPS) {
        sets.put_slice(&START_CODE);
        sets.put_slice(unit);
    }
    if sets.len() == new_sps_len {
        sets.put_slice(params.get(sps_len..).unwrap_or_default());
    }
    Some((sets.freeze(), new_sps_len))
}
