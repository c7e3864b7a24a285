//! [`MediaEvent`]s to FLV tag bodies, the inverse of [`FlvDemuxer`](super::FlvDemuxer): what
//! an RTMP publisher (the relay, [`crate::relay`]) sends as audio/video messages.
//!
//! - Video (FLV spec v10.1 §E.4.3.1): frame type 1 (key) / 2 (inter), codec id 7,
//!   AVCPacketType 1, SI24 composition time `pts - dts` in milliseconds, then the access unit
//!   as 4-byte length-prefixed NAL units (AVCC, ISO/IEC 14496-15 §5.3.4.2) converted from our
//!   Annex B, access unit delimiters removed, in-band SPS/PPS kept. Sequence headers
//!   (AVCPacketType 0) carry an AVCDecoderConfigurationRecord (§5.2.4.1, `lengthSizeMinusOne`
//!   3, without the High-profile chroma/bit-depth extension, which decoders read from the
//!   SPS).
//! - Audio (§E.4.2.1): `0xAF` (AAC, 44 kHz, 16-bit, stereo: fixed for AAC), AACPacketType 1,
//!   the raw AAC frame (ADTS header stripped); sequence headers carry the 2-byte
//!   AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
//!
//! [`FlvMuxer`] keeps the state of one output stream: sequence headers before the first frame
//! and again whenever a configuration changes, timestamps in milliseconds from the stream's
//! first frame.

use super::config::START_CODE;
use super::{NAL_AUD, NAL_IDR, NAL_PPS, TAG_AUDIO, TAG_VIDEO};
use crate::flv::config::NAL_SPS;
use crate::media::{AudioConfig, Frame, MediaEvent, Track, Tracks};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// AUDIODATA first byte of AAC: sound format 10, rate 3 (44 kHz), 16-bit, stereo.
pub const AAC_TAG_BYTE: u8 = 0xAF;

/// A configuration that cannot be put into a sequence header, or a frame that cannot be
/// converted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MuxError {
    /// Parameter sets without an SPS (of at least 4 bytes) or without a PPS, or one over
    /// 65535 bytes.
    #[error("unusable H.264 parameter sets: {0}")]
    ParameterSets(&'static str),
    /// An audio frame that does not start with an ADTS header.
    #[error("audio frame is not ADTS")]
    NotAdts,
}

/// One FLV tag to send: its type, timestamp and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// [`TAG_VIDEO`] or [`TAG_AUDIO`].
    pub kind: u8,
    /// Milliseconds from the first frame of the stream (wraps at 2^32 as RTMP's do).
    pub timestamp_ms: u32,
    /// VIDEODATA or AUDIODATA body.
    pub body: Bytes,
}

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes), without start codes and
/// trailing zero bytes; empty units skipped.
fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts.iter().skip(1).map(|s| s - 3).chain([data.len()]).collect();
    starts.into_iter().zip(ends).filter_map(move |(s, e)| {
        let mut unit = &data[s..e];
        while let [rest @ .., 0] = unit {
            unit = rest;
        }
        (!unit.is_empty()).then_some(unit)
    })
}

fn nal_type(unit: &[u8]) -> u8 {
    unit.first().map_or(0, |b| b & 0x1F)
}

