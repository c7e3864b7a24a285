//! Local directory sink.

use super::{ObjectMeta, ObjectSink, SinkError};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Component, Path, PathBuf};

/// Writes each object to `<root>/<key>` via a temporary file and a rename, so readers (a
/// local HTTP server, ffprobe) never see a half-written playlist.
#[derive(Debug, Clone)]
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    /// A sink rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, SinkError> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(SinkError::UnsafeKey(key.to_owned()));
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl ObjectSink for DirSink {
    async fn put(&self, key: &str, body: Bytes, _: ObjectMeta) -> Result<(), SinkError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        // std::fs on the blocking pool with the shared `Bytes`: tokio::fs::write would copy
        // the whole segment first.
        tokio::task::spawn_blocking(move || {
            let io = |source| SinkError::Io { key: key.clone(), source };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let tmp = path.with_extension("part");
            std::fs::write(&tmp, &body).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)
        })
        .await
        .unwrap_or_else(|e| {
            Err(SinkError::Io { key: String::new(), source: std::io::Error::other(e) })
        })
    }

    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<Bytes>, SinkError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let read =
                |e: std::io::Error| SinkError::Read { key: key.clone(), message: e.to_string() };
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(read(e)),
            };
            let mut body = Vec::new();
            // One byte past the limit tells a file over it, without reading it whole.
            file.take(max_bytes as u64 + 1).read_to_end(&mut body).map_err(read)?;
            if body.len() > max_bytes {
                return Err(SinkError::TooLarge { key: key.clone(), max_bytes });
            }
            Ok(Some(Bytes::from(body)))
        })
        .await
        .unwrap_or_else(|e| Err(SinkError::Read { key: String::new(), message: e.to_string() }))
    }

    fn location(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: ObjectMeta = ObjectMeta { content_type: "", cache_control: "", expiring: false };

    #[tokio::test]
    async fn writes_nested_keys_and_refuses_escapes() {
        let root = std::env::temp_dir().join(format!("dirsink-{}", std::process::id()));
        let sink = DirSink::new(&root);
        sink.put("live/a/index.m3u8", Bytes::from_static(b"x"), META).await.unwrap();
        assert_eq!(std::fs::read(root.join("live/a/index.m3u8")).unwrap(), b"x");
        for bad in ["../x", "/etc/x", "a/../../x", ""] {
            assert!(matches!(
                sink.put(bad, Bytes::new(), META).await,
                Err(SinkError::UnsafeKey(_))
            ));
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn reads_back_within_a_limit() {
        let root = std::env::temp_dir().join(format!("dirsink-get-{}", std::process::id()));
        let sink = DirSink::new(&root);
        assert!(sink.get("a/missing.m3u8", 10).await.unwrap().is_none());
        sink.put("a/p.m3u8", Bytes::from_static(b"0123456789"), META).await.unwrap();
        assert_eq!(sink.get("a/p.m3u8", 10).await.unwrap().unwrap(), &b"0123456789"[..]);
        assert!(matches!(sink.get("a/p.m3u8", 9).await, Err(SinkError::TooLarge { .. })));
        assert!(matches!(sink.get("../x", 9).await, Err(SinkError::UnsafeKey(_))));
        std::fs::remove_dir_all(root).unwrap();
    }
}
