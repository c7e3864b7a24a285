//! A bounds check on the RTMP chunk stream, run on every byte before `rml_rtmp` sees it.
//!
//! `rml_rtmp`'s chunk deserializer accepts any `SetChunkSize` (up to 2^31-1) and reserves an
//! announced message's whole length (up to 16 MiB) as soon as its first chunk header arrives,
//! so one unauthenticated peer can make the server hold megabytes by trickling bytes.
//! [`ChunkGuard`] follows the same chunk framing (Adobe RTMP specification 1.0 §5.3.1: basic
//! header, message header types 0-3, extended timestamp) without buffering payloads, and
//! refuses, before the deserializer is fed:
//!
//! - a `SetChunkSize` (§5.4.1) outside `1..=max_chunk_size`;
//! - a message whose announced length exceeds the current message limit (small until the
//!   publish is authorized, larger afterwards: [`ChunkGuard::set_max_message_bytes`]);
//! - chunks of two messages interleaved (the deserializer keeps one partial message, so such
//!   a stream would be corrupted or panic it), a continuation header on a chunk stream that
//!   never sent a full one, and more than [`MAX_CHUNK_STREAMS`] chunk stream ids.
//!
//! Its own state is a few bytes per chunk stream, whatever the peer sends.

use thiserror::Error;

/// Most distinct chunk stream ids a peer may use (publishers use fewer than ten).
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Message type id of `SetChunkSize` (§5.4.1).
const SET_CHUNK_SIZE: u8 = 1;
/// The initial chunk size of every RTMP peer, bytes (§5.4.1).
const INITIAL_CHUNK_SIZE: u32 = 128;
/// A 24-bit timestamp field of this value announces a 4-byte extended timestamp (§5.3.1.3).
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Longest chunk header: 3-byte basic header, 11-byte type 0 message header, 4-byte extended
/// timestamp.
const MAX_HEADER: usize = 18;

/// Chunk-layer limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest chunk size a peer may announce with `SetChunkSize`, bytes.
    pub max_chunk_size: u32,
    /// Largest message a peer may announce, bytes (RTMP allows up to 2^24-1).
    pub max_message_bytes: u32,
}

/// Why a chunk stream was refused. Fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GuardError {
    /// `SetChunkSize` outside `1..=limit`.
    #[error("peer chunk size {size} bytes outside 1..={limit}")]
    ChunkSize {
        /// Announced size, bytes.
        size: u32,
        /// Configured maximum, bytes.
        limit: u32,
    },
    /// A message longer than the current limit.
    #[error("message type {type_id} of {length} bytes exceeds the limit of {limit} bytes")]
    MessageTooLong {
        /// Message type id.
        type_id: u8,
        /// Announced length, bytes.
        length: u32,
        /// Current limit, bytes.
        limit: u32,
    },
    /// A chunk of another message arrived before the current message was complete.
    #[error("chunk stream {0} interleaved into an unfinished message")]
    Interleaved(u32),
    /// A type 1-3 header on a chunk stream without an earlier type 0 header.
    #[error("chunk stream {0} continues a header it never sent")]
    NoPreviousHeader(u32),
    /// More than [`MAX_CHUNK_STREAMS`] chunk stream ids.
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    /// A type 1-3 header's extended timestamp delta below `0xFFFFFF` (it must only carry
    /// deltas that do not fit 24 bits, §5.3.1.3).
    #[error("chunk stream {0} sent an extended timestamp delta below 0xFFFFFF")]
    ExtendedTimestamp(u32),
}

/// The last header seen on one chunk stream, as later header types inherit it.
#[derive(Debug, Clone, Copy)]
struct StreamHeader {
    csid: u32,
    length: u32,
    type_id: u8,
    timestamp_field: u32,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Header,
    Payload { left: u32 },
}

/// Follows one peer's chunk stream; see the module docs.
#[derive(Debug)]
pub struct ChunkGuard {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: Vec<StreamHeader>,
    stage: Stage,
    header: [u8; MAX_HEADER],
    have: usize,
    /// The message being received: its header and the payload bytes seen so far.
    current: Option<(StreamHeader, u32)>,
    /// First payload bytes of a `SetChunkSize` message.
    chunk_size_bytes: [u8; 4],
}

