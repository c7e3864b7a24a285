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

/// The NAL units of an Annex B byte stream, without their start codes (3 or 4 bytes) and
/// trailing zero bytes; bytes before the first start code and empty units are skipped.
///
/// An iterator over slices of the input: nothing is allocated per unit, so a PES packet of
/// millions of tiny NAL units costs no memory beyond its own bytes. One pass, linear in the
/// input (each byte is looked at a bounded number of times).
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    /// Where the search for the next start code resumes.
    at: usize,
    /// Start of the unit being delimited (just after its start code).
    start: Option<usize>,
}

/// The NAL units of `data` (see [`NalUnits`]).
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits { data, at: 0, start: None }
}

impl<'a> NalUnits<'a> {
    /// Offset of the next `00 00 01` at or after `self.at`.
    fn next_start_code(&self) -> Option<usize> {
        let data = self.data;
        let mut i = self.at;
        while i + 3 <= data.len() {
            if data[i + 2] > 1 {
                // No start code can begin at i, i + 1 or i + 2.
                i += 3;
            } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                return Some(i);
            } else {
                i += 1;
            }
        }
        None
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let found = self.next_start_code();
            let unit = match (self.start, found) {
                (None, None) => {
                    self.at = self.data.len();
                    return None;
                }
                (Some(s), None) => {
                    self.at = self.data.len();
                    self.start = None;
                    &self.data[s..]
                }
                (start, Some(at)) => {
                    self.at = at + 3;
                    self.start = Some(at + 3);
                    match start {
                        Some(s) => &self.data[s..at],
                        None => continue,
                    }
                }
            };
            let unit = trim_trailing_zeros(unit);
            if !unit.is_empty() {
                return Some(unit);
            }
        }
    }
}

/// `unit` without its trailing zero bytes (`trailing_zero_8bits`).
fn trim_trailing_zeros(mut unit: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = unit {
        unit = rest;
    }
    unit
}

/// The NAL units of one H.264 access unit (one PES packet), AUDs removed. Holds only the
/// payload and three flags; every method walks the payload again ([`NalUnits`]), so the
/// cost is linear in its bytes whatever the number of units.
#[derive(Debug)]
pub struct VideoAu<'a> {
    payload: &'a [u8],
    /// It holds an IDR slice (NAL unit type 5).
    pub idr: bool,
    has_sps: bool,
    has_pps: bool,
}

impl<'a> VideoAu<'a> {
    /// Parses the Annex B payload of a PES packet.
    pub fn parse(payload: &'a [u8]) -> Self {
        let mut au = Self { payload, idr: false, has_sps: false, has_pps: false };
        for t in au.units().filter_map(nal_type) {
            au.idr |= t == NAL_IDR;
            au.has_sps |= t == NAL_SPS;
            au.has_pps |= t == NAL_PPS;
        }
        au
    }

    /// Its NAL units, AUDs skipped.
    fn units(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        nal_units(self.payload).filter(|u| nal_type(u) != Some(NAL_AUD))
    }

    /// For an IDR carrying both SPS and PPS: those parameter sets in Annex B form (SPS
    /// first), the codec configuration the stream declares in-band; `Err(bytes)` when they
    /// would take more than `limit` bytes (nothing is copied then). `None` for any other
    /// access unit.
    pub fn parameter_sets(&self, limit: usize) -> Option<Result<Bytes, usize>> {
        if !(self.idr && self.has_sps && self.has_pps) {
            return None;
        }
        let is_set = |u: &&[u8]| matches!(nal_type(u), Some(NAL_SPS | NAL_PPS));
        let len: usize = self.units().filter(is_set).map(|u| START_CODE.len() + u.len()).sum();
        if len > limit {
            return Some(Err(len));
        }
        let mut sets = BytesMut::with_capacity(len);
        for t in [NAL_SPS, NAL_PPS] {
            for unit in self.units().filter(|u| nal_type(u) == Some(t)) {
                sets.put_slice(&START_CODE);
                sets.put_slice(unit);
            }
        }
        Some(Ok(sets.freeze()))
    }

    /// The access unit in the frame contract's form: AUD, then `params` (SPS/PPS) if this is
    /// an IDR without its own SPS, then every NAL unit behind a 4-byte start code. `None`
    /// when the PES held no NAL unit besides AUDs. At most 5/4 of the payload plus `params`
    /// (a 3-byte start code becomes 4 bytes), allocated once.
    pub fn annex_b(&self, params: &Bytes) -> Option<Bytes> {
        let payload: usize = self.units().map(|u| u.len() + START_CODE.len()).sum();
        if payload == 0 {
            return None;
        }
        let insert = self.idr && !self.has_sps;
        let mut out =
            BytesMut::with_capacity(AUD.len() + payload + if insert { params.len() } else { 0 });
        out.put_slice(&AUD);
        if insert {
            out.put_slice(params);
        }
        for unit in self.units() {
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

/// The ADTS frames of a PES payload (ISO/IEC 14496-3 §1.A.2.2: 12-bit syncword 0xFFF,
/// layer 0, 13-bit `frame_length` counting the header), in order, up to the first byte that
/// is not a valid frame header or a frame running past the end (a frame split across PES
/// packets is dropped). An iterator: the caller decides how many frames it takes, nothing is
/// allocated per frame.
#[derive(Debug, Clone)]
pub struct AdtsFrames<'a> {
    data: &'a [u8],
    at: usize,
}

/// The ADTS frames of `data` (see [`AdtsFrames`]).
pub fn adts_frames(data: &[u8]) -> AdtsFrames<'_> {
    AdtsFrames { data, at: 0 }
}

impl AdtsFrames<'_> {
    /// Bytes from the end of the last frame returned to the end of the payload: once the
    /// iterator returned `None`, the bytes that could not be used.
    pub fn rest(&self) -> usize {
        self.data.len() - self.at
    }
}

