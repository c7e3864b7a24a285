//! Channel CRUD and VOD asset API: one axum [`router`] served by Lambda behind API Gateway (`main.rs`) or
//! by a plain local HTTP server (`bin/local.rs`).
//!
//! | method | path | success | notes |
//! |---|---|---|---|
//! | POST | `/channels` | 201 + `Location` | body [`streamstack_core::NewChannel`] |
//! | GET | `/channels?limit=1..100&next=<cursor>` | 200 | `{"items":[..],"next":..}` |
//! | GET | `/channels/{id}` | 200 + `ETag` | |
//! | PATCH | `/channels/{id}` | 200 + `ETag` | `If-Match` required (RFC 9110: `"<version>"` list or `*`); 412 when stale |
//! | DELETE | `/channels/{id}` | 204 | 404 when absent; `If-Match` honoured when given |
//! | GET | `/channels/{id}/endpoints` | 200 | signed RTMP push URL + HLS playback URL |
//! | POST | `/channels/{id}/rotate-key` | 200 | new secret; body as `endpoints`; old push URLs refused |
//! | GET | `/assets?limit=1..100&next=<cursor>` | 200 | VOD assets, [`assets::AssetView`] |
//! | GET | `/assets/{id}` | 200 | one asset: status, job, output URLs, error |
//! | PUT | `/devices/{id}` | 201 + `Location` / 200, `ETag` | body [`streamstack_core::device::DeviceSpec`]; `If-Match` honoured |
//! | GET | `/devices?limit=&next=&gateway_id=&status=online\|offline` | 200 | [`devices::DeviceView`] items |
//! | GET | `/devices/{id}` | 200 + `ETag` | `status` computed over the online window |
//! | PATCH | `/devices/{id}` | 200 + `ETag` | `If-Match` required; 412 when stale |
//! | DELETE | `/devices/{id}` | 204 | 404 when absent; `If-Match` honoured when given |
//! | GET | `/devices/{id}/endpoints` | 200 | live playlist and archive URLs |
//! | POST | `/gateways/{gateway_id}/heartbeat` | 200 | `{"devices":[{"id","media_url"}..]}` (<= 5000, 2 MiB) |
//! | GET | `/openapi.json` | 200 | the OpenAPI 3.1 document of all of the above ([`openapi`]) |
//!
//! The device routes need `DEVICES_TABLE` (else 404 "devices are not configured"); media URLs
//! with credentials need `MEDIA_URL_KEY` and are only ever returned masked.
//!
//! Every error is `{"error":{"code":"...","message":"...","field":...}}` ([`error::ApiError`]);
//! rejections of the framework itself are rewritten to it ([`error::json_errors`]).

#![warn(missing_docs)]

pub mod assets;
pub mod devices;
pub mod error;
pub mod extract;
mod handlers;
pub mod local;
pub mod openapi;
mod playback;

use axum::Router;
use std::sync::Arc;
use streamstack_core::aws;
use streamstack_core::cloudfront::Signer;
use streamstack_core::config::{env_var, ConfigError};
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::{DeviceStore, DynamoDeviceStore};
use streamstack_core::media_url::MediaUrlKey;
use streamstack_core::playback::{load_signer, PlaybackSettings};
use streamstack_core::Playback;
use streamstack_core::{AssetStore, ChannelStore, Config, DynamoAssetStore, DynamoChannelStore};

/// Request bodies above this many bytes get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler needs, built once per process and shared by reference.
pub struct Deps {
    /// Channel persistence.
    pub store: Arc<dyn ChannelStore>,
    /// Asset persistence (written by the VOD functions, read here).
    pub assets: Arc<dyn AssetStore>,
    /// Settings (ingest host, playback base URL, push URL lifetime).
    pub config: Config,
    /// Device persistence (`DEVICES_TABLE`); `None`: the device routes answer 404.
    pub devices: Option<Arc<dyn DeviceStore>>,
    /// Seals media URL credentials (`MEDIA_URL_KEY`); `None`: URLs with credentials are refused.
    pub media_url_key: Option<MediaUrlKey>,
    /// Online window of device status (`DEVICE_ONLINE_WINDOW_SECS`).
    pub device_settings: DeviceSettings,
    /// Default playback of new resources and the credentials' lifetime (`PLAYBACK_*`).
    pub playback: PlaybackSettings,
    /// Signs playback credentials; `None`: no signing key, signed resources cannot be created.
    pub signer: Option<Signer>,
}

