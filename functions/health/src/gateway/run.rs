//! Running the gateway checks: observe (EC2, the state table, health URLs), decide
//! ([`plan`](super::plan)), act and report ([`Report`]).
//!
//! The steps are split by seam into sibling modules, all `impl` blocks of [`Gateways`]:
//! - this module: the entry points ([`Gateways::on_schedule`],
//!   [`Gateways::on_state_change`]) and observing (adoption of a row, status checks, health
//!   URLs);
//! - [`act`](super::act): deciding and acting for one gateway (the check / reboot path);
//! - [`recovery`](super::recovery): recovery onto a replacement under the gateway's lock;
//! - [`backup`](super::backup): the image backups per RPO;
//! - [`report`](super::report): the JSON report and [`RunError`].
//!
//! Every step is idempotent, so a retried or concurrent invocation resumes rather than
//! doubles: the reboot follows a won `healthy -> rebooted` write; a recovery runs under the
//! gateway's lock, records its replacement before waiting for it, launches with a
//! `ClientToken` derived from the gateway, the failed instance and the attempt
//! ([`client_token`]), and looks for an unrecorded replacement (tag
//! [`REPLACES_TAG`](super::model::REPLACES_TAG)) before launching; `AssociateAddress` with
//! `AllowReassociation` and `TerminateInstances` can be repeated; backup images have one
//! deterministic name per gateway and interval.

use super::config::GatewayConfig;
use super::ec2::Ec2;
use super::model::{Address, GatewayRecord, Instance, Lifecycle, Status};
use super::plan::{Probe, Trigger};
use super::probe::{health_url, HttpProbe};
use super::report::error_report;
use super::store::GatewayStore;
use crate::alarm::Alarms;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use streamstack_core::store::StoreError;
use time::OffsetDateTime;

pub use super::recovery::client_token;
pub use super::report::{Action, GatewayReport, Report, RunError};

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

/// The instance that serves as a gateway without a row yet: running before pending before
/// stopped before the rest, then the newest launch.
pub(super) fn choose_current(instances: &[Instance]) -> Option<&Instance> {
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
pub(super) fn address_of<'a>(
    addresses: &'a [Address],
    gateway_id: &str,
    instance_id: &str,
) -> Option<&'a Address> {
    addresses
        .iter()
        .find(|a| a.gateway_id.as_deref() == Some(gateway_id))
        .or_else(|| addresses.iter().find(|a| a.instance_id.as_deref() == Some(instance_id)))
}

/// Gateways checked at once by a scheduled run.
pub const CONCURRENCY: usize = 4;

/// At most this many state table rows are walked by a scheduled run (beyond the gateways EC2
/// lists).
pub const MAX_ROWS: usize = 1000;

/// Everything observed about one gateway before deciding.
pub(super) struct Observed {
    pub(super) record: GatewayRecord,
    pub(super) current: Option<Instance>,
    pub(super) status: Option<Status>,
    pub(super) probe: Probe,
    /// The invocation's deadline: no recovery or wait starts past it minus
    /// [`FINISH_RESERVE`](super::config::FINISH_RESERVE).
    pub(super) deadline: tokio::time::Instant,
}

impl Gateways {
    pub(super) fn dry(&self) -> bool {
        self.config.dry_run
    }

    fn is_gateway(&self, instance: &Instance) -> bool {
        instance.tags.get(&self.config.tag_key) == Some(&self.config.tag_value)
    }

    /// The scheduled run: checks every gateway EC2 lists and every gateway the state table
    /// has a row of (at most [`MAX_ROWS`]; one whose instance EC2 no longer describes is
    /// recovered from the row), [`CONCURRENCY`] at a time: status checks, health URLs,
    /// reboots, recoveries or resumed recoveries as [`plan`](super::plan::plan) decides, then
    /// backups of the healthy ones per RPO. One gateway's failure is reported and does not
    /// stop the others.
    ///
    /// # Errors
    /// [`RunError`] when the gateways, rows or addresses cannot be listed.
    pub async fn on_schedule(
        &self,
        now: OffsetDateTime,
        deadline: tokio::time::Instant,
    ) -> Result<Report, RunError> {
        use futures::StreamExt;
        let trigger = Trigger::Schedule;
        let mut groups: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for i in self.ec2.gateway_instances(&self.config.tag_key, &self.config.tag_value).await? {
            groups.entry(i.gateway_id.clone()).or_default().push(i);
        }
        let rows = self.store.gateway_ids(MAX_ROWS).await?;
        if rows.len() >= MAX_ROWS {
            tracing::warn!(max = MAX_ROWS, "more gateway rows than a run walks");
        }
        for gateway_id in rows {
            groups.entry(gateway_id).or_default();
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
        let checks = observed.into_iter().map(|(record, current, actions)| {
            let status = current.as_ref().and_then(|c| statuses.get(&c.id).copied());
            let probe = current
                .as_ref()
                .and_then(|c| probes.get(&c.id).cloned())
                .unwrap_or(Probe::NotChecked);
            let o = Observed { record, current, status, probe, deadline };
            self.check(o, &addresses, &trigger, now, actions)
        });
        let checked: Vec<GatewayReport> =
            futures::stream::iter(checks).buffer_unordered(CONCURRENCY).collect().await;
        reports.extend(checked);
        reports.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
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
        deadline: tokio::time::Instant,
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
        let o = Observed { record, current, status, probe, deadline };
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
                let record = GatewayRecord {
                    launch: Some(current.launch_template()),
                    ..GatewayRecord::new(gateway_id, &current.id, allocation.clone())
                };
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

    /// Records `subject` as an [`Action::Alarm`] and publishes it (not in dry-run mode).
    pub(super) async fn alarm(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopts_the_running_newest_instance() {
        let at = |s| OffsetDateTime::from_unix_timestamp(s).ok();
        let mk = |id: &str, l, t| Instance { launch_time: at(t), ..Instance::bare(id, l) };
        let list = [
            mk("old", Lifecycle::Running, 1),
            mk("new", Lifecycle::Running, 2),
            mk("dead", Lifecycle::Terminated, 3),
        ];
        assert_eq!(choose_current(&list).map(|i| i.id.as_str()), Some("new"));
        assert!(choose_current(&[]).is_none());
    }
}
