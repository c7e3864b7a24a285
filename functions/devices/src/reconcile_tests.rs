//! [`Reconciler`]'s start path against in-memory fakes (the moto tests cover the rest).

use super::*;
use crate::tasks::TaskInfo;
use async_trait::async_trait;
use std::sync::Mutex;
use streamstack_core::device::Device;
use streamstack_core::device_store::{DeviceFilter, HeartbeatOutcome, Reported};
use streamstack_core::Page;

/// Slots: every claim succeeds; `record_task` answers `recorded`.
struct Slots {
    recorded: bool,
    claims: Mutex<Vec<StartClaim>>,
}

#[async_trait]
impl SlotStore for Slots {
    async fn get(&self, _: &str) -> Result<Option<Slot>, StoreError> {
        unimplemented!()
    }
    async fn scan_all(&self) -> Result<Vec<Slot>, StoreError> {
        unimplemented!()
    }
    async fn add_device(
        &self,
        _: &str,
        _: bool,
        _: &str,
        _: &str,
        _: usize,
    ) -> Result<bool, StoreError> {
        unimplemented!()
    }
    async fn set_digest(&self, _: &str, _: &str, _: &str) -> Result<bool, StoreError> {
        unimplemented!()
    }
    async fn remove_device(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn claim_start(
        &self,
        _: &str,
        generation: u64,
        claim: &StartClaim,
        _: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        self.claims.lock().unwrap().push(claim.clone());
        Ok(Some(generation + 1))
    }
    async fn record_task(&self, _: &str, _: &str, _: &str) -> Result<bool, StoreError> {
        Ok(self.recorded)
    }
    async fn clear_task(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn delete_empty(&self, _: &str, _: u64) -> Result<bool, StoreError> {
        unimplemented!()
    }
}

/// Devices: only `set_task` is used by a start.
#[derive(Default)]
struct Devices {
    tasks: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl DeviceStore for Devices {
    async fn create(&self, _: &Device) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn update_config(&self, _: &Device, _: u64) -> Result<Device, StoreError> {
        unimplemented!()
    }
    async fn get(&self, _: &str) -> Result<Option<Device>, StoreError> {
        unimplemented!()
    }
    async fn get_many(&self, _: &[String]) -> Result<Vec<Device>, StoreError> {
        unimplemented!()
    }
    async fn list(
        &self,
        _: u32,
        _: Option<&str>,
        _: &DeviceFilter,
    ) -> Result<Page<Device>, StoreError> {
        unimplemented!()
    }
    async fn scan_all(&self) -> Result<Vec<Device>, StoreError> {
        unimplemented!()
    }
    async fn delete(&self, _: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn delete_unseen(&self, _: &Device) -> Result<bool, StoreError> {
        unimplemented!()
    }
    async fn heartbeat(
        &self,
        _: &str,
        _: &[Reported],
        _: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError> {
        unimplemented!()
    }
    async fn claim_slot(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        unimplemented!()
    }
    async fn release_slot(&self, _: &str, _: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn set_task(&self, id: &str, _: &str, arn: Option<&str>) -> Result<(), StoreError> {
        self.tasks.lock().unwrap().push((id.to_owned(), arn.unwrap_or_default().to_owned()));
        Ok(())
    }
}

/// Tasks: remembers runs and stops.
#[derive(Default)]
struct Runs {
    runs: Mutex<Vec<RunRequest>>,
    stops: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Tasks for Runs {
    async fn list(&self) -> Result<Vec<TaskInfo>, TaskError> {
        unimplemented!()
    }
    async fn describe(&self, _: &[String]) -> Result<Vec<TaskInfo>, TaskError> {
        unimplemented!()
    }
    async fn run(&self, request: &RunRequest) -> Result<String, TaskError> {
        let mut runs = self.runs.lock().unwrap();
        runs.push(request.clone());
        Ok(format!("arn:task/{}", runs.len()))
    }
    async fn stop(&self, arn: &str, reason: &str) -> Result<(), TaskError> {
        self.stops.lock().unwrap().push((arn.to_owned(), reason.to_owned()));
        Ok(())
    }
}

fn reconciler(recorded: bool) -> (Reconciler, Arc<Slots>, Arc<Devices>, Arc<Runs>) {
    let slots = Arc::new(Slots { recorded, claims: Mutex::default() });
    let devices = Arc::new(Devices::default());
    let runs = Arc::new(Runs::default());
    let reconciler = Reconciler {
        devices: devices.clone(),
        slots: slots.clone(),
        tasks: runs.clone(),
        settings: PlanSettings { devices_per_task: 1, device: Default::default(), max_starts: 500 },
        dry_run: false,
    };
    (reconciler, slots, devices, runs)
}

fn start(slot: &str) -> Action {
    Action::Start {
        slot: slot.into(),
        generation: 0,
        devices: BTreeMap::from([("cam".to_owned(), "d1".to_owned())]),
    }
}

#[tokio::test]
async fn a_claim_lasts_from_when_it_is_taken_not_from_an_old_view() {
    let (reconciler, slots, devices, _) = reconciler(true);
    let view_now = OffsetDateTime::now_utc() - Duration::minutes(5);
    let done = reconciler.act(start("dev-cam"), view_now).await.unwrap();
    assert!(matches!(done, Done::Started));
    let until = slots.claims.lock().unwrap()[0].until;
    assert!(until > OffsetDateTime::now_utc() + START_CLAIM - Duration::seconds(5), "{until}");
    assert_eq!(devices.tasks.lock().unwrap().as_slice(), [("cam".into(), "arn:task/1".into())]);
}

#[tokio::test]
async fn a_slot_started_again_at_the_same_generation_gets_a_new_client_token() {
    let (reconciler, _, _, runs) = reconciler(true);
    let now = OffsetDateTime::now_utc();
    reconciler.act(start("dev-cam"), now).await.unwrap();
    // The slot was deleted and created again: generation 0 once more.
    reconciler.act(start("dev-cam"), now).await.unwrap();
    let runs = runs.runs.lock().unwrap();
    assert_ne!(runs[0].client_token, runs[1].client_token);
}

#[tokio::test]
async fn a_task_whose_claim_was_lost_is_stopped_and_not_recorded() {
    let (reconciler, _, devices, runs) = reconciler(false);
    let done = reconciler.act(start("dev-cam"), OffsetDateTime::now_utc()).await.unwrap();
    assert!(matches!(done, Done::Contended));
    let stops = runs.stops.lock().unwrap();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].0, "arn:task/1");
    assert!(stops[0].1.starts_with(STOP_REASON_PREFIX));
    assert!(devices.tasks.lock().unwrap().is_empty());
}
