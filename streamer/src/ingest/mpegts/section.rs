//! PSI section reassembly on one PID (ISO/IEC 13818-1 §2.4.4.1–§2.4.4.2): the
//! `pointer_field` of a packet with `payload_unit_start_indicator`, sections spanning packets
//! (their 3-byte header included), several sections in one packet, stuffing (0xFF) after the
//! last, continuity checks (§2.4.3.3), and the CRC_32 (Annex A, `mpeg2ts-reader`'s
//! [`sum32`](mpeg2ts_reader::mpegts_crc::sum32)).
//!
//! This is ours rather than `mpeg2ts-reader`'s `psi::SectionPacketConsumer` because that one
//! refuses a section whose 8 header bytes straddle two packets, reads only the first section
//! starting in a packet, does not look at continuity, and reports what it refuses only
//! through the `log` crate, so refused sections could not be counted.

use super::{Header, PACKET_SIZE};
use mpeg2ts_reader::mpegts_crc::sum32;
use std::fmt;

/// Largest section, bytes: the 3-byte header and a `section_length` of at most 1021
/// (§2.4.4.4, §2.4.4.9: its first two bits are '00').
pub const MAX_SECTION: usize = 3 + 1021;
/// Smallest section with the long syntax PAT and PMT use: header, 5 bytes of
/// `transport_stream_id`/`program_number` … `last_section_number`, CRC_32.
pub const MIN_SECTION: usize = 3 + 5 + 4;
/// `table_id` 0xFF: stuffing up to the end of the packet (§2.4.4.1).
const STUFFING: u8 = 0xFF;

/// A section that was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionError {
    /// CRC_32 mismatch (§2.4.4.4, Annex A).
    Crc,
    /// `section_length` over 1021 bytes.
    TooLong(usize),
    /// Shorter than [`MIN_SECTION`], or `section_syntax_indicator` not set.
    Short(usize),
    /// Cut off: a packet lost (continuity gap, transport error) or the next section started
    /// before it was complete.
    Truncated,
    /// A `pointer_field` past the end of the packet.
    Pointer(usize),
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Crc => f.write_str("CRC_32 mismatch"),
            Self::TooLong(n) => write!(f, "section_length {n} over 1021"),
            Self::Short(n) => write!(f, "{n}-byte section without the long section syntax"),
            Self::Truncated => f.write_str("section cut off (packet lost)"),
            Self::Pointer(n) => write!(f, "pointer_field {n} past the packet's end"),
        }
    }
}

/// Reassembly state of one PID. Memory: at most [`MAX_SECTION`] bytes.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The section being assembled (header first), when `open`.
    buf: Vec<u8>,
    open: bool,
    continuity: Option<u8>,
}

impl Assembler {
    /// One packet of the PID. Calls `each` with every section it completes (`Ok`, whole:
    /// header to CRC_32, the CRC checked) or drops (`Err`), in order; stops at the first error
    /// `each` returns.
    pub fn packet<E>(
        &mut self,
        header: &Header,
        p: &[u8; PACKET_SIZE],
        mut each: impl FnMut(Result<&[u8], SectionError>) -> Result<(), E>,
    ) -> Result<(), E> {
        if header.error {
            return self.drop_open(&mut each);
        }
        let Some(offset) = header.payload else {
            return Ok(());
        };
        if let Some(last) = self.continuity {
            if header.continuity == last && !header.discontinuity {
                return Ok(()); // a duplicate packet
            }
            if header.continuity != (last + 1) & 0x0F && !header.discontinuity {
                self.drop_open(&mut each)?;
            }
        }
        self.continuity = Some(header.continuity);
        let mut data = &p[offset..];
        if !header.start {
            // The rest of a packet after a section ends is stuffing: sections start only in
            // packets with payload_unit_start_indicator.
            if self.open {
                self.fill(data, &mut each)?;
            }
            return Ok(());
        }
        let pointer = usize::from(data[0]);
        data = &data[1..];
        if pointer > data.len() {
            self.open = false;
            return each(Err(SectionError::Pointer(pointer)));
        }
        let (tail, mut data) = data.split_at(pointer);
        if self.open {
            self.fill(tail, &mut each)?;
            self.drop_open(&mut each)?;
        }
        while data.first().is_some_and(|&b| b != STUFFING) {
            self.open = true;
            self.buf.clear();
            let used = self.fill(data, &mut each)?;
            if self.open {
                break; // continues in the next packet
            }
            data = &data[used..];
        }
        Ok(())
    }

    /// Drops the section being assembled, if any, as truncated.
    fn drop_open<E>(
        &mut self,
        each: &mut impl FnMut(Result<&[u8], SectionError>) -> Result<(), E>,
    ) -> Result<(), E> {
        if std::mem::replace(&mut self.open, false) {
            self.buf.clear();
            return each(Err(SectionError::Truncated));
        }
        Ok(())
    }

    /// Appends the start of `data` to the open section; returns the bytes used (all of them
    /// when the section is dropped). Completes the section when it is all here.
    fn fill<E>(
        &mut self,
        data: &[u8],
        each: &mut impl FnMut(Result<&[u8], SectionError>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut used = 0;
        if self.buf.len() < 3 {
            used = (3 - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..used]);
            if self.buf.len() < 3 {
                return Ok(used);
            }
        }
        let total = 3 + (usize::from(self.buf[1] & 0x0F) << 8 | usize::from(self.buf[2]));
        let error = if total > MAX_SECTION {
            Some(SectionError::TooLong(total - 3))
        } else if total < MIN_SECTION || self.buf[1] & 0x80 == 0 {
            Some(SectionError::Short(total))
        } else {
            None
        };
        if let Some(error) = error {
            self.open = false;
            self.buf.clear();
            each(Err(error))?;
            return Ok(data.len());
        }
        let n = (total - self.buf.len()).min(data.len() - used);
        self.buf.extend_from_slice(&data[used..used + n]);
        used += n;
        if self.buf.len() == total {
            self.open = false;
            let section =
                if sum32(&self.buf) == 0 { Ok(&self.buf[..]) } else { Err(SectionError::Crc) };
            let result = each(section);
            self.buf.clear();
            result?;
        }
        Ok(used)
    }
}
