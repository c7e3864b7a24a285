//! Running the plan: observe (EC2, the state table, health URLs), decide ([`plan`]), act
//! (conditional table writes, EC2 calls, alarms) and report.
//!
//! Every step is idempotent, so a retried or concurrent invocation resumes rather than
//! doubles: the reboot follows a won `healthy -> rebooted` write; a recovery runs under the
//! gateway's lock, records its replacement before waiting for it, launches with a
//! `ClientToken` derived from the gateway, the failed instance and the attempt, and looks for
//! an unrecorded replacement (tag [`REPLACES_TAG`]) before launching; `AssociateAddress`
//! with `AllowReassociation` and `TerminateInstances` can be repeated; backup images have
//! one deterministic name per gateway and interval.

use super::config::GatewayConfig;
use super::ec2::{Ec2, Ec2Error, LaunchSpec};
use super::model::{
    Address, GatewayRecord, Image, Instance, Lifecycle, Lock, Status, REPLACES_TAG,
};
use super::plan::{plan, plan_images, Decision, Observation, Probe, Trigger};
use super::probe::{health_url, HttpProbe};
use super::store::GatewayStore;
use crate::alarm::{AlarmError, Alarms};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use streamstack_core::store::StoreError;
use time::OffsetDateTime;

/// A run could not observe what it needs, or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// The state table failed.
    #[error("gateway state table: {0}")]
    Store(#[from] StoreError),
    /// An alarm could not be published.
    #[error(transparent)]
    Alarm(#[from] AlarmError),
    /// The recovery cannot go on (no launch spec or image, lock lost).
    #[error("recovery of gateway {gateway_id}: {reason}")]
    Recovery {
        /// The gateway.
        gateway_id: String,
        /// Why.
        reason: String,
    },
}

/// One thing done (or, in dry-run mode, that would be done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// First row written for a gateway.
    Adopt {
        /// Its current instance.
        instance_id: String,
        /// Its Elastic IP allocation, if found.
        allocation_id: Option<String>,
    },
    /// The Elastic IP allocation seen on the current instance recorded.
    RecordAllocation {
        /// Allocation id.
        allocation_id: String,
    },
    /// Consecutive health-URL failures recorded.
    RecordFailures {
        /// The count.
        failures: u32,
    },
    /// Row back to healthy, failures cleared.
    MarkHealthy,
    /// `RebootInstances`.
    Reboot {
        /// The instance.
        instance_id: String,
    },
    /// The recovery lock taken.
    Lock,
    /// `RunInstances` of a replacement.
    Launch {
        /// Image launched.
        image_id: String,
        /// Idempotency token.
        client_token: String,
        /// The replacement (none in dry-run mode).
        instance_id: Option<String>,
    },
    /// A replacement launched earlier was found (recorded or tagged).
    Replacement {
        /// The replacement.
        instance_id: String,
    },
    /// Waited for the replacement to run.
    AwaitRunning {
        /// The replacement.
        instance_id: String,
        /// Its state when the wait ended.
        lifecycle: Lifecycle,
    },
    /// `AssociateAddress` of the gateway's Elastic IP with the replacement.
    AssociateAddress {
        /// Allocation id.
        allocation_id: String,
        /// The replacement.
        instance_id: String,
    },
    /// `TerminateInstances` of the failed instance.
    Terminate {
        /// The failed instance.
        instance_id: String,
    },
    /// Row moved to the replacement, healthy, lock released.
    FinishRecovery {
        /// The new current instance.
        instance_id: String,
    },
    /// An SNS alarm.
    Alarm {
        /// Its subject.
        subject: String,
    },
    /// `CreateImage` of this interval's backup.
    CreateImage {
        /// Image name.
        name: String,
        /// The new image (none in dry-run mode, or when the name existed).
        image_id: Option<String>,
    },
    /// `DeregisterImage` and `DeleteSnapshot` of a pruned backup.
    DeleteImage {
        /// The image.
        image_id: String,
    },
    /// A step not taken.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// What happened to one gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    /// The gateway.
    pub gateway_id: String,
    /// Its current instance (before a recovery).
    pub instance_id: String,
    /// Its status checks, if observed.
    pub status: Option<Status>,
    /// Its health URL check.
    pub probe: Probe,
    /// The decision.
    pub decision: Decision,
    /// Steps done (or planned, in dry-run mode), in order.
    pub actions: Vec<Action>,
    /// The error that stopped the steps, if any.
    pub error: Option<String>,
}

