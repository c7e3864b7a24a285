//! Shared library of streamstack, used by every Lambda under `functions/` and by the
//! `streamer` Fargate binary.
//!
//! - [`config`]: settings read once from the environment.
//! - [`aws`]: the one place that builds AWS SDK clients: one shared `SdkConfig` loader and one
//!   builder per service, each behind its cargo feature (`dynamodb` (default), `s3`,
//!   `mediaconvert`, `sns`, `ecs`, `secretsmanager`), so each binary links only the SDK crates
//!   it uses. The DynamoDB-backed modules (stores, stream state) need `dynamodb`.
//! - [`domain`]: channels, their HLS settings and validation rules.
//! - [`store`]: the [`store::ChannelStore`] trait and its DynamoDB implementation.
//! - [`table`]: table-generic DynamoDB helpers the stores share (create, read, scan, query).
//! - [`lease`]: the publish lease on a channel item (one live publisher across processes).
//! - [`asset`], [`asset_store`]: VOD assets (one per uploaded source version) and their
//!   DynamoDB store with conditional state transitions.
//! - [`paging`]: listing pages and opaque cursors.
//! - [`signing`]: signed RTMP push URLs (HMAC-SHA256).
//! - [`playback`], [`cloudfront`]: public or signed playback per resource, where each kind is
//!   stored, and CloudFront signed cookies/URLs (custom policies, RSA-SHA1) to issue and verify.
//! - [`stream_state`]: what a pulling streamer observes of its source, on the target's item.
//! - [`device`], [`device_store`], [`media_url`], [`slot`]: cameras behind media gateways,
//!   their sealed media URLs, and the task slots the reconciler records them in.
//! - [`telemetry`]: `tracing` set-up shared by all binaries.

#![warn(missing_docs)]

pub mod asset;
#[cfg(feature = "dynamodb")]
pub mod asset_store;
pub mod aws;
#[cfg(feature = "dynamodb")]
mod channel_item;
pub mod cloudfront;
pub mod config;
#[cfg(feature = "dynamodb")]
pub mod device;
#[cfg(feature = "dynamodb")]
pub mod device_health;
#[cfg(feature = "dynamodb")]
mod device_heartbeat;
#[cfg(feature = "dynamodb")]
mod device_item;
#[cfg(feature = "dynamodb")]
pub mod device_store;
pub mod domain;
pub mod lease;
pub mod media_url;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod paging;
pub mod playback;
pub mod relay;
#[cfg(feature = "dynamodb")]
mod relay_item;
pub mod signing;
#[cfg(feature = "dynamodb")]
pub mod slot;
#[cfg(feature = "dynamodb")]
pub mod store;
#[cfg(feature = "dynamodb")]
pub mod stream_state;
#[cfg(feature = "dynamodb")]
pub mod table;
pub mod telemetry;

pub use asset::{Asset, AssetStatus};
#[cfg(feature = "dynamodb")]
pub use asset_store::{AssetStore, DynamoAssetStore};
pub use config::Config;
pub use domain::{Channel, ChannelPatch, ChannelState, HlsSettings, NewChannel, ValidationError};
pub use lease::{LeaseClaim, PublishLease, LEASE_DURATION, LEASE_RENEW_INTERVAL};
pub use paging::Page;
pub use playback::Playback;
#[cfg(feature = "dynamodb")]
pub use store::{ChannelStore, DynamoChannelStore, StoreError};
