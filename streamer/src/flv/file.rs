//! FLV files (FLV specification v10.1 §E.2-§E.4.1): the header and a stream of tags.

use super::FlvError;

/// FLV tag type of audio (AUDIODATA body).
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video (VIDEODATA body).
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (SCRIPTDATA body, e.g. `onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

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
impl<R> FlvFileReader<R> {
    /// Bytes held by the reused tag buffer.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.body.capacity()
    }
}
