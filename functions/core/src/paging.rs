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

/// Decodes a cursor made by [`encode_cursor`] back to the `id` to start after; `None` for
/// anything this module did not issue.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(raw).ok()?;
    match text.strip_prefix(CURSOR_PREFIX) {
        Some(id) if !id.is_empty() => Some(id.to_owned()),
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
    }
}
