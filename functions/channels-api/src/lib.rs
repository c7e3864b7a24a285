//! Channel CRUD and VOD asset API: one axum [`router`] served by Lambda behind API Gateway (`main.rs`) or
//! by a plain local HTTP server (`bin/local.rs`).
//!
//! | method | path | success | notes |
//! |---|---|---|---|
//! | POST | `/channels` | 201 + `Location` | body [`streamstack_core::NewChannel`] |
//! | GET | `/channels?limit=1..100&next=<cursor>` | 200 | `{"items":[..],"next":..}` |
//! | GET | `/channels/{id}` | 200 + `ETag` | |
//! | PATCH | `/channels/{id}` | 200 + `ETag` | `If-Match: <version>` required; 412 when stale |
//! | DELETE | `/channels/{id}` | 204 | 404 when absent |
//! | GET | `/channels/{id}/endpoints` | 200 | signed RTMP push URL + HLS playback URL |
//! | POST | `/channels/{id}/rotate-key` | 200 | new secret; body as `endpoints`; old push URLs refused |
//! | GET | `/assets?limit=1..100&next=<cursor>` | 200 | VOD assets, [`assets::AssetView`] |
//! | GET | `/assets/{id}` | 200 | one asset: status, job, output URLs, error |
//!
//! Every error is `{"error":{"code":"...","message":"...","field":...}}` ([`error::ApiError`]).

#![warn(missing_docs)]

pub mod assets;
pub mod error;
pub mod extract;
mod handlers;

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use streamstack_core::aws;
use streamstack_core::config::ConfigError;
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
}

impl Deps {
    /// Reads [`Config`] from the environment and builds the DynamoDB-backed store.
    ///
    /// # Errors
    /// A [`ConfigError`] when a required variable (`CHANNELS_TABLE`, `ASSETS_TABLE`) is missing.
    pub async fn from_env() -> Result<Arc<Self>, ConfigError> {
        let config = Config::from_env()?;
        let assets_table =
            config.assets_table.clone().ok_or(ConfigError::Missing("ASSETS_TABLE"))?;
        // DynamoDB is the only AWS service of the API: no other SDK client is built or linked.
        let dynamodb = aws::dynamodb(&aws::sdk_config(config.endpoint_url.as_deref()).await);
        let store = DynamoChannelStore::new(dynamodb.clone(), config.channels_table.clone());
        let assets = DynamoAssetStore::new(dynamodb, assets_table);
        Ok(Arc::new(Self { store: Arc::new(store), assets: Arc::new(assets), config }))
    }
}

/// The API's routes; JSON 404/405 for unknown paths and methods.
pub fn router(deps: Arc<Deps>) -> Router {
    Router::new()
        .route("/channels", get(handlers::list).post(handlers::create))
        .route(
            "/channels/{id}",
            get(handlers::get_one).patch(handlers::patch).delete(handlers::delete),
        )
        .route("/channels/{id}/endpoints", get(handlers::endpoints))
        .route("/channels/{id}/rotate-key", post(handlers::rotate_key))
        .route("/assets", get(assets::list))
        .route("/assets/{id}", get(assets::get_one))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(deps)
}