/// What one invocation did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What invoked it.
    pub trigger: Trigger,
    /// Nothing was changed: `actions` are the plan.
    pub dry_run: bool,
    /// Per gateway.
    pub gateways: Vec<GatewayReport>,
    /// Why the event was ignored as a whole (an instance that is not a gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl Report {
    /// Whether any gateway's steps stopped on an error.
    pub fn has_errors(&self) -> bool {
        self.gateways.iter().any(|g| g.error.is_some())
    }
}

/// The gateway checker: its dependencies and settings.
pub struct Gateways {
    /// EC2.
    pub ec2: Arc<dyn Ec2>,
    /// The state table.
    pub store: Arc<dyn GatewayStore>,
    /// Where alarms go.
    pub alarms: Arc<dyn Alarms>,
    /// Health URL client.
    pub probe: HttpProbe,
    /// Settings.
    pub config: GatewayConfig,
}

/// `RunInstances` idempotency token of a recovery attempt: `gwr-` and 32 hex characters of
/// SHA-256(gateway id, failed instance id, attempt).
pub fn client_token(gateway_id: &str, failed_instance: &str, attempt: u32) -> String {
    let mut hash = Sha256::new();
    for part in [gateway_id, failed_instance, &attempt.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("gwr-{}", &hex::encode(hash.finalize())[..32])
}

/// The instance that serves as a gateway without a row yet: running before pending before
/// stopped before the rest, then the newest launch.
fn choose_current(instances: &[Instance]) -> Option<&Instance> {
    let rank = |l: Lifecycle| match l {
        Lifecycle::Running => 0,
        Lifecycle::Pending => 1,
        Lifecycle::Stopping | Lifecycle::Stopped => 2,
        _ => 3,
    };
    instances.iter().min_by(|a, b| {
        rank(a.lifecycle).cmp(&rank(b.lifecycle)).then(b.launch_time.cmp(&a.launch_time))
    })
}

/// The gateway's Elastic IP: the address tagged with its id, else the one on `instance_id`.
fn address_of<'a>(
    addresses: &'a [Address],
    gateway_id: &str,
    instance_id: &str,
) -> Option<&'a Address> {
    addresses
        .iter()
        .find(|a| a.gateway_id.as_deref() == Some(gateway_id))
        .or_else(|| addresses.iter().find(|a| a.instance_id.as_deref() == Some(instance_id)))
}

/// Everything observed about one gateway before deciding.
struct Observed {
    record: GatewayRecord,
    current: Option<Instance>,
    status: Option<Status>,
    probe: Probe,
}

impl Gateways {
    fn dry(&self) -> bool {
        self.config.dry_run
    }

    fn is_gateway(&self, instance: &Instance) -> bool {
        instance.tags.get(&self.config.tag_key) == Some(&self.config.tag_value)
    }

    /// The scheduled run: checks every gateway (status checks, health URLs), reboots,
    /// recovers or resumes recoveries as [`plan`] decides, then backs up the healthy ones
    /// per RPO. One gateway's failure is reported and does not stop the others.
    ///
    /// # Errors
    /// [`RunError`] when the gateways or addresses cannot be listed.
    pub async fn on_schedule(&self, now: OffsetDateTime) -> Result<Report, RunError> {
        let trigger = Trigger::Schedule;
        let mut groups: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for i in self.ec2.gateway_instances(&self.config.tag_key, &self.config.tag_value).await? {
            groups.entry(i.gateway_id.clone()).or_default().push(i);
        }
        let addresses = self.ec2.addresses().await?;
        let mut reports = Vec::new();
        let mut observed = Vec::new();
        for (gateway_id, instances) in &groups {
            let mut actions = Vec::new();
            match self.record(gateway_id, instances, &addresses, &mut actions).await {
                Ok((record, current)) => observed.push((record, current, actions)),
                Err(e) => reports.push(error_report(gateway_id, None, actions, &e)),
            }
        }
        let running: Vec<String> = observed
            .iter()
            .filter_map(|(_, c, _)| c.as_ref())
            .filter(|c| c.lifecycle == Lifecycle::Running)
            .map(|c| c.id.clone())
            .collect();
        let statuses =
            if running.is_empty() { HashMap::new() } else { self.ec2.statuses(&running).await? };
        let probes = self.probe_all(observed.iter().filter_map(|(_, c, _)| c.as_ref())).await;
        for (record, current, actions) in observed {
            let status = current.as_ref().and_then(|c| statuses.get(&c.id).copied());
            let probe = current
                .as_ref()
                .and_then(|c| probes.get(&c.id).cloned())
                .unwrap_or(Probe::NotChecked);
            let o = Observed { record, current, status, probe };
            reports.push(self.check(o, &addresses, &trigger, now, actions).await);
        }
        Ok(Report { trigger, dry_run: self.dry(), gateways: reports, ignored: None })
    }

