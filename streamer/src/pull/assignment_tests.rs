//! [`Follower`] against in-memory slot and device stores: pulls follow the slot (added,
//! removed, restarted only on a URL change), devices that cannot be pulled are not (and are
//! retried), a failed poll keeps the pulls, a deleted slot ends everything.

use super::*;
use crate::media::MediaLimits;
use crate::publish::UploadSettings;
use crate::pull::{LiveSettings, PullContext, SourceOptions};
use crate::sink::DirSink;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use streamstack_core::device_store::{DeviceFilter, HeartbeatOutcome, Reported};
use streamstack_core::media_url::MediaUrl;
use streamstack_core::paging::Page;
use streamstack_core::slot::{Slot, StartClaim};
use streamstack_core::Playback;
use streamstack_core::StoreError;
use time::OffsetDateTime;

fn unused<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend("not used by the follower".into()))
}

/// One slot, or none; `down` fails every read.
#[derive(Default)]
struct Slots {
    slot: Mutex<Option<Slot>>,
    down: AtomicBool,
}

impl Slots {
    fn set(&self, devices: &[(&str, &str)]) {
        let devices = devices.iter().map(|(d, g)| ((*d).to_owned(), (*g).to_owned())).collect();
        *self.slot.lock().unwrap() = Some(Slot {
            id: "grp-1".into(),
            devices,
            generation: 1,
            task_arn: None,
            start: None,
            started_at: None,
        });
    }
}

#[async_trait]
impl SlotStore for Slots {
    async fn get(&self, _id: &str) -> Result<Option<Slot>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("connection refused".into()));
        }
        Ok(self.slot.lock().unwrap().clone())
    }
    async fn scan_all(&self) -> Result<Vec<Slot>, StoreError> {
        unused()
    }
    async fn add_device(
        &self,
        _: &str,
        _: bool,
        _: &str,
        _: &str,
        _: usize,
    ) -> Result<bool, StoreError> {
        unused()
    }
    async fn set_digest(&self, _: &str, _: &str, _: &str) -> Result<bool, StoreError> {
        unused()
    }
    async fn remove_device(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unused()
    }
    async fn claim_start(
        &self,
        _: &str,
        _: u64,
        _: &StartClaim,
        _: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        unused()
    }
    async fn record_task(&self, _: &str, _: &str, _: &str) -> Result<bool, StoreError> {
        unused()
    }
    async fn clear_task(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unused()
    }
    async fn delete_empty(&self, _: &str, _: u64) -> Result<bool, StoreError> {
        unused()
    }
}

/// Devices by id; every `get_many` call's ids are recorded; `down` fails them.
#[derive(Default)]
struct Devices {
    devices: Mutex<HashMap<String, Device>>,
    reads: Mutex<Vec<Vec<String>>>,
    down: AtomicBool,
}

impl Devices {
    /// Stores device `id` at `url` (sealed with `key`) and returns its digest.
    fn put(&self, id: &str, url: &str, enabled: bool, key: Option<&MediaUrlKey>) -> String {
        let media_url = MediaUrl::seal(url, id, key).unwrap();
        let digest = media_url.digest.clone();
        let mut device =
            Device::new(id, "gw1", media_url, Playback::Public, OffsetDateTime::now_utc());
        device.enabled = enabled;
        self.devices.lock().unwrap().insert(id.to_owned(), device);
        digest
    }

    fn take_reads(&self) -> Vec<Vec<String>> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

#[async_trait]
impl DeviceStore for Devices {
    async fn create(&self, _: &Device) -> Result<(), StoreError> {
        unused()
    }
    async fn update_config(&self, _: &Device, _: u64) -> Result<Device, StoreError> {
        unused()
    }
    async fn get(&self, _: &str) -> Result<Option<Device>, StoreError> {
        unused()
    }
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Device>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("connection refused".into()));
        }
        let mut ids = ids.to_vec();
        ids.sort();
        self.reads.lock().unwrap().push(ids.clone());
        let devices = self.devices.lock().unwrap();
        Ok(ids.iter().filter_map(|id| devices.get(id).cloned()).collect())
    }
    async fn list(
        &self,
        _: u32,
        _: Option<&str>,
        _: &DeviceFilter,
    ) -> Result<Page<Device>, StoreError> {
        unused()
    }
    async fn scan_all(&self) -> Result<Vec<Device>, StoreError> {
        unused()
    }
    async fn delete(&self, _: &str) -> Result<(), StoreError> {
        unused()
    }
    async fn delete_unseen(&self, _: &Device) -> Result<bool, StoreError> {
        unused()
    }
    async fn heartbeat(
        &self,
        _: &str,
        _: &[Reported],
        _: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError> {
        unused()
    }
    async fn claim_slot(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        unused()
    }
    async fn release_slot(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unused()
    }
    async fn set_task(&self, _: &str, _: &str, _: Option<&str>) -> Result<(), StoreError> {
        unused()
    }
}

