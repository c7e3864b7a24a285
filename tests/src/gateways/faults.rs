//! EC2 and state table wrappers that make moto look like the situations it cannot produce:
//! slow or dying replacements, instances EC2 no longer lists, failing calls.

use super::GatewayBench;
use async_trait::async_trait;
use health::gateway::ec2::{Ec2, Ec2Error, LaunchSpec};
use health::gateway::model::{
    Address, GatewayRecord, Image, Instance, Lifecycle, Lock, PendingAlarm, SavedLaunch, Status,
    REPLACES_TAG,
};
use health::gateway::run::Gateways;
use health::gateway::store::GatewayStore;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use streamstack_core::store::StoreError;
use time::OffsetDateTime;

/// EC2 as it is, except: replacements (instances tagged `streamstack:replaces`) report
/// `seen_as` (moto runs every instance at once: this is how a slow or dying replacement
/// looks); `hidden` instances are
/// unknown (as EC2 stops describing terminated instances after about an hour);
/// `RebootInstances` fails while `failing_reboots` is above zero (counting down).
pub struct FaultyEc2 {
    /// The real adapter.
    pub inner: Arc<dyn Ec2>,
    /// The lifecycle other instances report.
    pub seen_as: Mutex<Option<Lifecycle>>,
    /// Instances EC2 no longer describes.
    pub hidden: Mutex<HashSet<String>>,
    /// Reboots still to fail.
    pub failing_reboots: AtomicUsize,
    /// Per replacement instance: when it was first and last described (the waits for it).
    pub replacement_polls: Mutex<HashMap<String, (std::time::Instant, std::time::Instant)>>,
}

impl FaultyEc2 {
    /// A wrapper of `inner` changing nothing yet.
    pub fn new(inner: Arc<dyn Ec2>) -> Self {
        Self {
            inner,
            seen_as: Mutex::new(None),
            hidden: Mutex::new(HashSet::new()),
            failing_reboots: AtomicUsize::new(0),
            replacement_polls: Mutex::new(HashMap::new()),
        }
    }

    /// [`GatewayBench::checker`]`(extra)` with its EC2 wrapped (nothing faulty yet), and
    /// the wrapper.
    pub fn checker(bench: &GatewayBench, extra: &[(&str, &str)]) -> (Gateways, Arc<Self>) {
        let mut checker = bench.checker(extra);
        let ec2 = Arc::new(Self::new(checker.ec2.clone()));
        checker.ec2 = ec2.clone();
        (checker, ec2)
    }

    fn visible(&self, i: &Instance) -> bool {
        !self.hidden.lock().expect("lock").contains(&i.id)
    }

    fn seen(&self, mut i: Instance) -> Instance {
        if let Some(l) = *self.seen_as.lock().expect("lock") {
            if i.tags.contains_key(REPLACES_TAG) {
                i.lifecycle = l;
            }
        }
        i
    }
}

fn refused(operation: &'static str) -> Ec2Error {
    Ec2Error::Incomplete { operation, missing: "a working endpoint (test fault)" }
}