/// The VIDEODATA body of a sequence header built from Annex B `parameter_sets` (SPS then PPS,
/// as [`VideoConfig`](crate::media::VideoConfig) holds them).
///
/// # Errors
/// [`MuxError::ParameterSets`] without SPS or PPS, or with one over 65535 bytes.
pub fn avc_sequence_header(parameter_sets: &[u8]) -> Result<Bytes, MuxError> {
    let units: Vec<&[u8]> = nal_units(parameter_sets).collect();
    let sps: Vec<&[u8]> = units.iter().copied().filter(|u| nal_type(u) == NAL_SPS).collect();
    let pps: Vec<&[u8]> = units.iter().copied().filter(|u| nal_type(u) == NAL_PPS).collect();
    let first = sps.first().filter(|s| s.len() >= 4).ok_or(MuxError::ParameterSets("no SPS"))?;
    if pps.is_empty() {
        return Err(MuxError::ParameterSets("no PPS"));
    }
    if sps.len() > 31 || pps.len() > 255 {
        return Err(MuxError::ParameterSets("too many"));
    }
    let mut out = BytesMut::with_capacity(16 + parameter_sets.len());
    out.put_slice(&[0x17, 0, 0, 0, 0]);
    out.put_slice(&[1, first[1], first[2], first[3], 0xFF, 0xE0 | sps.len() as u8]);
    for (i, set) in sps.iter().chain(&pps).enumerate() {
        if i == sps.len() {
            out.put_u8(pps.len() as u8);
        }
        let len = u16::try_from(set.len()).map_err(|_| MuxError::ParameterSets("too large"))?;
        out.put_u16(len);
        out.put_slice(set);
    }
    Ok(out.freeze())
}

/// The 2-byte AudioSpecificConfig of `cfg`: object type `profile + 1`, sampling frequency
/// index, channel configuration.
pub fn audio_specific_config(cfg: AudioConfig) -> [u8; 2] {
    let object_type = cfg.profile + 1;
    [object_type << 3 | cfg.sampling_index >> 1, (cfg.sampling_index & 1) << 7 | cfg.channels << 3]
}

/// The AUDIODATA body of an AAC sequence header for `cfg`.
pub fn aac_sequence_header(cfg: AudioConfig) -> Bytes {
    let asc = audio_specific_config(cfg);
    Bytes::copy_from_slice(&[AAC_TAG_BYTE, 0, asc[0], asc[1]])
}

/// The VIDEODATA body of a coded frame: `key` frame type, `cts_ms` composition time
/// (clamped to SI24), the Annex B access unit `au` as AVCC without AUDs.
pub fn video_body(au: &[u8], key: bool, cts_ms: i64) -> Bytes {
    let cts = cts_ms.clamp(-(1 << 23), (1 << 23) - 1) as i32;
    let c = cts.to_be_bytes();
    let mut out = BytesMut::with_capacity(5 + au.len() + 8);
    out.put_slice(&[if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]]);
    for unit in nal_units(au).filter(|u| nal_type(u) != NAL_AUD) {
        out.put_u32(unit.len() as u32);
        out.put_slice(unit);
    }
    out.freeze()
}

/// The AUDIODATA body of an ADTS frame: its raw AAC payload behind `0xAF 0x01`.
///
/// # Errors
/// [`MuxError::NotAdts`] when `adts` does not start with a whole ADTS header.
pub fn audio_body(adts: &[u8]) -> Result<Bytes, MuxError> {
    if adts.len() < 7 || adts[0] != 0xFF || adts[1] & 0xF6 != 0xF0 {
        return Err(MuxError::NotAdts);
    }
    // protection_absent 0: a 16-bit CRC follows the 7 bytes.
    let header = if adts[1] & 0x01 == 0 { 9 } else { 7 };
    let frame_len =
        usize::from(adts[3] & 0x03) << 11 | usize::from(adts[4]) << 3 | usize::from(adts[5] >> 5);
    let end = frame_len.clamp(header, adts.len());
    let raw = adts.get(header..end).ok_or(MuxError::NotAdts)?;
    let mut out = BytesMut::with_capacity(2 + raw.len());
    out.put_slice(&[AAC_TAG_BYTE, 1]);
    out.put_slice(raw);
    Ok(out.freeze())
}

/// The in-band SPS and PPS of an Annex B access unit, as Annex B, if it has both.
fn inband_parameter_sets(au: &[u8]) -> Option<Bytes> {
    let mut sps = BytesMut::new();
    let mut pps = BytesMut::new();
    for unit in nal_units(au) {
        let into = match nal_type(unit) {
            NAL_SPS => &mut sps,
            NAL_PPS => &mut pps,
            NAL_IDR => break,
            _ => continue,
        };
        into.put_slice(&START_CODE);
        into.put_slice(unit);
    }
    if sps.is_empty() || pps.is_empty() {
        return None;
    }
    sps.put_slice(&pps);
    Some(sps.freeze())
}

