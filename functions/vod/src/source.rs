//! Which S3 event records name a media upload: key decoding and filtering.
//!
//! S3 event notifications carry object keys URL-encoded the way HTML forms are
//! (`application/x-www-form-urlencoded`: a space is `+`, anything else outside the unreserved
//! set is `%XX` of its UTF-8 bytes, so a literal `+` arrives as `%2B`); see the S3 User Guide,
//! "Event message structure".

use aws_lambda_events::s3::S3EventRecord;
use streamstack_core::asset::{SourceObject, INPUTS_PREFIX};
use thiserror::Error;

/// File extensions (lowercase) of containers MediaConvert reads (MediaConvert User Guide,
/// "Supported input containers"). Anything else under `inputs/` is skipped.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "3g2", "3gp", "avi", "f4v", "flv", "gxf", "m2ts", "m2v", "m4v", "mkv", "mov", "mp4", "mpeg",
    "mpg", "mts", "mxf", "ts", "webm", "wmv", "y4m",
];

/// Why an event record is not turned into an asset. None of these is an error of the function:
/// the record is logged and skipped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Skip {
    /// The record lacks the bucket name, key or size.
    #[error("record lacks {0}")]
    Incomplete(&'static str),
    /// The key is not valid form-URL-encoded UTF-8.
    #[error("undecodable key {key:?}: {reason}")]
    UndecodableKey {
        /// The key as delivered.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key is outside `inputs/`.
    #[error("{0:?} is outside inputs/")]
    OutsideInputs(String),
    /// A folder placeholder (key ending in `/`).
    #[error("{0:?} is a folder")]
    Folder(String),
    /// A zero-byte object.
    #[error("{0:?} is empty (0 bytes)")]
    Empty(String),
    /// The extension is not a media container (this includes `.json` sidecars).
    #[error("{0:?} is not a media file (extension not in the supported containers)")]
    NotMedia(String),
}

/// Decodes an S3 event key: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
///
/// # Errors
/// [`Skip::UndecodableKey`] for a `%` not followed by two hex digits or non-UTF-8 bytes.
pub fn decode_key(raw: &str) -> Result<String, Skip> {
    let bad = |reason| Skip::UndecodableKey { key: raw.to_owned(), reason };
    let bytes = raw.as_bytes();
    // percent_decode passes malformed escapes through unchanged; S3 never sends those, so a
    // stray `%` means the key was not encoded the way this decoder expects.
    for (i, _) in raw.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).ok_or_else(|| bad("truncated %-escape"))?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad("%-escape is not two hex digits"));
        }
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| bad("not UTF-8 once decoded"))
}

/// The source object of a record if it is a media upload under `inputs/`.
///
/// # Errors
/// A [`Skip`] saying why the record is not one.
pub fn media_source(record: &S3EventRecord) -> Result<SourceObject, Skip> {
    let bucket = record.s3.bucket.name.clone().ok_or(Skip::Incomplete("s3.bucket.name"))?;
    let raw = record.s3.object.key.as_deref().ok_or(Skip::Incomplete("s3.object.key"))?;
    let key = decode_key(raw)?;
    if !key.starts_with(INPUTS_PREFIX) {
        return Err(Skip::OutsideInputs(key));
    }
    if key.ends_with('/') {
        return Err(Skip::Folder(key));
    }
    let size = record.s3.object.size.ok_or(Skip::Incomplete("s3.object.size"))?;
    if size <= 0 {
        return Err(Skip::Empty(key));
    }
    if !is_media(&key) {
        return Err(Skip::NotMedia(key));
    }
    Ok(SourceObject {
        bucket,
        key,
        version_id: record.s3.object.version_id.clone().filter(|v| !v.is_empty() && v != "null"),
        sequencer: record.s3.object.sequencer.clone(),
        size: size as u64,
    })
}

/// Whether `key`'s extension is one of [`MEDIA_EXTENSIONS`] (case-insensitive).
pub fn is_media(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && MEDIA_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    })
}

/// The sidecar settings key of a media key: the extension replaced by `.json`
/// (`inputs/show/ep1.mov` -> `inputs/show/ep1.json`).
pub fn sidecar_key(media_key: &str) -> String {
    let stem_end = media_key
        .rfind('.')
        .filter(|&dot| media_key[dot..].find('/').is_none())
        .unwrap_or(media_key.len());
    format!("{}.json", &media_key[..stem_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_keys_as_s3_encodes_them() {
        assert_eq!(decode_key("inputs/My+Film.mp4").unwrap(), "inputs/My Film.mp4");
        assert_eq!(decode_key("inputs/a%2Bb.mp4").unwrap(), "inputs/a+b.mp4");
        assert_eq!(decode_key("inputs%2Fx.mp4").unwrap(), "inputs/x.mp4");
        assert_eq!(decode_key("inputs/caf%C3%A9+%E6%97%A5.mov").unwrap(), "inputs/café 日.mov");
        for bad in ["inputs/%ZZ.mp4", "inputs/a%2", "inputs/%FF%FE.mp4", "inputs/%"] {
            assert!(matches!(decode_key(bad), Err(Skip::UndecodableKey { .. })), "{bad}");
        }
    }

    #[test]
    fn media_extensions_and_sidecars() {
        assert!(is_media("inputs/a.MP4") && is_media("inputs/x/y.mov"));
        assert!(!is_media("inputs/a.json") && !is_media("inputs/.mp4") && !is_media("inputs/mp4"));
        assert_eq!(sidecar_key("inputs/show/ep1.mov"), "inputs/show/ep1.json");
        assert_eq!(sidecar_key("inputs/a.b/c"), "inputs/a.b/c.json");
    }
}
