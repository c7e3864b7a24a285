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

    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}