    /// An "EC2 Instance State-change Notification": ignored unless the instance is a gateway's
    /// current instance (or a recovery's replacement); a current instance that stopped or
    /// terminated without this function's doing is recovered.
    ///
    /// # Errors
    /// [`RunError`] when EC2 or the table cannot be read, or a step failed (the event is
    /// then retried by Lambda's asynchronous invocation retries).
    pub async fn on_state_change(
        &self,
        instance_id: &str,
        state: &str,
        now: OffsetDateTime,
    ) -> Result<Report, RunError> {
        let trigger = Trigger::StateChange { instance_id: instance_id.into(), state: state.into() };
        let ignored = |why: String| Report {
            trigger: trigger.clone(),
            dry_run: self.dry(),
            gateways: vec![],
            ignored: Some(why),
        };
        let Some(instance) = self.ec2.instance(instance_id).await? else {
            return Ok(ignored(format!("{instance_id} is unknown to EC2")));
        };
        if !self.is_gateway(&instance) {
            return Ok(ignored(format!("{instance_id} is not a gateway")));
        }
        let gateway_id = instance.gateway_id.clone();
        let addresses = self.ec2.addresses().await?;
        let mut actions = Vec::new();
        let (record, current) = self
            .record(&gateway_id, std::slice::from_ref(&instance), &addresses, &mut actions)
            .await?;
        let (status, probe) = match &current {
            Some(c) if c.lifecycle == Lifecycle::Running => {
                let status = self.ec2.statuses(std::slice::from_ref(&c.id)).await?.remove(&c.id);
                let probe = self.probe_all([c]).await.remove(&c.id).unwrap_or(Probe::NotChecked);
                (status, probe)
            }
            _ => (None, Probe::NotChecked),
        };
        let o = Observed { record, current, status, probe };
        let report = self.check(o, &addresses, &trigger, now, actions).await;
        if let Some(e) = &report.error {
            return Err(RunError::Recovery { gateway_id, reason: e.clone() });
        }
        Ok(Report { trigger, dry_run: self.dry(), gateways: vec![report], ignored: None })
    }

    /// The gateway's row (adopting `instances`' best candidate when it has none) and its
    /// current instance as described (from `instances`, else `DescribeInstances`).
    async fn record(
        &self,
        gateway_id: &str,
        instances: &[Instance],
        addresses: &[Address],
        actions: &mut Vec<Action>,
    ) -> Result<(GatewayRecord, Option<Instance>), RunError> {
        let record = match self.store.get(gateway_id).await? {
            Some(r) => r,
            None => {
                let Some(current) = choose_current(instances) else {
                    return Err(RunError::Recovery {
                        gateway_id: gateway_id.into(),
                        reason: "no instance to adopt".into(),
                    });
                };
                let allocation =
                    address_of(addresses, gateway_id, &current.id).map(|a| a.allocation_id.clone());
                let record = GatewayRecord::new(gateway_id, &current.id, allocation.clone());
                actions.push(Action::Adopt {
                    instance_id: current.id.clone(),
                    allocation_id: allocation,
                });
                if self.dry() || self.store.adopt(&record).await? {
                    record
                } else {
                    // Another invocation adopted it meanwhile: use its row.
                    self.store.get(gateway_id).await?.ok_or(StoreError::NotFound)?
                }
            }
        };
        let current = match instances.iter().find(|i| i.id == record.instance_id) {
            Some(i) => Some(i.clone()),
            None => self.ec2.instance(&record.instance_id).await?,
        };
        Ok((record, current))
    }

