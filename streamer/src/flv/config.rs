//! Codec configuration records carried by FLV sequence headers, and the framing they drive:
//! AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1), AudioSpecificConfig
//! (ISO/IEC 14496-3 §1.6.2.1) and the ADTS header built from it (§1.A.2).

use super::FlvError;
use crate::media::{AudioConfig, VideoConfig};
use bytes::{BufMut, BytesMut};

/// Annex B start code written before every NAL unit.
pub(crate) const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// NAL unit type of an SPS (ISO/IEC 14496-10 Table 7-1).
pub(crate) const NAL_SPS: u8 = 7;
/// Bytes of an ADTS header without CRC.
pub(crate) const ADTS_HEADER_LEN: usize = 7;

/// A bounds-checked cursor over a body; `what` names the structure in errors.
pub(super) struct Reader<'a> {
    pub(super) rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(rest: &'a [u8], what: &'static str) -> Self {
        Self { rest, what }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], FlvError> {
        if self.rest.len() < n {
            return Err(FlvError::Truncated(self.what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, FlvError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, FlvError> {
        let b = self.take(2)?;
        Ok(usize::from(b[0]) << 8 | usize::from(b[1]))
    }
}

/// A parsed AVCDecoderConfigurationRecord: the parameter sets in Annex B form and the size of
/// the NAL unit length fields of the frames that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// SPS and PPS NAL units, each behind a start code.
    pub video: VideoConfig,
    /// Bytes of each NAL unit length prefix in frames: 1, 2 or 4.
    pub nal_length_size: usize,
    /// Bytes at the start of `video.parameter_sets` taken by the SPS (the PPS follow).
    pub sps_len: usize,
}

/// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1). Bytes after the PPS
/// (the High-profile chroma/bit-depth extension) are ignored.
///
/// # Errors
/// [`FlvError::Truncated`] or [`FlvError::InvalidConfig`] for a record that cannot be used
/// (empty, wrong version, length size 3, no SPS or no PPS);
/// [`FlvError::ParameterSetsTooLarge`] when the SPS and PPS with their start codes exceed
/// `max_parameter_set_bytes` (checked before anything is copied).
pub fn parse_avc_config(
    record: &[u8],
    max_parameter_set_bytes: usize,
) -> Result<AvcConfig, FlvError> {
    let mut r = Reader::new(record, "AVCDecoderConfigurationRecord");
    let header = r.take(5)?;
    if header[0] != 1 {
        return Err(FlvError::InvalidConfig("AVCDecoderConfigurationRecord version"));
    }
    let nal_length_size = usize::from(header[4] & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(FlvError::InvalidConfig("NAL unit length size 3"));
    }
    let mut units: Vec<&[u8]> = Vec::new();
    let mut total = 0usize;
    let sps_count = r.u8()? & 0x1F;
    read_sets(&mut r, sps_count, &mut units, &mut total, max_parameter_set_bytes)?;
    let sps_len = total;
    let pps_count = r.u8()?;
    read_sets(&mut r, pps_count, &mut units, &mut total, max_parameter_set_bytes)?;
    if sps_count == 0 || pps_count == 0 {
        return Err(FlvError::InvalidConfig("AVCDecoderConfigurationRecord without SPS/PPS"));
    }
    let mut sets = BytesMut::with_capacity(total);
    for unit in units {
        sets.put_slice(&START_CODE);
        sets.put_slice(unit);
    }
    Ok(AvcConfig { video: VideoConfig { parameter_sets: sets.freeze() }, nal_length_size, sps_len })
}

/// Reads `count` length-prefixed parameter sets into `units`, adding their Annex B size
/// (with start code) to `total`, which may not exceed `limit`.
fn read_sets<'a>(
    r: &mut Reader<'a>,
    count: u8,
    units: &mut Vec<&'a [u8]>,
    total: &mut usize,
    limit: usize,
) -> Result<(), FlvError> {
    for _ in 0..count {
        let len = r.u16()?;
        let unit = r.take(len)?;
        *total += START_CODE.len() + unit.len();
        if *total > limit {
            return Err(FlvError::ParameterSetsTooLarge { bytes: *total, limit });
        }
        units.push(unit);
    }
    Ok(())
}

/// Parses the part of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) that ADTS carries:
/// audio object type 1..=4 (AAC Main/LC/SSR/LTP), or 5 / 29 (HE-AAC v1/v2, signalled as
/// AAC-LC in ADTS, the SBR/PS extension being implicit), a table sampling frequency index
/// (0..=12) and the channel configuration.
///
/// # Errors
/// [`FlvError::InvalidConfig`] for an empty or one-byte config, another object type, or an
/// explicit sampling frequency (index 15) that ADTS cannot express.
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioConfig, FlvError> {
    let [b0, b1, ..] = *asc else {
        return Err(FlvError::InvalidConfig("AudioSpecificConfig (shorter than 2 bytes)"));
    };
    let object_type = b0 >> 3;
    let sampling_index = (b0 & 0x07) << 1 | b1 >> 7;
    let channels = (b1 >> 3) & 0x0F;
    if !matches!(object_type, 1..=5 | 29) {
        return Err(FlvError::InvalidConfig("AudioSpecificConfig object type"));
    }
    if sampling_index > 12 {
        return Err(FlvError::InvalidConfig("AudioSpecificConfig sampling frequency"));
    }
    if channels > 7 {
        return Err(FlvError::InvalidConfig("AudioSpecificConfig channel configuration"));
    }
    let profile = if object_type > 4 { 1 } else { object_type - 1 };
    Ok(AudioConfig { profile, sampling_index, channels })
}

/// The 7-byte ADTS header (no CRC) of a raw AAC frame of `payload_len` bytes. The 13-bit
/// frame length saturates for payloads over 8184 bytes (not a valid AAC frame anyway).
pub fn adts_header(cfg: AudioConfig, payload_len: usize) -> [u8; ADTS_HEADER_LEN] {
    let len = (payload_len + ADTS_HEADER_LEN).min(0x1FFF);
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
