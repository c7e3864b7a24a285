//! Elementary-stream payloads of PES packets to frame payloads: H.264 in Annex B byte-stream
//! format (ISO/IEC 14496-10 Annex B, NAL unit types of Table 7-1) and AAC in ADTS
//! (ISO/IEC 14496-3 §1.A.2). Framing constants are shared with [`crate::flv`].

use crate::flv::config::{NAL_SPS, START_CODE};
use crate::flv::{AUD, NAL_AUD, NAL_IDR, NAL_PPS};
use crate::media::AudioConfig;
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;

/// PCM samples per AAC raw data block (ISO/IEC 14496-3 §4.5.2.1, frameLengthFlag 0).
pub const AAC_BLOCK_SAMPLES: u64 = 1024;

/// Sampling frequencies of `sampling_frequency_index` 0..=12, Hz (ISO/IEC 14496-3 Table 1.18).
const SAMPLE_RATES: [u64; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

fn nal_type(unit: &[u8]) -> Option<u8> {
    unit.first().map(|b| b & 0x1F)
}

/// Splits an Annex B byte stream into NAL units without their start codes (3 or 4 bytes)
/// and trailing zero bytes; bytes before the first start code and empty units are skipped.
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            // No start code can begin at i, i + 1 or i + 2.
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                push_unit(&mut units, &data[s..i]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push_unit(&mut units, &data[s..]);
    }
    units
}

/// Adds `unit` without its trailing zero bytes (`trailing_zero_8bits`), unless empty.
fn push_unit<'a>(units: &mut Vec<&'a [u8]>, mut unit: &'a [u8]) {
    while let [rest @ .., 0] = unit {
        unit = rest;
    }
    if !unit.is_empty() {
        units.push(unit);
    }
}

/// The NAL units of one H.264 access unit (one PES packet), AUDs removed.
#[derive(Debug)]
pub struct VideoAu<'a> {
    units: Vec<&'a [u8]>,
    /// It holds an IDR slice (NAL unit type 5).
    pub idr: bool,
    has_sps: bool,
}

impl<'a> VideoAu<'a> {
    /// Parses the Annex B payload of a PES packet.
    pub fn parse(payload: &'a [u8]) -> Self {
        let mut units = nal_units(payload);
        units.retain(|u| nal_type(u) != Some(NAL_AUD));
        let has = |t: u8| units.iter().any(|u| nal_type(u) == Some(t));
        let (idr, has_sps) = (has(NAL_IDR), has(NAL_SPS));
        Self { units, idr, has_sps }
    }

    /// For an IDR carrying both SPS and PPS: those parameter sets in Annex B form (SPS
    /// first), the codec configuration the stream declares in-band.
    pub fn parameter_sets(&self) -> Option<Bytes> {
        if !self.idr {
            return None;
        }
        let mut sets = BytesMut::new();
        for t in [NAL_SPS, NAL_PPS] {
            let before = sets.len();
            for unit in self.units.iter().filter(|u| nal_type(u) == Some(t)) {
                sets.put_slice(&START_CODE);
                sets.put_slice(unit);
            }
            if sets.len() == before {
                return None;
            }
        }
        Some(sets.freeze())
    }

    /// The access unit in the frame contract's form: AUD, then `params` (SPS/PPS) if this is
    /// an IDR without its own SPS, then every NAL unit behind a 4-byte start code. `None`
    /// when the PES held no NAL unit besides AUDs.
    pub fn annex_b(&self, params: &Bytes) -> Option<Bytes> {
        if self.units.is_empty() {
            return None;
        }
        let insert = self.idr && !self.has_sps;
        let payload: usize = self.units.iter().map(|u| u.len() + START_CODE.len()).sum();
        let mut out =
            BytesMut::with_capacity(AUD.len() + payload + if insert { params.len() } else { 0 });
        out.put_slice(&AUD);
        if insert {
            out.put_slice(params);
        }
        for unit in &self.units {
            out.put_slice(&START_CODE);
            out.put_slice(unit);
        }
        Some(out.freeze())
    }
}

/// One ADTS frame found in a PES payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsFrame {
    /// Its bytes in the payload, header included.
    pub range: Range<usize>,
    /// The configuration its header declares.
    pub config: AudioConfig,
    /// Its sampling frequency, Hz.
    pub sample_rate: u64,
    /// PCM samples it decodes to: 1024 per raw data block.
    pub samples: u64,
}