#[async_trait]
impl Ec2 for FaultyEc2 {
    async fn gateway_instances(&self, key: &str, value: &str) -> Result<Vec<Instance>, Ec2Error> {
        let all = self.inner.gateway_instances(key, value).await?;
        Ok(all.into_iter().filter(|i| self.visible(i)).map(|i| self.seen(i)).collect())
    }
    async fn instance(&self, id: &str) -> Result<Option<Instance>, Ec2Error> {
        let found = self.inner.instance(id).await?;
        if found.as_ref().is_some_and(|i| i.tags.contains_key(REPLACES_TAG)) {
            let now = std::time::Instant::now();
            let mut polls = self.replacement_polls.lock().expect("lock");
            polls.entry(id.to_owned()).and_modify(|p| p.1 = now).or_insert((now, now));
        }
        Ok(found.filter(|i| self.visible(i)).map(|i| self.seen(i)))
    }
    async fn statuses(&self, ids: &[String]) -> Result<HashMap<String, Status>, Ec2Error> {
        self.inner.statuses(ids).await
    }
    async fn addresses(&self) -> Result<Vec<Address>, Ec2Error> {
        self.inner.addresses().await
    }
    async fn reboot(&self, id: &str) -> Result<(), Ec2Error> {
        let left = self.failing_reboots.load(Ordering::SeqCst);
        if left > 0 {
            self.failing_reboots.store(left - 1, Ordering::SeqCst);
            return Err(refused("RebootInstances"));
        }
        self.inner.reboot(id).await
    }
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, Ec2Error> {
        self.inner.launch(spec).await
    }
    async fn replacements_of(&self, failed: &str) -> Result<Vec<Instance>, Ec2Error> {
        let all = self.inner.replacements_of(failed).await?;
        Ok(all.into_iter().filter(|i| self.visible(i)).map(|i| self.seen(i)).collect())
    }
    async fn associate_address(&self, allocation: &str, instance: &str) -> Result<(), Ec2Error> {
        self.inner.associate_address(allocation, instance).await
    }
    async fn terminate(&self, id: &str) -> Result<(), Ec2Error> {
        self.inner.terminate(id).await
    }
    async fn gateway_images(&self, gw: &str) -> Result<Vec<Image>, Ec2Error> {
        self.inner.gateway_images(gw).await
    }
    async fn create_image(
        &self,
        instance: &str,
        name: &str,
        gw: &str,
    ) -> Result<Option<String>, Ec2Error> {
        self.inner.create_image(instance, name, gw).await
    }
    async fn delete_image(&self, image: &Image) -> Result<(), Ec2Error> {
        self.inner.delete_image(image).await
    }
}

/// The state table as it is, except that `finish_recovery` fails (after writing nothing)
/// while `failing_finishes` is above zero (counting down): a table throttled at the end of
/// a recovery.
pub struct FaultyStore {
    /// The real store.
    pub inner: Arc<dyn GatewayStore>,
    /// Finishes still to fail.
    pub failing_finishes: AtomicUsize,
}

#[async_trait]
impl GatewayStore for FaultyStore {
    async fn get(&self, gw: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.inner.get(gw).await
    }
    async fn gateway_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.gateway_ids(limit).await
    }
    async fn save_launch(&self, gw: &str, i: &str, l: &SavedLaunch) -> Result<bool, StoreError> {
        self.inner.save_launch(gw, i, l).await
    }
    async fn adopt(&self, record: &GatewayRecord) -> Result<bool, StoreError> {
        self.inner.adopt(record).await
    }
    async fn set_allocation(&self, gw: &str, i: &str, a: &str) -> Result<bool, StoreError> {
        self.inner.set_allocation(gw, i, a).await
    }
    async fn record_failures(&self, gw: &str, i: &str, f: u32) -> Result<bool, StoreError> {
        self.inner.record_failures(gw, i, f).await
    }
    async fn mark_healthy(&self, gw: &str, i: &str) -> Result<bool, StoreError> {
        self.inner.mark_healthy(gw, i).await
    }
    async fn mark_rebooted(
        &self,
        gw: &str,
        i: &str,
        at: OffsetDateTime,
        unsent: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        self.inner.mark_rebooted(gw, i, at, unsent).await
    }
    async fn reboot_sent(&self, gw: &str, i: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        self.inner.reboot_sent(gw, i, at).await
    }
    async fn lock_recovery(
        &self,
        gw: &str,
        failed: &str,
        lock: &Lock,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner.lock_recovery(gw, failed, lock, reason, now).await
    }
    async fn record_replacement(&self, gw: &str, o: &str, r: &str) -> Result<bool, StoreError> {
        self.inner.record_replacement(gw, o, r).await
    }
    async fn replacement_failed(&self, gw: &str, owner: &str) -> Result<bool, StoreError> {
        self.inner.replacement_failed(gw, owner).await
    }
    async fn finish_recovery(
        &self,
        gw: &str,
        owner: &str,
        replacement: &str,
        allocation: Option<&str>,
        alarm: &PendingAlarm,
    ) -> Result<bool, StoreError> {
        let left = self.failing_finishes.load(Ordering::SeqCst);
        if left > 0 {
            self.failing_finishes.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Backend("throttled (test fault)".into()));
        }
        self.inner.finish_recovery(gw, owner, replacement, allocation, alarm).await
    }
    async fn clear_alarm(&self, gw: &str, alarm: &PendingAlarm) -> Result<bool, StoreError> {
        self.inner.clear_alarm(gw, alarm).await
    }
    async fn release(&self, gw: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release(gw, owner).await
    }
}