/// Pulls into a fresh directory, 5 s drain.
fn supervisor() -> Supervisor {
    let dir = std::env::temp_dir().join(format!("assignment-{}", rand::random::<u64>()));
    let context = PullContext {
        sink: Arc::new(DirSink::new(dir)),
        uploads: UploadSettings::default(),
        media: MediaLimits::default(),
        live: LiveSettings { segment_duration: 2, playlist_window: 3 },
        recording_segment_secs: 6,
        ingest: None,
        channels: None,
        channel_states: None,
        device_states: None,
        sources: SourceOptions::default(),
        max_backoff: Duration::from_secs(1),
    };
    Supervisor::new(Arc::new(context), Duration::from_secs(5))
}

/// A UDP URL on a port free now: the pull listens there and waits.
fn udp_url() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    format!("udp://127.0.0.1:{}", socket.local_addr().unwrap().port())
}

fn pulled(pulls: &mut Supervisor) -> Vec<String> {
    let mut targets: Vec<String> = pulls.targets().map(ToString::to_string).collect();
    targets.sort();
    targets
}

fn key() -> MediaUrlKey {
    MediaUrlKey::from_hex(&"ab".repeat(32)).unwrap()
}

fn follower(slots: &Arc<Slots>, devices: &Arc<Devices>, key: Option<MediaUrlKey>) -> Follower {
    let (s, d): (Arc<dyn SlotStore>, Arc<dyn DeviceStore>) = (slots.clone(), devices.clone());
    Follower::new("grp-1".into(), s, d, key)
}

#[tokio::test]
async fn pulls_follow_the_slot_and_restart_only_on_a_url_change() {
    let (slots, devices) = (Arc::new(Slots::default()), Arc::new(Devices::default()));
    let a = devices.put("a", &udp_url(), true, None);
    let b = devices.put("b", &udp_url(), true, None);
    slots.set(&[("a", &a), ("b", &b)]);
    let mut follower = follower(&slots, &devices, None);
    let mut pulls = supervisor();

    assert_eq!(follower.poll(&mut pulls).await, Polled::Continue);
    assert_eq!(pulled(&mut pulls), ["device:a", "device:b"]);
    assert_eq!(devices.take_reads(), [vec!["a".to_owned(), "b".to_owned()]], "one batch read");
    // Nothing changed: the slot is read, no device is.
    follower.poll(&mut pulls).await;
    assert!(devices.take_reads().is_empty());

    // b leaves the slot; a's URL changes (the reconciler records the new digest).
    let a2 = devices.put("a", &udp_url(), true, None);
    assert_ne!(a, a2);
    slots.set(&[("a", &a2)]);
    follower.poll(&mut pulls).await;
    assert_eq!(pulled(&mut pulls), ["device:a"]);
    assert_eq!(devices.take_reads(), [vec!["a".to_owned()]]);
    assert_eq!(follower.followed["a"].pulling.as_deref(), Some(a2.as_str()));

    // The slot lags behind the device: read again, but the running pull already has the
    // device's URL, so it is not restarted.
    slots.set(&[("a", &a)]);
    let started = pulls.started();
    follower.poll(&mut pulls).await;
    assert_eq!(devices.take_reads(), [vec!["a".to_owned()]]);
    assert_eq!(pulls.started(), started, "no restart");
    pulls.shutdown().await;
}

