//! Shared library of streamstack, used by every Lambda under `functions/` and by the
//! `streamer` Fargate binary.
//!
//! - [`config`]: settings read once from the environment.
//! - [`aws`]: the one place that builds AWS SDK clients (with an optional endpoint override,
//!   e.g. a local moto server).
//! - [`domain`]: channels, their HLS settings and validation rules.
//! - [`store`]: the [`store::ChannelStore`] trait and its DynamoDB implementation.
//! - [`lease`]: the publish lease on a channel item (one live publisher across processes).
//! - [`asset`], [`asset_store`]: VOD assets (one per uploaded source version) and their
//!   DynamoDB store with conditional state transitions.
//! - [`paging`]: listing pages and opaque cursors.
//! - [`signing`]: signed RTMP push URLs (HMAC-SHA256).
//! - [`stream_state`]: what a pulling streamer observes of its source, on the target's item.
//! - [`telemetry`]: `tracing` set-up shared by all binaries.

#![warn(missing_docs)]

pub mod asset;
pub mod asset_store;
pub mod aws;
mod channel_item;
pub mod config;
pub mod domain;
pub mod lease;
pub mod paging;
pub mod signing;
pub mod store;
pub mod stream_state;
pub mod telemetry;

pub use asset::{Asset, AssetStatus};
pub use asset_store::{AssetStore, DynamoAssetStore};
pub use config::Config;
pub use domain::{Channel, ChannelPatch, ChannelState, HlsSettings, NewChannel, ValidationError};
pub use lease::{LeaseClaim, PublishLease, LEASE_DURATION, LEASE_RENEW_INTERVAL};
pub use paging::Page;
pub use store::{ChannelStore, DynamoChannelStore, StoreError};
