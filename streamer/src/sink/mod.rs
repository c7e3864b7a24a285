//! Where HLS objects go: the [`ObjectSink`] trait with S3 ([`S3Sink`]) and local directory
//! ([`DirSink`]) implementations, chosen by an `--output` spec ([`OutputSpec`]).

mod dir;
mod s3;

pub use dir::DirSink;
pub use s3::S3Sink;

use async_trait::async_trait;
use bytes::Bytes;
use std::path::PathBuf;
use thiserror::Error;

/// A failed write (or read). Every variant of a write is treated as retryable by the
/// uploader.
#[derive(Debug, Error)]
pub enum SinkError {
    /// Local file system error.
    #[error("write {key}: {source}")]
    Io {
        /// Object key.
        key: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// S3 (or network) error, with the SDK's error context.
    #[error("put {key}: {message}")]
    Remote {
        /// Object key.
        key: String,
        /// SDK error context.
        message: String,
    },
    /// A key that would escape the sink's root (`..`, absolute paths).
    #[error("refusing unsafe object key {0:?}")]
    UnsafeKey(String),
    /// A read ([`ObjectSink::get`]) failed.
    #[error("get {key}: {message}")]
    Read {
        /// Object key.
        key: String,
        /// What went wrong (file system, SDK error context).
        message: String,
    },
    /// A read ([`ObjectSink::get`]) found an object over its size limit.
    #[error("get {key}: object larger than {max_bytes} bytes")]
    TooLarge {
        /// Object key.
        key: String,
        /// The limit.
        max_bytes: usize,
    },
}

/// An object store holding HLS playlists and segments under `/`-separated keys such as
/// `live/<channel-id>/index.m3u8`. Each `put` replaces the whole object atomically: a reader
/// sees the old or the new object, never a partial one.
#[async_trait]
pub trait ObjectSink: Send + Sync {
    /// Writes `body` at `key` with the given metadata.
    ///
    /// # Errors
    /// [`SinkError`] when the write did not happen; the caller retries.
    async fn put(&self, key: &str, body: Bytes, meta: ObjectMeta) -> Result<(), SinkError>;

    /// Reads the object at `key` if there is one (`Ok(None)` when there is none), refusing
    /// one larger than `max_bytes` ([`SinkError::TooLarge`]) without reading it whole. Used
    /// to continue a live playlist a previous session left
    /// ([`crate::hls::LivePlaylist::continue_from`]; [`MAX_PLAYLIST_BYTES`]).
    ///
    /// The default reads nothing (`Ok(None)`): a sink that cannot read back starts every
    /// live playlist afresh.
    ///
    /// # Errors
    /// [`SinkError`] when the store could not be read; the caller goes on without it.
    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<Bytes>, SinkError> {
        let _ = (key, max_bytes);
        Ok(None)
    }

    /// Where the objects go, as an `--output` spec (`s3://bucket`, `dir:PATH`); empty when
    /// unknown. Spool sessions record it, so a restart only recovers them into the same store.
    fn location(&self) -> String {
        String::new()
    }
}

/// Largest playlist read back from a sink ([`ObjectSink::get`]): 1 MiB, some 20,000 segment
/// lines, far beyond any live window.
pub const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// S3 object tag (`key=value`, URL-query encoded as `x-amz-tagging` wants it) marking live
/// output that the media bucket's lifecycle rule expires; recordings do not carry it.
pub const EXPIRING_TAG: &str = "streamstack-retention=live";

/// How an object is served and how long it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `Content-Type`, e.g. `video/mp2t` or `application/vnd.apple.mpegurl`.
    pub content_type: &'static str,
    /// `Cache-Control`, honoured by CloudFront and players.
    pub cache_control: &'static str,
    /// Tag the object with [`EXPIRING_TAG`] (live-only output) rather than keep it.
    pub expiring: bool,
}

/// Parsed `--output` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `s3` (bucket from `MEDIA_BUCKET`) or `s3://bucket`.
    S3 {
        /// Bucket name, when given inline.
        bucket: Option<String>,
    },
    /// `dir:PATH`: files under a local directory.
    Dir(PathBuf),
}

impl std::str::FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "s3" {
            return Ok(Self::S3 { bucket: None });
        }
        if let Some(bucket) = s.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err(format!("{s:?}: expected s3://<bucket>"));
            }
            return Ok(Self::S3 { bucket: Some(bucket.to_owned()) });
        }
        match s.strip_prefix("dir:") {
            Some(path) if !path.is_empty() => Ok(Self::Dir(PathBuf::from(path))),
            _ => Err(format!("{s:?}: expected s3, s3://<bucket> or dir:<path>")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OutputSpec;

    #[test]
    fn parses_output_specs() {
        assert_eq!("s3".parse(), Ok(OutputSpec::S3 { bucket: None }));
        assert_eq!("s3://b".parse(), Ok(OutputSpec::S3 { bucket: Some("b".into()) }));
        assert_eq!("dir:/tmp/x".parse(), Ok(OutputSpec::Dir("/tmp/x".into())));
        for bad in ["", "dir:", "s3://", "s3://a/b", "file:/x"] {
            assert!(bad.parse::<OutputSpec>().is_err(), "{bad}");
        }
    }
}