#[tokio::test]
async fn devices_that_cannot_be_pulled_are_not_and_are_retried() {
    let (slots, devices) = (Arc::new(Slots::default()), Arc::new(Devices::default()));
    let off = devices.put("off", &udp_url(), false, None);
    let key = key();
    let secret = devices.put("secret", "rtsp://admin:hunter2@127.0.0.1:9/cam", true, Some(&key));
    slots.set(&[("off", &off), ("secret", &secret), ("gone", "0123")]);
    // No key: the device with credentials cannot be opened.
    let mut follower = follower(&slots, &devices, None);
    let mut pulls = supervisor();
    follower.poll(&mut pulls).await;
    assert!(pulled(&mut pulls).is_empty());
    let skipped = |f: &Follower, id: &str| f.followed[id].skipped.clone().map(|(r, _)| r);
    assert_eq!(skipped(&follower, "off").as_deref(), Some("disabled"));
    assert_eq!(skipped(&follower, "gone").as_deref(), Some("not in the devices table"));
    let reason = skipped(&follower, "secret").unwrap();
    assert!(reason.contains("MEDIA_URL_KEY") && !reason.contains("hunter2"), "{reason}");

    // Enabled later, same URL (same digest in the slot): picked up on the next poll.
    devices.put("off", &udp_url(), true, None);
    follower.poll(&mut pulls).await;
    assert_eq!(pulled(&mut pulls), ["device:off"]);
    assert_eq!(follower.followed["gone"].skipped.as_ref().map(|s| s.1), Some(2), "counted");

    // With the key the credentials open.
    let mut follower = self::follower(&slots, &devices, Some(key));
    let mut pulls = supervisor();
    follower.poll(&mut pulls).await;
    assert_eq!(pulled(&mut pulls), ["device:off", "device:secret"]);
    pulls.shutdown().await;
}

#[tokio::test]
async fn a_failed_poll_keeps_the_pulls_and_a_deleted_slot_ends_them() {
    let (slots, devices) = (Arc::new(Slots::default()), Arc::new(Devices::default()));
    let a = devices.put("a", &udp_url(), true, None);
    slots.set(&[("a", &a)]);
    let mut follower = follower(&slots, &devices, None);
    let mut pulls = supervisor();
    follower.poll(&mut pulls).await;
    assert_eq!(pulled(&mut pulls), ["device:a"]);

    slots.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(follower.poll(&mut pulls).await, Polled::Continue);
    }
    assert_eq!(follower.failures, 3);
    assert_eq!(pulled(&mut pulls), ["device:a"], "kept while the table is down");
    slots.down.store(false, Ordering::SeqCst);
    // A new device while the devices read fails: the slot's pulls are kept, retried later.
    let b = devices.put("b", &udp_url(), true, None);
    slots.set(&[("a", &a), ("b", &b)]);
    devices.down.store(true, Ordering::SeqCst);
    follower.poll(&mut pulls).await;
    assert_eq!(pulled(&mut pulls), ["device:a"]);
    devices.down.store(false, Ordering::SeqCst);
    follower.poll(&mut pulls).await;
    assert_eq!(follower.failures, 0);
    assert_eq!(pulled(&mut pulls), ["device:a", "device:b"]);

    *slots.slot.lock().unwrap() = None;
    let started = tokio::time::Instant::now();
    let never = std::future::pending::<()>();
    let followed = follow(follower, pulls, Duration::from_millis(50), never);
    tokio::time::timeout(Duration::from_secs(10), followed).await.expect("follow returns");
    assert!(started.elapsed() < Duration::from_secs(6), "ended within the drain");
}

#[tokio::test]
async fn a_pull_is_replaced_and_removed_by_target() {
    let mut pulls = supervisor();
    let target = PullTarget::Device("cam".into());
    pulls.add(PullSource { url: udp_url(), target: target.clone(), playback: Playback::Public });
    assert_eq!(pulls.started(), 1);
    pulls.add(PullSource { url: udp_url(), target: target.clone(), playback: Playback::Public });
    assert_eq!(pulled(&mut pulls), ["device:cam"]);
    assert_eq!(pulls.started(), 2);
    assert!(pulls.remove(&target));
    assert!(!pulls.remove(&target), "already removed");
    assert!(pulls.is_empty());
    assert_eq!(pulls.next_ended().await, None);
    tokio::time::timeout(Duration::from_secs(10), pulls.shutdown()).await.expect("bounded");
}
