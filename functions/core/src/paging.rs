//! Listing pages and the opaque cursors that continue them (shared by every store).

use base64::Engine;

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// Items of this page, in table scan order.
    pub items: Vec<T>,
    /// Opaque cursor for the next page; `None` on the last page.
    pub next: Option<String>,
}

const CURSOR_PREFIX: &str = "c1:";

/// Encodes the last evaluated partition key `id` as an opaque base64url cursor.
pub fn encode_cursor(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

/// Longest cursor [`encode_cursor`] makes: base64 of the prefix and a 64-byte id.
pub const MAX_CURSOR_CHARS: usize = ((CURSOR_PREFIX.len() + 64) * 4).div_ceil(3);

/// Decodes a cursor made by [`encode_cursor`] back to the `id` to start after; `None` for
/// anything this module did not issue, checked strictly before any of it reaches DynamoDB:
/// at most [`MAX_CURSOR_CHARS`], canonical unpadded base64url, the `c1:` prefix and an id
/// that passes the id rule ([`crate::domain::is_valid_channel_id`], which channel, asset and
/// device ids all follow).
///
/// Cursors are not signed: the only thing a client can forge is a valid id to start the scan
/// after, which shows nothing it could not list anyway.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.is_empty() || cursor.len() > MAX_CURSOR_CHARS {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(raw).ok()?;
    match text.strip_prefix(CURSOR_PREFIX) {
        Some(id) if crate::domain::is_valid_channel_id(id) && encode_cursor(id) == cursor => {
            Some(id.to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects_garbage() {
        assert_eq!(decode_cursor(&encode_cursor("abc")).unwrap(), "abc");
        for bad in ["", "!!", "YWJj", "YzE6"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
        let longest = "a".repeat(64);
        assert_eq!(encode_cursor(&longest).len(), MAX_CURSOR_CHARS);
        assert_eq!(decode_cursor(&encode_cursor(&longest)).unwrap(), longest);
        // Forged: an id no item can have (too long, bad characters), non-canonical base64.
        for id in ["a".repeat(65), "a".repeat(5000), "a b".into(), "é".into()] {
            assert_eq!(decode_cursor(&encode_cursor(&id)), None, "{id}");
        }
        let padded = base64::engine::general_purpose::URL_SAFE.encode("c1:abcd");
        assert_eq!(decode_cursor(&padded), None);
    }
}
