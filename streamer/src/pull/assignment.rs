//! `streamer pull --assignment <slot>`: follow a task slot of the devices reconciler.
//!
//! Every poll period the slot item is read (consistent `GetItem`, [`SlotStore::get`]); its
//! `devices` map (device id -> URL digest) says what this task records:
//! - a device gone from the map has its pull removed (flushed, playlists ended);
//! - a device new in the map, whose digest changed, or not pulled yet (disabled, missing,
//!   undecryptable credentials, a pull that ended) is read with the others of its poll in
//!   one `BatchGetItem` ([`DeviceStore::get_many`]); an enabled device whose URL opens
//!   ([`MediaUrl::open`](streamstack_core::media_url::MediaUrl::open)) is pulled as
//!   `device:<id>` — restarted only when its URL digest differs from the running pull's —
//!   and a disabled or missing one is not (its running pull, if any, removed);
//! - a slot item that no longer exists ends every pull: [`follow`] returns.
//!
//! A failed poll (DynamoDB unreachable) keeps the current pulls and is retried the next
//! period, logged at failures 1, 2, 4, 8, … . URLs reach the log only through
//! [`redact_url`]; a device's open error never carries its URL.

use super::{PullSource, PullTarget, Supervisor};
use crate::ingest::redact_url;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::device::Device;
use streamstack_core::device_store::DeviceStore;
use streamstack_core::media_url::MediaUrlKey;
use streamstack_core::slot::SlotStore;

/// Default poll period of the slot item.
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// What this task knows of one device of its slot.
#[derive(Debug)]
struct Followed {
    /// The device's digest in the slot when it was last read.
    slot_digest: String,
    /// The URL digest of the running pull; `None` when not pulled.
    pulling: Option<String>,
    /// Why it is not pulled, and how many polls in a row said so (logged at 1, 2, 4, …).
    skipped: Option<(String, u64)>,
}

/// Whether the slot still exists after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Go on polling (also after a failed poll).
    Continue,
    /// The slot item is gone: end every pull.
    SlotGone,
}

/// Follows one slot; see the module docs.
pub struct Follower {
    slot: String,
    slots: Arc<dyn SlotStore>,
    devices: Arc<dyn DeviceStore>,
    key: Option<MediaUrlKey>,
    followed: BTreeMap<String, Followed>,
    /// Failed polls in a row.
    failures: u64,
}

impl Follower {
    /// A follower of slot `slot` in `slots`, reading devices from `devices`; `key` opens
    /// URLs with credentials (a device with credentials and no key is not pulled).
    pub fn new(
        slot: String,
        slots: Arc<dyn SlotStore>,
        devices: Arc<dyn DeviceStore>,
        key: Option<MediaUrlKey>,
    ) -> Self {
        Self { slot, slots, devices, key, followed: BTreeMap::new(), failures: 0 }
    }

    /// One poll: reads the slot (and the devices to (re)start) and brings `pulls` in line.
    /// Cancel safe: `pulls` changes only between the reads, never across an await.
    pub async fn poll(&mut self, pulls: &mut Supervisor) -> Polled {
        let slot = match self.slots.get(&self.slot).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return Polled::SlotGone,
            Err(e) => {
                self.failed("slot", &e);
                return Polled::Continue;
            }
        };
        let gone: Vec<String> =
            self.followed.keys().filter(|id| !slot.devices.contains_key(*id)).cloned().collect();
        for id in gone {
            self.followed.remove(&id);
            if pulls.remove(&PullTarget::Device(id.clone())) {
                tracing::info!(slot = %self.slot, device_id = %id, "device left the slot");
            }
        }
        let read: Vec<String> = slot
            .devices
            .iter()
            .filter(|(id, digest)| match self.followed.get(*id) {
                None => true,
                Some(f) => {
                    f.slot_digest != **digest
                        || f.pulling.is_none()
                        || !pulls.contains(&PullTarget::Device((*id).clone()))
                }
            })
            .map(|(id, _)| id.clone())
            .collect();
        if read.is_empty() {
            self.succeeded();
            return Polled::Continue;
        }
        let found = match self.devices.get_many(&read).await {
            Ok(found) => found,
            Err(e) => {
                self.failed("devices", &e);
                return Polled::Continue;
            }
        };
        self.succeeded();
        for id in read {
            let Some(slot_digest) = slot.devices.get(&id) else { continue };
            let device = found.iter().find(|d| d.id == id);
            self.apply(pulls, &id, slot_digest, device);
        }
        Polled::Continue
    }

    /// Starts, restarts, keeps or stops device `id`'s pull after reading it.
    fn apply(
        &mut self,
        pulls: &mut Supervisor,
        id: &str,
        slot_digest: &str,
        device: Option<&Device>,
    ) {
        let target = PullTarget::Device(id.to_owned());
        let wanted = match device {
            None => Err("not in the devices table".to_owned()),
            Some(d) if !d.enabled => Err("disabled".to_owned()),
            Some(d) => d
                .media_url
                .open(&d.id, self.key.as_ref())
                .map(|url| (url, d.media_url.digest.clone(), d.playback))
                .map_err(|e| format!("media URL: {e}")),
        };
        let followed = self.followed.entry(id.to_owned()).or_insert_with(|| Followed {
            slot_digest: slot_digest.to_owned(),
            pulling: None,
            skipped: None,
        });
        followed.slot_digest = slot_digest.to_owned();
        match wanted {
            Ok((url, digest, playback)) => {
                followed.skipped = None;
                if followed.pulling.as_deref() == Some(digest.as_str()) && pulls.contains(&target) {
                    return;
                }
                let restart = followed.pulling.is_some();
                tracing::info!(
                    slot = %self.slot,
                    device_id = %id,
                    source = %redact_url(&url),
                    restart,
                    "device assigned: pulling"
                );
                followed.pulling = Some(digest);
                pulls.add(PullSource { url, target, playback });
            }
            Err(reason) => {
                if followed.pulling.take().is_some() {
                    pulls.remove(&target);
                }
                let count = match &followed.skipped {
                    Some((last, n)) if *last == reason => n + 1,
                    _ => 1,
                };
                if count.is_power_of_two() {
                    tracing::warn!(
                        slot = %self.slot,
                        device_id = %id,
                        %reason,
                        attempt = count,
                        "device not pulled"
                    );
                }
                followed.skipped = Some((reason, count));
            }
        }
    }

    /// A poll failed on reading `what`: logged at failures 1, 2, 4, …; pulls kept.
    fn failed(&mut self, what: &str, error: &dyn Display) {
        self.failures += 1;
        if self.failures.is_power_of_two() {
            tracing::warn!(
                slot = %self.slot,
                read = what,
                error = %error,
                attempt = self.failures,
                "assignment poll failed: keeping the current pulls"
            );
        }
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(slot = %self.slot, failures = self.failures, "assignment poll recovered");
            self.failures = 0;
        }
    }
}

/// Polls `follower`'s slot every `period` and keeps `pulls` in line with it until the slot
/// is deleted or `shutdown` resolves; then ends every pull ([`Supervisor::shutdown`]).
pub async fn follow(
    mut follower: Follower,
    mut pulls: Supervisor,
    period: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {}
        }
        let polled = tokio::select! {
            polled = follower.poll(&mut pulls) => polled,
            () = &mut shutdown => break,
        };
        if polled == Polled::SlotGone {
            tracing::info!(slot = %follower.slot, "slot deleted: ending every pull");
            break;
        }
    }
    pulls.shutdown().await;
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