impl ChunkGuard {
    /// A guard for a new connection (peer chunk size 128 bytes).
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: Vec::new(),
            stage: Stage::Header,
            header: [0; MAX_HEADER],
            have: 0,
            current: None,
            chunk_size_bytes: [0; 4],
        }
    }

    /// Changes the message length limit, e.g. once the publish is authorized.
    pub fn set_max_message_bytes(&mut self, bytes: u32) {
        self.limits.max_message_bytes = bytes;
    }

    /// The peer's current chunk size, bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Checks the next bytes of the chunk stream (after the handshake).
    ///
    /// # Errors
    /// [`GuardError`]; the connection must be closed without feeding these bytes on.
    pub fn inspect(&mut self, mut input: &[u8]) -> Result<(), GuardError> {
        while !input.is_empty() {
            match self.stage {
                Stage::Header => {
                    let need = self.header_len()?;
                    let take = (need - self.have).min(input.len());
                    self.header[self.have..self.have + take].copy_from_slice(&input[..take]);
                    self.have += take;
                    input = &input[take..];
                    if self.have == self.header_len()? {
                        self.start_chunk()?;
                    }
                }
                Stage::Payload { left } => {
                    let take = (left as usize).min(input.len());
                    self.capture(&input[..take]);
                    input = &input[take..];
                    self.advance(take as u32)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes of the chunk header given the bytes collected so far (grows as they arrive).
    fn header_len(&self) -> Result<usize, GuardError> {
        if self.have == 0 {
            return Ok(1);
        }
        let basic = basic_header_len(self.header[0]);
        if self.have < basic {
            return Ok(basic);
        }
        let format = self.header[0] >> 6;
        let base = basic + message_header_len(format);
        if self.have < base {
            return Ok(base);
        }
        let timestamp_field = if format == 3 {
            self.previous(self.csid())?.timestamp_field
        } else {
            u24(&self.header[basic..])
        };
        Ok(if timestamp_field >= EXTENDED_TIMESTAMP { base + 4 } else { base })
    }

    fn csid(&self) -> u32 {
        match self.header[0] & 0x3F {
            0 => u32::from(self.header[1]) + 64,
            1 => u32::from(self.header[2]) * 256 + u32::from(self.header[1]) + 64,
            n => u32::from(n),
        }
    }

    fn previous(&self, csid: u32) -> Result<StreamHeader, GuardError> {
        self.streams
            .iter()
            .find(|s| s.csid == csid)
            .copied()
            .ok_or(GuardError::NoPreviousHeader(csid))
    }

    /// A complete chunk header: derive the message it belongs to and check it.
    fn start_chunk(&mut self) -> Result<(), GuardError> {
        let csid = self.csid();
        let basic = basic_header_len(self.header[0]);
        let fields = &self.header[basic..];
        let header = match self.header[0] >> 6 {
            0 => StreamHeader {
                csid,
                length: u24(&fields[3..]),
                type_id: fields[6],
                timestamp_field: u24(fields),
            },
            1 => StreamHeader {
                length: u24(&fields[3..]),
                type_id: fields[6],
                timestamp_field: u24(fields),
                ..self.previous(csid)?
            },
            2 => StreamHeader { timestamp_field: u24(fields), ..self.previous(csid)? },
            _ => self.previous(csid)?,
        };
        let format = self.header[0] >> 6;
        if format != 0 && self.current.is_none() && self.have > basic + message_header_len(format) {
            // rml_rtmp subtracts 0xFFFFFF from a new message's extended delta.
            let at = self.have - 4;
            let extended = u32::from_be_bytes([
                self.header[at],
                self.header[at + 1],
                self.header[at + 2],
                self.header[at + 3],
            ]);
            if extended < EXTENDED_TIMESTAMP {
                return Err(GuardError::ExtendedTimestamp(csid));
            }
        }
        self.have = 0;
        self.remember(header)?;
        let done = match self.current {
            Some((current, done)) => {
                if current.csid != csid || self.header[0] >> 6 != 3 {
                    return Err(GuardError::Interleaved(csid));
                }
                done
            }
            None => {
                if header.length > self.limits.max_message_bytes {
                    return Err(GuardError::MessageTooLong {
                        type_id: header.type_id,
                        length: header.length,
                        limit: self.limits.max_message_bytes,
                    });
                }
                self.current = Some((header, 0));
                0
            }
        };
        // As rml_rtmp reads it: a message that fits one chunk comes whole.
        let left = if header.length > self.chunk_size {
            (header.length - done).min(self.chunk_size)
        } else {
            header.length - done
        };
        self.stage = Stage::Payload { left };
        self.advance(0)
    }

    fn remember(&mut self, header: StreamHeader) -> Result<(), GuardError> {
        if let Some(slot) = self.streams.iter_mut().find(|s| s.csid == header.csid) {
            *slot = header;
        } else if self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(GuardError::TooManyChunkStreams);
        } else {
            self.streams.push(header);
        }
        Ok(())
    }

    /// Keeps the first 4 payload bytes of a `SetChunkSize` message.
    fn capture(&mut self, bytes: &[u8]) {
        if let Some((header, done)) = self.current {
            if header.type_id == SET_CHUNK_SIZE {
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = self.chunk_size_bytes.get_mut(done as usize + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }

    /// `n` payload bytes of the current chunk were seen.
    fn advance(&mut self, n: u32) -> Result<(), GuardError> {
        let Stage::Payload { left } = self.stage else { return Ok(()) };
        let left = left - n;
        let Some((header, done)) = self.current.as_mut() else { return Ok(()) };
        *done += n;
        if left > 0 {
            self.stage = Stage::Payload { left };
            return Ok(());
        }
        self.stage = Stage::Header;
        if *done < header.length {
            return Ok(());
        }
        let header = *header;
        self.current = None;
        if header.type_id == SET_CHUNK_SIZE && header.length >= 4 {
            // The top bit is reserved (§5.4.1).
            let size = u32::from_be_bytes(self.chunk_size_bytes) & 0x7FFF_FFFF;
            if size == 0 || size > self.limits.max_chunk_size {
                return Err(GuardError::ChunkSize { size, limit: self.limits.max_chunk_size });
            }
            self.chunk_size = size;
        }
        Ok(())
    }
}

/// Length of a basic header from its first byte: 1, or 2/3 for chunk stream ids 64 and up
/// (§5.3.1.1).
fn basic_header_len(first: u8) -> usize {
    match first & 0x3F {
        0 => 2,
        1 => 3,
        _ => 1,
    }
}

/// Length of a message header of `format` 0-3 (§5.3.1.2).
fn message_header_len(format: u8) -> usize {
    [11, 7, 3, 0][usize::from(format & 3)]
}

fn u24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::time::RtmpTimestamp;

    const LIMITS: ChunkLimits = ChunkLimits { max_chunk_size: 65_536, max_message_bytes: 1 << 20 };

    fn payload(type_id: u8, ts: u32, len: usize) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(ts),
            message_stream_id: 1,
            type_id,
            data: Bytes::from(vec![0xAB; len]),
        }
    }

    /// What rml_rtmp's own serializer writes: the guard must follow it byte for byte.
    fn wire(serializer: &mut ChunkSerializer, message: &MessagePayload) -> Vec<u8> {
        serializer.serialize(message, false, false).unwrap().bytes
    }

    #[test]
    fn follows_real_chunking_across_chunk_size_changes_and_extended_timestamps() {
        let mut ser = ChunkSerializer::new();
        let mut bytes = Vec::new();
        bytes.extend(wire(&mut ser, &payload(9, 0, 5000)));
        let set = RtmpMessage::SetChunkSize { size: 4096 }
            .into_message_payload(RtmpTimestamp::new(0), 0)
            .unwrap();
        bytes.extend(wire(&mut ser, &set));
        ser.set_max_chunk_size(4096, RtmpTimestamp::new(0)).unwrap();
        for i in 0..20u32 {
            bytes.extend(wire(&mut ser, &payload(9, 0x00FF_FFF0 + i * 40, 10_000 + i as usize)));
            bytes.extend(wire(&mut ser, &payload(8, 0x00FF_FFF0 + i * 40, 300)));
        }
        // Any split of the input gives the same verdict.
        for step in [1, 7, 128, 4096, bytes.len()] {
            let mut guard = ChunkGuard::new(LIMITS);
            for piece in bytes.chunks(step) {
                guard.inspect(piece).unwrap();
            }
            assert_eq!(guard.chunk_size(), 4096);
            assert!(matches!(guard.stage, Stage::Header) && guard.current.is_none());
        }
    }

    #[test]
    fn refuses_huge_chunk_size_and_oversized_messages() {
        let mut ser = ChunkSerializer::new();
        let set = RtmpMessage::SetChunkSize { size: 0x7FFF_FFFF }
            .into_message_payload(RtmpTimestamp::new(0), 0)
            .unwrap();
        let mut guard = ChunkGuard::new(LIMITS);
        assert_eq!(
            guard.inspect(&wire(&mut ser, &set)),
            Err(GuardError::ChunkSize { size: 0x7FFF_FFFF, limit: 65_536 })
        );

        // A 16 MiB announcement is refused on its header, before any payload arrives.
        let mut guard = ChunkGuard::new(ChunkLimits { max_message_bytes: 16 * 1024, ..LIMITS });
        let header = [0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
        assert_eq!(
            guard.inspect(&header),
            Err(GuardError::MessageTooLong { type_id: 9, length: 0xFF_FFFF, limit: 16 * 1024 })
        );
    }

    #[test]
    fn refuses_interleaving_and_orphan_continuations() {
        let mut guard = ChunkGuard::new(LIMITS);
        // Type 0 header on csid 6, a 300-byte message: first 128-byte chunk, then a new
        // type 0 message on csid 4 before the rest.
        let mut bytes = vec![0x06, 0, 0, 0, 0, 1, 0x2C, 9, 1, 0, 0, 0];
        bytes.extend([0; 128]);
        bytes.extend([0x04, 0, 0, 0, 0, 0, 4, 20, 0, 0, 0, 0]);
        assert_eq!(guard.inspect(&bytes), Err(GuardError::Interleaved(4)));
        let mut guard = ChunkGuard::new(LIMITS);
        assert_eq!(guard.inspect(&[0xC5]), Err(GuardError::NoPreviousHeader(5)));
        // A type 2 header announcing an extended delta, then one below 0xFFFFFF.
        let mut guard = ChunkGuard::new(LIMITS);
        let mut bytes = vec![0x06, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0];
        bytes.extend([0x86, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1]);
        assert_eq!(guard.inspect(&bytes), Err(GuardError::ExtendedTimestamp(6)));
    }

    proptest::proptest! {
        /// Whatever follows a valid opening, the guard never panics, keeps at most
        /// MAX_CHUNK_STREAMS headers, and what it lets through never panics rml_rtmp's
        /// session nor makes its deserializer hold more than the limits allow.
        #[test]
        fn session_input_never_panics_and_stays_bounded(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            split in 1usize..512,
        ) {
            use rml_rtmp::sessions::{ServerSession, ServerSessionConfig};
            let mut ser = ChunkSerializer::new();
            let mut bytes = wire(&mut ser, &payload(9, 0, 300));
            bytes.extend(tail);
            let limits = ChunkLimits { max_chunk_size: 4096, max_message_bytes: 16 * 1024 };
            let mut guard = ChunkGuard::new(limits);
            let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
            for piece in bytes.chunks(split) {
                if guard.inspect(piece).is_err() {
                    break;
                }
                proptest::prop_assert!(guard.streams.len() <= MAX_CHUNK_STREAMS);
                proptest::prop_assert!(guard.chunk_size <= limits.max_chunk_size);
                if session.handle_input(piece).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn bounds_chunk_stream_ids() {
        let mut guard = ChunkGuard::new(LIMITS);
        let mut bytes = Vec::new();
        for csid in 0..=MAX_CHUNK_STREAMS as u8 {
            bytes.extend([0x00, csid, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0]);
        }
        assert_eq!(guard.inspect(&bytes), Err(GuardError::TooManyChunkStreams));
    }
}
