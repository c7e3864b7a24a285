//! Health events of the streaming fleet.
//!
//! - [`task`]: EventBridge "ECS Task State Change" events of the streamer cluster. A device
//!   task that stopped while still desired gets its restart backoff (`not_before`) or, in a
//!   crash loop, `FAILED` and an alarm; a stopped RTMP ingest task's publish leases are
//!   released and its channels' live playlists ended at once.
//! - `gateway` (feature `gateway`): EC2 media gateways: scheduled status and health-URL
//!   checks, reboot, recovery onto a replacement instance with the Elastic IP moved, image
//!   backups per RPO.
//! - [`alarm`]: SNS alarms shared by both.
//!
//! Binaries: `task-health` and `gateway-health` (Lambdas).

#![warn(missing_docs)]

pub mod alarm;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod task;