    /// Health URL checks of the running `instances` that have a URL, concurrently; by
    /// instance id.
    async fn probe_all<'a>(
        &self,
        instances: impl IntoIterator<Item = &'a Instance>,
    ) -> HashMap<String, Probe> {
        let mut set = tokio::task::JoinSet::new();
        for i in instances {
            if i.lifecycle != Lifecycle::Running {
                continue;
            }
            let Some(url) = health_url(i, self.config.health_url.as_deref()) else { continue };
            let (probe, id) = (self.probe.clone(), i.id.clone());
            set.spawn(async move { (id, probe.check(&url).await) });
        }
        let mut out = HashMap::new();
        while let Some(done) = set.join_next().await {
            if let Ok((id, probe)) = done {
                out.insert(id, probe);
            }
        }
        out
    }

    /// Decides and acts for one gateway; errors end its steps and go into the report.
    async fn check(
        &self,
        o: Observed,
        addresses: &[Address],
        trigger: &Trigger,
        now: OffsetDateTime,
        mut actions: Vec<Action>,
    ) -> GatewayReport {
        let decision = plan(
            &Observation {
                now,
                record: &o.record,
                current: o.current.as_ref(),
                status: o.status,
                probe: o.probe.clone(),
                trigger,
            },
            &self.config.health,
        );
        let result = self.act(&o, &decision, addresses, trigger, now, &mut actions).await;
        let error = result.err().map(|e| e.to_string());
        if let Some(e) = &error {
            tracing::error!(gateway_id = %o.record.gateway_id, error = %e, "gateway step failed");
        }
        GatewayReport {
            gateway_id: o.record.gateway_id.clone(),
            instance_id: o.record.instance_id.clone(),
            status: o.status,
            probe: o.probe,
            decision,
            actions,
            error,
        }
    }

    async fn act(
        &self,
        o: &Observed,
        decision: &Decision,
        addresses: &[Address],
        trigger: &Trigger,
        now: OffsetDateTime,
        actions: &mut Vec<Action>,
    ) -> Result<(), RunError> {
        let record = &o.record;
        let gw = record.gateway_id.as_str();
        if record.recovery().is_none() && !matches!(decision, Decision::Ignore { .. }) {
            if let Some(a) = address_of(addresses, gw, &record.instance_id) {
                if record.allocation_id.as_deref() != Some(a.allocation_id.as_str()) {
                    actions
                        .push(Action::RecordAllocation { allocation_id: a.allocation_id.clone() });
                    if !self.dry() {
                        self.store
                            .set_allocation(gw, &record.instance_id, &a.allocation_id)
                            .await?;
                    }
                }
            }
        }
        match decision {
            Decision::Healthy { reset } => {
                if *reset {
                    actions.push(Action::MarkHealthy);
                    if !self.dry() {
                        self.store.mark_healthy(gw, &record.instance_id).await?;
                    }
                }
                if let (Trigger::Schedule, Some(current)) = (trigger, &o.current) {
                    self.back_up(gw, current, now, actions).await?;
                }
            }
            Decision::CountFailure { failures } => {
                actions.push(Action::RecordFailures { failures: *failures });
                if !self.dry() {
                    self.store.record_failures(gw, &record.instance_id, *failures).await?;
                }
            }
            Decision::Reboot { reason } => {
                actions.push(Action::Reboot { instance_id: record.instance_id.clone() });
                if self.dry() {
                    return Ok(());
                }
                if !self.store.mark_rebooted(gw, &record.instance_id, now).await? {
                    actions.pop();
                    actions.push(Action::Skipped {
                        reason: "another invocation already acted".into(),
                    });
                    return Ok(());
                }
                self.ec2.reboot(&record.instance_id).await?;
                let subject = format!("Gateway {gw} rebooted");
                self.alarm(
                    &subject,
                    json!({ "kind": "gateway_rebooted", "gateway_id": gw,
                            "instance_id": record.instance_id, "reason": reason }),
                    actions,
                )
                .await?;
            }
            Decision::Recover { reason } => {
                self.recover(o, reason, addresses, now, actions).await?;
            }
            Decision::ResumeRecovery => {
                let reason = record.recovery().map(|r| r.reason.clone()).unwrap_or_default();
                self.recover(o, &reason, addresses, now, actions).await?;
            }
            Decision::AwaitReboot { .. } | Decision::Wait { .. } | Decision::Ignore { .. } => {}
        }
        Ok(())
    }

    async fn alarm(
        &self,
        subject: &str,
        message: serde_json::Value,
        actions: &mut Vec<Action>,
    ) -> Result<(), RunError> {
        actions.push(Action::Alarm { subject: subject.to_owned() });
        if !self.dry() {
            self.alarms.publish(subject, &message).await?;
        }
        Ok(())
    }

    /// The gateway's newest available backup image.
    async fn newest_backup(&self, gateway_id: &str) -> Result<Option<Image>, RunError> {
        let images = self.ec2.gateway_images(gateway_id).await?;
        Ok(images
            .into_iter()
            .filter(Image::is_available)
            .max_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name))))
    }

    /// What a replacement of `failed` is launched with, for attempt `attempt`.
    async fn launch_spec(
        &self,
        gw: &str,
        failed: &Instance,
        attempt: u32,
    ) -> Result<LaunchSpec, RunError> {
        let image_id = match self.newest_backup(gw).await? {
            Some(image) => image.id,
            None => failed.image_id.clone().ok_or_else(|| RunError::Recovery {
                gateway_id: gw.into(),
                reason: format!("no backup image and no image id on {}", failed.id),
            })?,
        };
        let mut tags: Vec<(String, String)> =
            failed.copyable_tags().map(|(k, v)| (k.clone(), v.clone())).collect();
        tags.push((REPLACES_TAG.into(), failed.id.clone()));
        if !failed.tags.contains_key(super::model::GATEWAY_ID_TAG) {
            // The gateway was identified by its instance id: the replacement carries it on.
            tags.push((super::model::GATEWAY_ID_TAG.into(), gw.into()));
        }
        Ok(LaunchSpec {
            image_id,
            instance_type: failed.instance_type.clone(),
            subnet_id: failed.subnet_id.clone(),
            security_group_ids: failed.security_group_ids.clone(),
            key_name: failed.key_name.clone(),
            instance_profile_arn: failed.instance_profile_arn.clone(),
            tags,
            client_token: client_token(gw, &failed.id, attempt),
        })
    }

    /// Recovers (or resumes recovering) the gateway under its lock.
    async fn recover(
        &self,
        o: &Observed,
        reason: &str,
        addresses: &[Address],
        now: OffsetDateTime,
        actions: &mut Vec<Action>,
    ) -> Result<(), RunError> {
        let record = &o.record;
        let gw = record.gateway_id.as_str();
        let failed_id =
            record.recovery().map_or(record.instance_id.as_str(), |r| r.failed_instance.as_str());
        let failed = match &o.current {
            Some(c) if c.id == failed_id => Some(c.clone()),
            _ => self.ec2.instance(failed_id).await?,
        };
        if self.dry() {
            return self.plan_recovery(o, failed.as_ref(), addresses, actions).await;
        }
        let lock_ttl =
            time::Duration::try_from(self.config.lock_ttl).unwrap_or(time::Duration::minutes(10));
        let lock = Lock { owner: uuid::Uuid::new_v4().to_string(), until: now + lock_ttl };
        if !self.store.lock_recovery(gw, failed_id, &lock, reason, now).await? {
            actions.push(Action::Skipped {
                reason: "recovery locked by another invocation, or the gateway moved on".into(),
            });
            return Ok(());
        }
        actions.push(Action::Lock);
        let result = self
            .recover_locked(gw, failed_id, failed.as_ref(), &lock.owner, addresses, actions)
            .await;
        if !matches!(result, Ok(true)) {
            // Unfinished (waiting, or failed): let the next invocation resume at once.
            if let Err(e) = self.store.release(gw, &lock.owner).await {
                tracing::warn!(gateway_id = gw, error = %e, "could not release the recovery lock");
            }
        }
        if let Err(e) = &result {
            let subject = format!("Gateway {gw} recovery failed");
            let message = json!({ "kind": "gateway_recovery_failed", "gateway_id": gw,
                                  "failed_instance": failed_id, "error": e.to_string() });
            if let Err(alarm) = self.alarm(&subject, message, actions).await {
                tracing::warn!(gateway_id = gw, error = %alarm, "could not publish the alarm");
            }
        }
        result.map(|_| ())
    }

    /// The recovery steps under the lock; `Ok(true)` finished, `Ok(false)` to be resumed.
    async fn recover_locked(
        &self,
        gw: &str,
        failed_id: &str,
        failed: Option<&Instance>,
        owner: &str,
        addresses: &[Address],
        actions: &mut Vec<Action>,
    ) -> Result<bool, RunError> {
        let lost =
            || RunError::Recovery { gateway_id: gw.into(), reason: "recovery lock lost".into() };
        let record = self.store.get(gw).await?.ok_or_else(lost)?;
        let recovery = record.recovery().cloned().ok_or_else(lost)?;
        let mut image_id = None;
        let replacement = match recovery.replacement.clone() {
            Some(id) => id,
            None => {
                let found = self
                    .ec2
                    .replacements_of(failed_id)
                    .await?
                    .into_iter()
                    .find(|i| matches!(i.lifecycle, Lifecycle::Pending | Lifecycle::Running));
                let id = match found {
                    Some(i) => i.id,
                    None => {
                        let failed = failed.ok_or_else(|| RunError::Recovery {
                            gateway_id: gw.into(),
                            reason: format!("{failed_id} is gone: nothing to copy the launch from"),
                        })?;
                        let spec = self.launch_spec(gw, failed, recovery.attempt).await?;
                        let id = self.ec2.launch(&spec).await?;
                        image_id = Some(spec.image_id.clone());
                        actions.push(Action::Launch {
                            image_id: spec.image_id,
                            client_token: spec.client_token,
                            instance_id: Some(id.clone()),
                        });
                        id
                    }
                };
                if !self.store.record_replacement(gw, owner, &id).await? {
                    return Err(lost());
                }
                id
            }
        };
        if image_id.is_none() {
            actions.push(Action::Replacement { instance_id: replacement.clone() });
        }
        let lifecycle = self.wait_running(&replacement).await?;
        actions.push(Action::AwaitRunning { instance_id: replacement.clone(), lifecycle });
        match lifecycle {
            Lifecycle::Running => {}
            Lifecycle::Pending => return Ok(false),
            other => {
                // It died before running: the next attempt launches anew (new client token).
                if !self.store.replacement_failed(gw, owner).await? {
                    return Err(lost());
                }
                return Err(RunError::Recovery {
                    gateway_id: gw.into(),
                    reason: format!("replacement {replacement} is {other:?}; relaunching next run"),
                });
            }
        }
        let allocation = record
            .allocation_id
            .clone()
            .or_else(|| address_of(addresses, gw, failed_id).map(|a| a.allocation_id.clone()));
        match &allocation {
            Some(a) => {
                self.ec2.associate_address(a, &replacement).await?;
                actions.push(Action::AssociateAddress {
                    allocation_id: a.clone(),
                    instance_id: replacement.clone(),
                });
            }
            None => actions
                .push(Action::Skipped { reason: "no Elastic IP known for the gateway".into() }),
        }
        self.ec2.terminate(failed_id).await?;
        actions.push(Action::Terminate { instance_id: failed_id.into() });
        let public_ip = allocation
            .as_ref()
            .and_then(|a| addresses.iter().find(|x| &x.allocation_id == a))
            .and_then(|a| a.public_ip.clone());
        self.alarm(
            &format!("Gateway {gw} recovered onto {replacement}"),
            json!({ "kind": "gateway_recovered", "gateway_id": gw, "failed_instance": failed_id,
                    "replacement": replacement, "image_id": image_id, "allocation_id": allocation,
                    "public_ip": public_ip, "reason": recovery.reason, "attempt": recovery.attempt }),
            actions,
        )
        .await?;
        if !self.store.finish_recovery(gw, owner, &replacement, allocation.as_deref()).await? {
            return Err(lost());
        }
        actions.push(Action::FinishRecovery { instance_id: replacement });
        Ok(true)
    }

    /// Dry-run: the recovery steps that would be taken.
    async fn plan_recovery(
        &self,
        o: &Observed,
        failed: Option<&Instance>,
        addresses: &[Address],
        actions: &mut Vec<Action>,
    ) -> Result<(), RunError> {
        let record = &o.record;
        let gw = record.gateway_id.as_str();
        let recovery = record.recovery();
        let replacement = match recovery.and_then(|r| r.replacement.clone()) {
            Some(id) => {
                actions.push(Action::Replacement { instance_id: id.clone() });
                id
            }
            None => {
                let Some(failed) = failed else {
                    actions.push(Action::Skipped { reason: "failed instance is gone".into() });
                    return Ok(());
                };
                let spec = self.launch_spec(gw, failed, recovery.map_or(0, |r| r.attempt)).await?;
                actions.push(Action::Launch {
                    image_id: spec.image_id,
                    client_token: spec.client_token,
                    instance_id: None,
                });
                "(replacement)".to_owned()
            }
        };
        let failed_id = recovery.map_or(record.instance_id.clone(), |r| r.failed_instance.clone());
        if let Some(a) = record
            .allocation_id
            .clone()
            .or_else(|| address_of(addresses, gw, &failed_id).map(|a| a.allocation_id.clone()))
        {
            actions.push(Action::AssociateAddress {
                allocation_id: a,
                instance_id: replacement.clone(),
            });
        }
        actions.push(Action::Terminate { instance_id: failed_id });
        actions
            .push(Action::Alarm { subject: format!("Gateway {gw} recovered onto {replacement}") });
        actions.push(Action::FinishRecovery { instance_id: replacement });
        Ok(())
    }

    /// Polls the instance until it leaves `pending`, at most `running_wait` (one poll every
    /// `poll`); its last state (`Pending` when the wait ran out).
    async fn wait_running(&self, id: &str) -> Result<Lifecycle, RunError> {
        let deadline = tokio::time::Instant::now() + self.config.running_wait;
        loop {
            let lifecycle =
                self.ec2.instance(id).await?.map_or(Lifecycle::Pending, |i| i.lifecycle);
            if lifecycle != Lifecycle::Pending {
                return Ok(lifecycle);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Lifecycle::Pending);
            }
            tokio::time::sleep(self.config.poll.min(left)).await;
        }
    }

    /// This interval's backup image of a healthy running gateway, and pruning.
    async fn back_up(
        &self,
        gw: &str,
        current: &Instance,
        now: OffsetDateTime,
        actions: &mut Vec<Action>,
    ) -> Result<(), RunError> {
        let images = self.ec2.gateway_images(gw).await?;
        let can_create = current.lifecycle == Lifecycle::Running;
        let plan = plan_images(gw, &images, now, &self.config.images, can_create);
        let mut created = true;
        if let Some(name) = plan.create {
            let image_id = if self.dry() {
                None
            } else {
                self.ec2.create_image(&current.id, &name, gw).await?
            };
            created = self.dry() || image_id.is_some();
            actions.push(Action::CreateImage { name, image_id });
        }
        if !created {
            // The name exists already (a listing that lagged): prune on the next run.
            return Ok(());
        }
        for id in plan.prune {
            if !self.dry() {
                if let Some(image) = images.iter().find(|i| i.id == id) {
                    self.ec2.delete_image(image).await?;
                }
            }
            actions.push(Action::DeleteImage { image_id: id });
        }
        Ok(())
    }
}