/// Splits a PES payload into ADTS frames (ISO/IEC 14496-3 §1.A.2.2: 12-bit syncword 0xFFF,
/// layer 0, 13-bit `frame_length` counting the header). Returns the frames and the bytes
/// that could not be used: the payload from the first byte that is not a valid frame header
/// or a frame running past the end (a frame split across PES packets is dropped).
pub fn adts_frames(data: &[u8]) -> (Vec<AdtsFrame>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(h) = data.get(at..at + 7) {
        if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
            break;
        }
        let header_len = if h[1] & 0x01 == 1 { 7 } else { 9 };
        let sampling_index = (h[2] >> 2) & 0x0F;
        let len = usize::from(h[3] & 0x03) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
        let Some(&sample_rate) = SAMPLE_RATES.get(usize::from(sampling_index)) else {
            break;
        };
        if len <= header_len || at + len > data.len() {
            break;
        }
        let config = AudioConfig {
            profile: h[2] >> 6,
            sampling_index,
            channels: (h[2] & 0x01) << 2 | h[3] >> 6,
        };
        let samples = AAC_BLOCK_SAMPLES * (u64::from(h[6] & 0x03) + 1);
        frames.push(AdtsFrame { range: at..at + len, config, sample_rate, samples });
        at += len;
    }
    (frames, data.len() - at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::adts_header;

    #[test]
    fn splits_annex_b_with_3_and_4_byte_start_codes() {
        let data =
            [0xAA, 0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x65, 0, 0, 3, 1, 0];
        assert_eq!(nal_units(&data), vec![&[0x09, 0xF0][..], &[0x67, 1, 2], &[0x65, 0, 0, 3, 1]]);
        assert!(nal_units(&[0, 0, 0, 0]).is_empty());
        assert!(nal_units(&[]).is_empty());
    }

    #[test]
    fn idr_without_parameter_sets_gets_them_and_auds_are_replaced() {
        let params = Bytes::from_static(&[0, 0, 0, 1, 0x67, 7, 0, 0, 0, 1, 0x68, 8]);
        let au = VideoAu::parse(&[0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x06, 6, 0, 0, 1, 0x65, 5]);
        assert!(au.idr);
        assert_eq!(au.parameter_sets(), None);
        let out = au.annex_b(&params).unwrap();
        let mut want = AUD.to_vec();
        want.extend_from_slice(&params);
        want.extend_from_slice(&[0, 0, 0, 1, 0x06, 6, 0, 0, 0, 1, 0x65, 5]);
        assert_eq!(&out[..], &want[..]);
        // An IDR with SPS and PPS declares them and keeps them in place.
        let au = VideoAu::parse(&[0, 0, 1, 0x67, 9, 0, 0, 1, 0x68, 9, 0, 0, 1, 0x65, 5]);
        assert_eq!(&au.parameter_sets().unwrap()[..], &[0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 9]);
        assert_eq!(au.annex_b(&params).unwrap().len(), AUD.len() + 3 * 6);
        // A non-IDR is left alone; a PES of only an AUD is no frame.
        let au = VideoAu::parse(&[0, 0, 1, 0x41, 1]);
        assert!(!au.idr);
        assert_eq!(au.annex_b(&params).unwrap().len(), AUD.len() + 6);
        assert!(VideoAu::parse(&AUD).annex_b(&params).is_none());
    }

    #[test]
    fn splits_adts_frames_and_reads_their_configuration() {
        let cfg = AudioConfig { profile: 1, sampling_index: 3, channels: 2 };
        let mut data = Vec::new();
        for len in [10, 300] {
            data.extend_from_slice(&adts_header(cfg, len));
            data.extend(std::iter::repeat_n(0x21, len));
        }
        let (frames, rest) = adts_frames(&data);
        assert_eq!(rest, 0);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].range, 17..324);
        assert_eq!(
            (frames[0].config, frames[0].sample_rate, frames[0].samples),
            (cfg, 48_000, 1024)
        );
        // A frame running past the end, then garbage.
        let (frames, rest) = adts_frames(&data[..100]);
        assert_eq!((frames.len(), rest), (1, 83));
        assert_eq!(adts_frames(&[0x47; 20]), (vec![], 20));
    }
}
