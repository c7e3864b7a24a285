//! The one place that builds AWS SDK clients.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Attempts (first try included) of MediaConvert calls: throttling and 5xx answers are
/// retried with the SDK's standard exponential backoff and jitter.
pub const MEDIACONVERT_MAX_ATTEMPTS: u32 = 5;

/// AWS SDK clients shared by a process, built once at start-up and cloned cheaply.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 client; path-style addressing when an endpoint override is set (moto, MinIO).
    pub s3: aws_sdk_s3::Client,
    /// Elemental MediaConvert client ([`MEDIACONVERT_MAX_ATTEMPTS`] attempts per call).
    pub mediaconvert: aws_sdk_mediaconvert::Client,
    /// SNS client.
    pub sns: aws_sdk_sns::Client,
}

impl AwsClients {
    /// Loads credentials and region from the standard AWS chain and builds every client.
    ///
    /// `endpoint_url` overrides the endpoint of all services (e.g. `http://127.0.0.1:5000` for a
    /// local moto server); `None` uses the real regional AWS endpoints.
    pub async fn load(endpoint_url: Option<&str>) -> Self {
        Self::from_sdk_config(&Self::sdk_config(endpoint_url).await, endpoint_url.is_some())
    }

    /// The shared SDK configuration (credentials, region, optional endpoint override).
    pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// Builds every client from an already loaded [`SdkConfig`]. `path_style` forces S3
    /// path-style addressing (needed by local emulators).
    pub fn from_sdk_config(sdk: &SdkConfig, path_style: bool) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(path_style).build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            mediaconvert: Self::mediaconvert_client(sdk, None),
            sns: aws_sdk_sns::Client::new(sdk),
        }
    }

    /// Points the MediaConvert client at `url` instead: an account-specific endpoint from
    /// `DescribeEndpoints` (older accounts), or a local stand-in in tests. Reuses `sdk`'s
    /// credentials and region.
    pub fn with_mediaconvert_endpoint(mut self, sdk: &SdkConfig, url: &str) -> Self {
        self.mediaconvert = Self::mediaconvert_client(sdk, Some(url));
        self
    }

    fn mediaconvert_client(sdk: &SdkConfig, url: Option<&str>) -> aws_sdk_mediaconvert::Client {
        let mut conf = aws_sdk_mediaconvert::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(MEDIACONVERT_MAX_ATTEMPTS));
        if let Some(url) = url {
            conf = conf.endpoint_url(url);
        }
        aws_sdk_mediaconvert::Client::from_conf(conf.build())
    }
}
