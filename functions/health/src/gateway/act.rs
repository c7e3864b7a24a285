//! Deciding and acting for one gateway: [`plan`] on what was observed, then the check /
//! reboot path (record the Elastic IP allocation, mark healthy and back up, count a
//! failure, reboot after a won `healthy -> rebooted` write, recorded sent once the call
//! succeeded; keep the launch settings of a healthy instance; publish an alarm a finished
//! recovery left pending) or a hand-over to
//! [`recovery`](super::recovery).

use super::model::{Address, Phase};
use super::plan::{plan, Decision, Observation, Trigger};
use super::report::{Action, GatewayReport, RunError};
use super::run::{address_of, Gateways, Observed};
use serde_json::json;
use time::OffsetDateTime;

impl Gateways {
    /// Decides and acts for one gateway; errors end its steps and go into the report.
    pub(super) async fn check(
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

    /// The steps of `decision` (planned only, in dry-run mode), appended to `actions`.
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
        if let (Some(alarm), false) = (&record.alarm_pending, self.dry()) {
            // A finished recovery whose alarm was not confirmed published.
            self.publish_pending(gw, alarm, actions).await;
        }
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
                let current = o.current.as_ref().filter(|c| c.id == record.instance_id);
                if let Some(launch) = current.map(|c| c.launch_template()) {
                    if record.launch.as_ref() != Some(&launch) {
                        // Kept for a replacement once EC2 no longer describes the instance.
                        actions.push(Action::SaveLaunch);
                        if !self.dry() {
                            self.store.save_launch(gw, &record.instance_id, &launch).await?;
                        }
                    }
                }
                if let (Trigger::Schedule, Some(current)) = (trigger, current) {
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
                // A reboot whose call failed is marked again (and sent again) by one check.
                let unsent = match record.phase {
                    Phase::Rebooted { at, sent: false } => Some(at),
                    _ => None,
                };
                if !self.store.mark_rebooted(gw, &record.instance_id, now, unsent).await? {
                    actions.pop();
                    actions.push(Action::Skipped {
                        reason: "another invocation already acted".into(),
                    });
                    return Ok(());
                }
                self.ec2.reboot(&record.instance_id).await?;
                self.store.reboot_sent(gw, &record.instance_id, now).await?;
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
}
