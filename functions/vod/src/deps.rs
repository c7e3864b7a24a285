//! What the VOD handlers share, built once per process.

use crate::config::VodConfig;
use std::sync::Arc;
use streamstack_core::aws::AwsClients;
use streamstack_core::config::ConfigError;
use streamstack_core::{AssetStore, DynamoAssetStore};

/// Clients, store and settings of the VOD functions; handlers take it by reference.
pub struct Deps {
    /// Asset persistence.
    pub assets: Arc<dyn AssetStore>,
    /// S3 (object metadata, sidecars, thumbnail listing).
    pub s3: aws_sdk_s3::Client,
    /// MediaConvert (`CreateJob`).
    pub mediaconvert: aws_sdk_mediaconvert::Client,
    /// SNS (notifications).
    pub sns: aws_sdk_sns::Client,
    /// Settings.
    pub config: VodConfig,
}

impl Deps {
    /// Reads [`VodConfig`] from the environment and builds the clients and the store.
    ///
    /// # Errors
    /// [`ConfigError`] when a variable is missing or invalid.
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(VodConfig::from_env()?).await)
    }

    /// Builds the clients (honouring both endpoint overrides) and the store for `config`.
    pub async fn new(config: VodConfig) -> Self {
        let endpoint = config.endpoint_url.as_deref();
        let sdk = AwsClients::sdk_config(endpoint).await;
        let mut aws = AwsClients::from_sdk_config(&sdk, endpoint.is_some());
        if let Some(url) = &config.mediaconvert_endpoint {
            aws = aws.with_mediaconvert_endpoint(&sdk, url);
        }
        Self {
            assets: Arc::new(DynamoAssetStore::new(aws.dynamodb, config.assets_table.clone())),
            s3: aws.s3,
            mediaconvert: aws.mediaconvert,
            sns: aws.sns,
            config,
        }
    }
}