/// Muxing state of one output stream (one RTMP connection).
#[derive(Debug, Default)]
pub struct FlvMuxer {
    /// DTS (90 kHz) of the first frame sent: timestamp 0.
    base: Option<u64>,
    tracks: Tracks,
    /// Parameter sets of the last AVC sequence header sent.
    sent_video: Option<Bytes>,
    /// Configuration of the last AAC sequence header sent.
    sent_audio: Option<AudioConfig>,
}

impl FlvMuxer {
    /// A muxer that has sent nothing: it starts at the first video IDR (the first frame if
    /// the tracks have no video), sequence headers first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Milliseconds of `dts` from the base, `None` for a frame before it.
    fn timestamp(&mut self, dts: u64) -> Option<(u32, u64)> {
        let base = *self.base.get_or_insert(dts);
        let rel = dts.checked_sub(base)?;
        Some(((rel / 90) as u32, rel / 90))
    }

    /// Appends the tags `event` makes to `out`: nothing for [`MediaEvent::Tracks`] (the new
    /// configuration is sent in front of the next frame that needs it: the next IDR for
    /// video) and for frames that cannot start the stream (video before the first IDR, audio
    /// before the first video IDR or older than it, frames of a track without
    /// configuration); otherwise the frame, after its sequence header if that is new.
    ///
    /// # Errors
    /// [`MuxError`] for unusable parameter sets or a non-ADTS audio frame; the muxer state is
    /// unchanged, the caller may go on with the next event.
    pub fn push(&mut self, event: &MediaEvent, out: &mut Vec<Tag>) -> Result<(), MuxError> {
        match event {
            MediaEvent::Tracks(tracks) => {
                self.tracks = tracks.clone();
                Ok(())
            }
            MediaEvent::Frame(frame) if frame.track == Track::Video => self.video(frame, out),
            MediaEvent::Frame(frame) => self.audio(frame, out),
        }
    }

    fn video(&mut self, frame: &Frame, out: &mut Vec<Tag>) -> Result<(), MuxError> {
        let mut header = None;
        if frame.idr {
            let configured = self.tracks.video.as_ref().map(|v| v.parameter_sets.clone());
            let Some(sets) = inband_parameter_sets(&frame.data).or(configured) else {
                return Ok(()); // no configuration at all
            };
            if self.sent_video.as_ref() != Some(&sets) {
                header = Some((avc_sequence_header(&sets)?, sets));
            }
        } else if self.sent_video.is_none() {
            return Ok(());
        }
        let Some((ts, rel_ms)) = self.timestamp(frame.dts) else {
            return Ok(());
        };
        if let Some((body, sets)) = header {
            out.push(Tag { kind: TAG_VIDEO, timestamp_ms: ts, body });
            self.sent_video = Some(sets);
        }
        let pts_ms = frame.pts.saturating_sub(self.base.unwrap_or(0)) / 90;
        let cts = pts_ms as i64 - rel_ms as i64;
        let body = video_body(&frame.data, frame.idr, cts);
        out.push(Tag { kind: TAG_VIDEO, timestamp_ms: ts, body });
        Ok(())
    }

    fn audio(&mut self, frame: &Frame, out: &mut Vec<Tag>) -> Result<(), MuxError> {
        let Some(cfg) = self.tracks.audio else {
            return Ok(());
        };
        if self.tracks.video.is_some() && self.sent_video.is_none() {
            return Ok(()); // a video stream starts at its first IDR
        }
        let body = audio_body(&frame.data)?;
        let Some((ts, _)) = self.timestamp(frame.dts) else {
            return Ok(());
        };
        if self.sent_audio != Some(cfg) {
            out.push(Tag { kind: TAG_AUDIO, timestamp_ms: ts, body: aac_sequence_header(cfg) });
            self.sent_audio = Some(cfg);
        }
        out.push(Tag { kind: TAG_AUDIO, timestamp_ms: ts, body });
        Ok(())
    }
}

#[cfg(test)]
#[path = "mux_tests.rs"]
mod tests;
