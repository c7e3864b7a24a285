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

/// Streams tags out of an FLV file (FLV spec §E.2-§E.3). A tag that lies whole in the
/// reader's buffer is returned in place (no copy); one that straddles a refill is copied
/// into one reused body buffer.
#[derive(Debug)]
pub struct FlvFileReader<R> {
    inner: R,
    body: Vec<u8>,
    /// Bytes of `inner`'s buffer returned in place by the last call, consumed by the next.
    lent: usize,
}

/// Tag header length, bytes (§E.4.1).
const TAG_HEADER: usize = 11;
/// `PreviousTagSize` after every tag, bytes.
const PREVIOUS_TAG_SIZE: usize = 4;

impl<R: std::io::BufRead> FlvFileReader<R> {
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
        Ok(Self { inner, body: Vec::new(), lent: 0 })
    }

    /// The next tag, `Ok(None)` at a clean end of file.
    ///
    /// # Errors
    /// [`FlvError::Truncated`] when the file ends inside a tag.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag<'_>>, FlvError> {
        self.inner.consume(std::mem::take(&mut self.lent));
        let buffered = self.inner.fill_buf().map_err(|_| FlvError::Truncated("FLV tag header"))?;
        if buffered.is_empty() {
            return Ok(None);
        }
        if let Some((h, size)) = tag_header(buffered) {
            let whole = TAG_HEADER + size + PREVIOUS_TAG_SIZE;
            if buffered.len() >= whole {
                self.lent = whole;
                let body = &self.inner.fill_buf().unwrap_or_default()[TAG_HEADER..][..size];
                return Ok(Some(FlvTag { kind: h[0] & 0x1F, timestamp_ms: timestamp(&h), body }));
            }
        }
        self.copy_tag()
    }

    /// [`FlvFileReader::next_tag`] for a tag that straddles the end of the buffer.
    fn copy_tag(&mut self) -> Result<Option<FlvTag<'_>>, FlvError> {
        let mut h = [0u8; TAG_HEADER];
        self.inner.read_exact(&mut h).map_err(|_| FlvError::Truncated("FLV tag header"))?;
        let size = tag_size(&h);
        // Grow with the data actually read, not the 24-bit size a corrupt header claims.
        self.body.clear();
        let want = (size + PREVIOUS_TAG_SIZE) as u64;
        let got = std::io::Read::read_to_end(
            &mut std::io::Read::take(&mut self.inner, want),
            &mut self.body,
        )
        .map_err(|_| FlvError::Truncated("FLV tag body"))?;
        if (got as u64) < want {
            return Err(FlvError::Truncated("FLV tag body"));
        }
        Ok(Some(FlvTag {
            kind: h[0] & 0x1F,
            timestamp_ms: timestamp(&h),
            body: &self.body[..size],
        }))
    }
}

/// The tag header at the start of `bytes` and its body size, if `bytes` holds all of it.
fn tag_header(bytes: &[u8]) -> Option<([u8; TAG_HEADER], usize)> {
    let h: [u8; TAG_HEADER] = bytes.get(..TAG_HEADER)?.try_into().ok()?;
    Some((h, tag_size(&h)))
}

/// DataSize: 24 bits.
fn tag_size(h: &[u8; TAG_HEADER]) -> usize {
    (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3])
}

/// Timestamp (24 bits) and TimestampExtended (the upper 8 bits), milliseconds.
fn timestamp(h: &[u8; TAG_HEADER]) -> u32 {
    u32::from_be_bytes([h[7], h[4], h[5], h[6]])
}

#[cfg(test)]
impl<R> FlvFileReader<R> {
    /// Bytes held by the reused tag buffer.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.body.capacity()
    }
}
