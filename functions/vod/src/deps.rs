//! What the VOD handlers share, built once per process.

use crate::config::VodConfig;
use std::sync::Arc;
use streamstack_core::aws;
use streamstack_core::config::ConfigError;
use streamstack_core::{AssetStore, DynamoAssetStore};

/// Clients, store and settings of the VOD functions; handlers take it by reference.
pub struct Deps {
    /// Asset persistence.
    pub assets: Arc<dyn AssetStore>,
    /// S3 (object metadata, sidecars, thumbnail listing).
    pub s3: aws_sdk_s3::Client,
    /// MediaConvert (`CreateJob`): `None` in `vod-job-state`, which submits no job and so
    /// neither builds nor links the client ([`Deps::job_state_from_env`]).
    pub mediaconvert: Option<aws_sdk_mediaconvert::Client>,
    /// SNS (notifications).
    pub sns: aws_sdk_sns::Client,
    /// Settings.
    pub config: VodConfig,
}

impl Deps {
    /// Reads [`VodConfig`] from the environment and builds every client and the store (the
    /// trigger, `vod-local`).
    ///
    /// # Errors
    /// [`ConfigError`] when a variable is missing or invalid.
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(VodConfig::from_env()?).await)
    }

    /// [`Deps::from_env`] without the MediaConvert client: what `vod-job-state` uses.
    ///
    /// # Errors
    /// [`ConfigError`] when a variable is missing or invalid.
    pub async fn job_state_from_env() -> Result<Self, ConfigError> {
        Ok(Self::build::<false>(VodConfig::from_env()?).await)
    }

    /// Builds every client (honouring both endpoint overrides) and the store for `config`.
    pub async fn new(config: VodConfig) -> Self {
        Self::build::<true>(config).await
    }

    /// The clients and the store; the MediaConvert client only when `MEDIACONVERT` (a const
    /// parameter, so that `vod-job-state`'s code does not even contain its construction).
    async fn build<const MEDIACONVERT: bool>(config: VodConfig) -> Self {
        let endpoint = config.endpoint_url.as_deref();
        let sdk = aws::sdk_config(endpoint).await;
        let mediaconvert =
            MEDIACONVERT.then(|| aws::mediaconvert(&sdk, config.mediaconvert_endpoint.as_deref()));
        Self {
            assets: Arc::new(DynamoAssetStore::new(
                aws::dynamodb(&sdk),
                config.assets_table.clone(),
            )),
            s3: aws::s3(&sdk, endpoint.is_some()),
            mediaconvert,
            sns: aws::sns(&sdk),
            config,
        }
    }
}
