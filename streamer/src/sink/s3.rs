//! S3 sink.

use super::{ObjectMeta, ObjectSink, SinkError, EXPIRING_TAG};
use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

/// Writes objects with `PutObject` (a single request: objects here are at most a few MB).
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Sink {
    /// A sink writing into `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

#[async_trait]
impl ObjectSink for S3Sink {
    async fn put(&self, key: &str, body: Bytes, meta: ObjectMeta) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(meta.content_type)
            .cache_control(meta.cache_control)
            .set_tagging(meta.expiring.then(|| EXPIRING_TAG.to_owned()))
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SinkError::Remote {
                key: key.to_owned(),
                message: DisplayErrorContext(&e).to_string(),
            })
    }

    /// `GetObject`; `NoSuchKey` is `None`. The body is read chunk by chunk and refused once
    /// over `max_bytes` (as is an object whose `Content-Length` says so).
    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<Bytes>, SinkError> {
        let read = |message: String| SinkError::Read { key: key.to_owned(), message };
        let too_large = || SinkError::TooLarge { key: key.to_owned(), max_bytes };
        let object = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(read(DisplayErrorContext(&e).to_string())),
        };
        if object.content_length().is_some_and(|n| n > max_bytes as i64) {
            return Err(too_large());
        }
        let mut stream = object.body;
        let mut body = Vec::new();
        while let Some(chunk) = stream.try_next().await.map_err(|e| read(e.to_string()))? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(body)))
    }

    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}
