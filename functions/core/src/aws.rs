//! The one place that builds AWS SDK clients.

use aws_config::{BehaviorVersion, SdkConfig};

/// AWS SDK clients shared by a process, built once at start-up and cloned cheaply.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 client; path-style addressing when an endpoint override is set (moto, MinIO).
    pub s3: aws_sdk_s3::Client,
}

impl AwsClients {
    /// Loads credentials and region from the standard AWS chain and builds every client.
    ///
    /// `endpoint_url` overrides the endpoint of all services (e.g. `http://127.0.0.1:5000` for a
    /// local moto server); `None` uses the real regional AWS endpoints.
    pub async fn load(endpoint_url: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Self::from_sdk_config(&loader.load().await, endpoint_url.is_some())
    }

    /// Builds every client from an already loaded [`SdkConfig`]. `path_style` forces S3
    /// path-style addressing (needed by local emulators).
    pub fn from_sdk_config(sdk: &SdkConfig, path_style: bool) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(path_style).build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
        }
    }
}