impl Iterator for AdtsFrames<'_> {
    type Item = AdtsFrame;

    fn next(&mut self) -> Option<AdtsFrame> {
        let at = self.at;
        let h = self.data.get(at..at + 7)?;
        if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
            return None;
        }
        let header_len = if h[1] & 0x01 == 1 { 7 } else { 9 };
        let sampling_index = (h[2] >> 2) & 0x0F;
        let len = usize::from(h[3] & 0x03) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
        let sample_rate = *SAMPLE_RATES.get(usize::from(sampling_index))?;
        if len <= header_len || at + len > self.data.len() {
            return None;
        }
        let config = AudioConfig {
            profile: h[2] >> 6,
            sampling_index,
            channels: (h[2] & 0x01) << 2 | h[3] >> 6,
        };
        let samples = AAC_BLOCK_SAMPLES * (u64::from(h[6] & 0x03) + 1);
        self.at += len;
        Some(AdtsFrame { range: at..at + len, config, sample_rate, samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::adts_header;

    #[test]
    fn splits_annex_b_with_3_and_4_byte_start_codes() {
        let data =
            [0xAA, 0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x65, 0, 0, 3, 1, 0];
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(units, vec![&[0x09, 0xF0][..], &[0x67, 1, 2], &[0x65, 0, 0, 3, 1]]);
        assert_eq!(nal_units(&[0, 0, 0, 0]).count(), 0);
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1, 0, 0, 1]).count(), 0, "empty units");
    }

    #[test]
    fn a_million_tiny_nal_units_cost_their_bytes_only() {
        // 4 MiB of 1-byte non-IDR slices behind 3-byte start codes: each becomes a 4-byte
        // start code and its byte, in one buffer of exactly that size.
        let units = 1 << 20;
        let payload: Vec<u8> = [0, 0, 1, 0x41].repeat(units);
        let au = VideoAu::parse(&payload);
        assert!(!au.idr);
        assert_eq!(au.parameter_sets(4096), None);
        let out = au.annex_b(&Bytes::new()).unwrap();
        assert_eq!(out.len(), AUD.len() + 5 * units);
        assert_eq!(&out[AUD.len()..AUD.len() + 10], &[0, 0, 0, 1, 0x41, 0, 0, 0, 1, 0x41]);
        // Parameter sets over the limit are measured, not copied.
        let mut idr = [0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2].repeat(1000);
        idr.extend_from_slice(&[0, 0, 1, 0x65, 5]);
        assert_eq!(VideoAu::parse(&idr).parameter_sets(4096), Some(Err(12_000)));
    }

    #[test]
    fn idr_without_parameter_sets_gets_them_and_auds_are_replaced() {
        let params = Bytes::from_static(&[0, 0, 0, 1, 0x67, 7, 0, 0, 0, 1, 0x68, 8]);
        let au = VideoAu::parse(&[0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x06, 6, 0, 0, 1, 0x65, 5]);
        assert!(au.idr);
        assert_eq!(au.parameter_sets(4096), None);
        let out = au.annex_b(&params).unwrap();
        let mut want = AUD.to_vec();
        want.extend_from_slice(&params);
        want.extend_from_slice(&[0, 0, 0, 1, 0x06, 6, 0, 0, 0, 1, 0x65, 5]);
        assert_eq!(&out[..], &want[..]);
        // An IDR with SPS and PPS declares them and keeps them in place.
        let au = VideoAu::parse(&[0, 0, 1, 0x67, 9, 0, 0, 1, 0x68, 9, 0, 0, 1, 0x65, 5]);
        let sets = au.parameter_sets(4096).unwrap().unwrap();
        assert_eq!(&sets[..], &[0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 9]);
        assert_eq!(au.parameter_sets(11), Some(Err(12)));
        assert_eq!(au.annex_b(&params).unwrap().len(), AUD.len() + 3 * 6);
        // A non-IDR is left alone; a PES of only an AUD is no frame.
        let au = VideoAu::parse(&[0, 0, 1, 0x41, 1]);
        assert!(!au.idr);
        assert_eq!(au.annex_b(&params).unwrap().len(), AUD.len() + 6);
        assert!(VideoAu::parse(&AUD).annex_b(&params).is_none());
    }

    fn split(data: &[u8]) -> (Vec<AdtsFrame>, usize) {
        let mut frames = adts_frames(data);
        let list: Vec<AdtsFrame> = frames.by_ref().collect();
        (list, frames.rest())
    }

    #[test]
    fn splits_adts_frames_and_reads_their_configuration() {
        let cfg = AudioConfig { profile: 1, sampling_index: 3, channels: 2 };
        let mut data = Vec::new();
        for len in [10, 300] {
            data.extend_from_slice(&adts_header(cfg, len));
            data.extend(std::iter::repeat_n(0x21, len));
        }
        let (frames, rest) = split(&data);
        assert_eq!(rest, 0);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].range, 17..324);
        assert_eq!(
            (frames[0].config, frames[0].sample_rate, frames[0].samples),
            (cfg, 48_000, 1024)
        );
        // A frame running past the end, then garbage.
        let (frames, rest) = split(&data[..100]);
        assert_eq!((frames.len(), rest), (1, 83));
        assert_eq!(split(&[0x47; 20]), (vec![], 20));
    }
}
