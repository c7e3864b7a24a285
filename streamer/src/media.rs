//! The stream model shared by every ingest protocol and the HLS segmenter.
//!
//! An ingest module (RTMP today) turns its protocol's messages into [`Frame`]s; the HLS
//! pipeline never sees protocol details.

use bytes::Bytes;

/// MPEG-TS system clock for PTS/DTS: 90 kHz (ISO/IEC 13818-1 §2.4.3.7).
pub const CLOCK_HZ: u64 = 90_000;

/// Elementary stream kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// H.264 (ISO/IEC 14496-10) access units in Annex B byte-stream format.
    Video,
    /// AAC frames, each with its 7-byte ADTS header (ISO/IEC 14496-3 §1.A.2).
    Audio,
}

/// One access unit ready to be muxed.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which elementary stream it belongs to.
    pub track: Track,
    /// Decode timestamp, 90 kHz ticks, monotonic per track (not wrapped at 33 bits).
    pub dts: u64,
    /// Presentation timestamp, 90 kHz ticks (>= `dts`).
    pub pts: u64,
    /// For video: the access unit holds an IDR picture (with SPS/PPS in front), so a segment
    /// may start here. Always `false` for audio.
    pub idr: bool,
    /// Payload: Annex B access unit (starting with an access unit delimiter) or ADTS frame.
    pub data: Bytes,
}
