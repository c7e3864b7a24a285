//! VOD pipeline of streamstack: an upload to the media bucket's `inputs/` becomes an HLS ABR
//! ladder, an MP4 and thumbnails through AWS Elemental MediaConvert, tracked as an asset.
//!
//! - [`trigger`]: S3 `ObjectCreated:*` -> asset claim -> `CreateJob` (binary `vod-trigger`).
//! - [`job_state`]: EventBridge "MediaConvert Job State Change" -> asset status, SNS
//!   notification (binary `vod-job-state`).
//! - [`source`] (key decoding, filtering), [`settings`] (per-upload choices), [`presets`]
//!   (ladders as data), [`job`] (the `CreateJob` request), [`notify`] (SNS), [`config`],
//!   [`deps`].
//!
//! `vod-local` runs the trigger for one object of a local (moto) bucket, for `make demo`.

#![warn(missing_docs)]

pub mod config;
pub mod deps;
pub mod job;
pub mod job_state;
pub mod notify;
pub mod presets;
pub mod settings;
pub mod source;
pub mod trigger;

pub use deps::Deps;