fn error_report(
    gateway_id: &str,
    instance_id: Option<&str>,
    actions: Vec<Action>,
    e: &RunError,
) -> GatewayReport {
    tracing::error!(gateway_id, error = %e, "gateway check failed");
    GatewayReport {
        gateway_id: gateway_id.into(),
        instance_id: instance_id.unwrap_or_default().into(),
        status: None,
        probe: Probe::NotChecked,
        decision: Decision::Wait { reason: "not observed".into() },
        actions,
        error: Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_per_gateway_instance_and_attempt() {
        let t = client_token("gw", "i-1", 0);
        assert!(t.len() <= 64 && t.is_ascii() && t.starts_with("gwr-"));
        assert_eq!(t, client_token("gw", "i-1", 0));
        assert_ne!(t, client_token("gw", "i-1", 1));
        assert_ne!(t, client_token("gw", "i-2", 0));
        assert_ne!(t, client_token("gw2", "i-1", 0));
    }

    #[test]
    fn adopts_the_running_newest_instance() {
        let at = |s| OffsetDateTime::from_unix_timestamp(s).ok();
        let mk = |id: &str, l, t| Instance {
            id: id.into(),
            gateway_id: "gw".into(),
            lifecycle: l,
            image_id: None,
            instance_type: None,
            subnet_id: None,
            security_group_ids: vec![],
            key_name: None,
            instance_profile_arn: None,
            private_ip: None,
            tags: BTreeMap::new(),
            launch_time: at(t),
        };
        let list = [
            mk("old", Lifecycle::Running, 1),
            mk("new", Lifecycle::Running, 2),
            mk("dead", Lifecycle::Terminated, 3),
        ];
        assert_eq!(choose_current(&list).map(|i| i.id.as_str()), Some("new"));
        assert!(choose_current(&[]).is_none());
    }
}
