//! Recovery of a failed gateway onto a replacement instance, under the gateway's lock: find
//! a recorded or tagged replacement or launch one (newest backup image, else the failed
//! instance's own; its type, network, key, profile and tags, as EC2 describes it or, once it
//! no longer does, as the gateway's row keeps them; an idempotent [`client_token`]), record
//! it, await it (bounded by `GATEWAY_RUNNING_WAIT_SECS` and the invocation's deadline;
//! resumed next run while pending), move the Elastic IP, terminate the failed instance,
//! finish the row with the alarm pending, publish it, clear it (a run that finds it pending
//! publishes it again). In dry-run mode the steps are only planned.

use super::config::FINISH_RESERVE;
use super::ec2::LaunchSpec;
use super::model::{
    Address, Image, Instance, Lifecycle, Lock, PendingAlarm, SavedLaunch, GATEWAY_ID_TAG,
    REPLACES_TAG,
};
use super::report::{Action, RunError};
use super::run::{address_of, Gateways, Observed};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

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

impl Gateways {
    /// The gateway's newest available backup image.
    async fn newest_backup(&self, gateway_id: &str) -> Result<Option<Image>, RunError> {
        let images = self.ec2.gateway_images(gateway_id).await?;
        Ok(images
            .into_iter()
            .filter(Image::is_available)
            .max_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name))))
    }

    /// What a replacement of `failed_id` is launched with (from `source`, its launch
    /// settings), for attempt `attempt`.
    async fn launch_spec(
        &self,
        gw: &str,
        failed_id: &str,
        source: &SavedLaunch,
        attempt: u32,
    ) -> Result<LaunchSpec, RunError> {
        let image_id = match self.newest_backup(gw).await? {
            Some(image) => image.id,
            None => source.image_id.clone().ok_or_else(|| RunError::Recovery {
                gateway_id: gw.into(),
                reason: format!("no backup image and no image id of {failed_id}"),
            })?,
        };
        let mut tags: Vec<(String, String)> = source
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("aws:") && k.as_str() != REPLACES_TAG)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.push((REPLACES_TAG.into(), failed_id.into()));
        if !source.tags.contains_key(GATEWAY_ID_TAG) {
            // The gateway was identified by its instance id: the replacement carries it on.
            tags.push((GATEWAY_ID_TAG.into(), gw.into()));
        }
        Ok(LaunchSpec {
            image_id,
            instance_type: source.instance_type.clone(),
            subnet_id: source.subnet_id.clone(),
            security_group_ids: source.security_group_ids.clone(),
            key_name: source.key_name.clone(),
            instance_profile_arn: source.instance_profile_arn.clone(),
            tags,
            client_token: client_token(gw, failed_id, attempt),
        })
    }

    /// Publishes `alarm`, left pending in the row by a finished recovery, then clears it;
    /// a failure is logged and reported (the next run publishes it again).
    pub(super) async fn publish_pending(
        &self,
        gw: &str,
        alarm: &PendingAlarm,
        actions: &mut Vec<Action>,
    ) {
        if let Err(e) = self.alarm(&alarm.subject, alarm.message.clone(), actions).await {
            tracing::warn!(gateway_id = gw, error = %e, "alarm not published; next run retries");
            actions.push(Action::Skipped { reason: format!("alarm not published: {e}") });
            return;
        }
        if let Err(e) = self.store.clear_alarm(gw, alarm).await {
            tracing::warn!(gateway_id = gw, error = %e, "published alarm not cleared");
        }
    }

    /// Recovers (or resumes recovering) the gateway under its lock.
    pub(super) async fn recover(
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
        if self.time_left(o.deadline).is_zero() {
            actions.push(Action::Skipped {
                reason: "the invocation's time budget is spent: the next run recovers".into(),
            });
            return Ok(());
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
            .recover_locked(gw, failed.as_ref(), &lock.owner, addresses, o.deadline, actions)
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

    /// The recovery steps under the lock (of the row's failed instance, `failed` as
    /// described); `Ok(true)` finished, `Ok(false)` to be resumed.
    async fn recover_locked(
        &self,
        gw: &str,
        failed: Option<&Instance>,
        owner: &str,
        addresses: &[Address],
        deadline: tokio::time::Instant,
        actions: &mut Vec<Action>,
    ) -> Result<bool, RunError> {
        let lost =
            || RunError::Recovery { gateway_id: gw.into(), reason: "recovery lock lost".into() };
        let record = self.store.get(gw).await?.ok_or_else(lost)?;
        let recovery = record.recovery().cloned().ok_or_else(lost)?;
        let failed_id = recovery.failed_instance.as_str();
        let failed = failed.filter(|f| f.id == failed_id);
        let mut image_id = None;
        let replacement =
            match recovery.replacement.clone() {
                Some(id) => id,
                None => {
                    let found =
                        self.ec2.replacements_of(failed_id).await?.into_iter().find(|i| {
                            matches!(i.lifecycle, Lifecycle::Pending | Lifecycle::Running)
                        });
                    let id = match found {
                        Some(i) => i.id,
                        None => {
                            // As EC2 describes the failed instance, else as the row keeps it.
                            let source = failed
                                .map(Instance::launch_template)
                                .or_else(|| record.launch.clone())
                                .ok_or_else(|| RunError::Recovery {
                                    gateway_id: gw.into(),
                                    reason: format!(
                                        "{failed_id} is gone and the row keeps no launch settings"
                                    ),
                                })?;
                            let spec =
                                self.launch_spec(gw, failed_id, &source, recovery.attempt).await?;
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
        let lifecycle = self.wait_running(&replacement, deadline).await?;
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
        let alarm = PendingAlarm {
            subject: format!("Gateway {gw} recovered onto {replacement}"),
            message: json!({ "kind": "gateway_recovered", "gateway_id": gw,
                "failed_instance": failed_id, "replacement": replacement, "image_id": image_id,
                "allocation_id": allocation, "public_ip": public_ip, "reason": recovery.reason,
                "attempt": recovery.attempt }),
        };
        // Finished with the alarm pending, then published: a retry neither redoes the
        // recovery nor republishes; a lost publish is redone by the next run.
        if !self
            .store
            .finish_recovery(gw, owner, &replacement, allocation.as_deref(), &alarm)
            .await?
        {
            return Err(lost());
        }
        actions.push(Action::FinishRecovery { instance_id: replacement });
        self.publish_pending(gw, &alarm, actions).await;
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
                let failed_id =
                    recovery.map_or(record.instance_id.as_str(), |r| r.failed_instance.as_str());
                let Some(source) =
                    failed.map(Instance::launch_template).or_else(|| record.launch.clone())
                else {
                    actions.push(Action::Skipped {
                        reason: "failed instance is gone and the row keeps no launch settings"
                            .into(),
                    });
                    return Ok(());
                };
                let attempt = recovery.map_or(0, |r| r.attempt);
                let spec = self.launch_spec(gw, failed_id, &source, attempt).await?;
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

    /// The invocation's time left for starting work: until `deadline` minus
    /// [`FINISH_RESERVE`].
    fn time_left(&self, deadline: tokio::time::Instant) -> std::time::Duration {
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(FINISH_RESERVE)
    }

    /// Polls the instance until it leaves `pending`, at most `running_wait` and the time
    /// left before `deadline` (one poll every `poll`); its last state (`Pending` when the
    /// wait ran out).
    async fn wait_running(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Lifecycle, RunError> {
        let wait = self.config.running_wait.min(self.time_left(deadline));
        let deadline = tokio::time::Instant::now() + wait;
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
}