impl Deps {
    /// Channel and asset stores and settings, without devices (add them with
    /// [`Deps::with_devices`]).
    pub fn new(store: Arc<dyn ChannelStore>, assets: Arc<dyn AssetStore>, config: Config) -> Self {
        Self {
            store,
            assets,
            config,
            devices: None,
            media_url_key: None,
            device_settings: DeviceSettings::default(),
            playback: PlaybackSettings {
                default: Playback::Public,
                ttl_secs: streamstack_core::playback::DEFAULT_PLAYBACK_TTL_SECS,
                key_pair_id: None,
                private_key_secret_arn: None,
            },
            signer: None,
        }
    }

    /// These dependencies with `settings` and `signer` for playback authorization.
    pub fn with_playback(mut self, settings: PlaybackSettings, signer: Option<Signer>) -> Self {
        self.playback = settings;
        self.signer = signer;
        self
    }

    /// These dependencies with the device routes served by `devices`, sealing with `key`.
    pub fn with_devices(
        mut self,
        devices: Arc<dyn DeviceStore>,
        key: Option<MediaUrlKey>,
        settings: DeviceSettings,
    ) -> Self {
        self.devices = Some(devices);
        self.media_url_key = key;
        self.device_settings = settings;
        self
    }

    /// Reads [`Config`] and [`PlaybackSettings`] from the environment, builds the
    /// DynamoDB-backed stores (the device store only when `DEVICES_TABLE` is set) and reads
    /// the playback signing key from Secrets Manager once (when one is configured).
    ///
    /// # Errors
    /// A [`ConfigError`] when a required variable (`CHANNELS_TABLE`, `ASSETS_TABLE`) is missing,
    /// `MEDIA_URL_KEY` / `DEVICE_ONLINE_WINDOW_SECS` / a `PLAYBACK_*` variable is malformed,
    /// `PLAYBACK_DEFAULT` is `signed` without a key, or the key cannot be read.
    pub async fn from_env() -> Result<Arc<Self>, ConfigError> {
        let config = Config::from_env()?;
        let assets_table =
            config.assets_table.clone().ok_or(ConfigError::Missing("ASSETS_TABLE"))?;
        let playback = PlaybackSettings::from_env()?;
        // DynamoDB, and Secrets Manager for the signing key: no other SDK client is linked.
        let sdk = aws::sdk_config(config.endpoint_url.as_deref()).await;
        let signer = load_signer(&sdk, &playback).await.map_err(|e| ConfigError::Invalid {
            name: "PLAYBACK_PRIVATE_KEY_SECRET_ARN",
            reason: e.to_string(),
        })?;
        if playback.default == Playback::Signed && signer.is_none() {
            return Err(ConfigError::Invalid {
                name: "PLAYBACK_DEFAULT",
                reason: "signed needs PLAYBACK_KEY_PAIR_ID and PLAYBACK_PRIVATE_KEY_SECRET_ARN"
                    .into(),
            });
        }
        let dynamodb = aws::dynamodb(&sdk);
        let store = DynamoChannelStore::new(dynamodb.clone(), config.channels_table.clone());
        let devices = env_var("DEVICES_TABLE").map(|table| {
            let store = DynamoDeviceStore::new(dynamodb.clone(), table)
                .with_default_playback(playback.default);
            Arc::new(store) as Arc<dyn DeviceStore>
        });
        let assets = DynamoAssetStore::new(dynamodb, assets_table);
        let mut deps =
            Self::new(Arc::new(store), Arc::new(assets), config).with_playback(playback, signer);
        deps.devices = devices;
        deps.media_url_key = MediaUrlKey::from_env()?;
        deps.device_settings = DeviceSettings::from_lookup(env_var)?;
        Ok(Arc::new(deps))
    }
}

/// The API's routes ([`openapi::api_router`], every one documented, `GET /openapi.json`
/// included); JSON 404/405 for unknown paths and methods.
pub fn router(deps: Arc<Deps>) -> Router {
    let (routes, _) = openapi::api_router().split_for_parts();
    routes
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(deps)
}
