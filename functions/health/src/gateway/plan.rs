//! The pure decisions: from what was observed about one gateway to what to do
//! ([`plan`]), and which backup images to create and delete ([`plan_images`]). No I/O: every
//! rule is unit-tested below.

use super::model::{GatewayRecord, Image, Instance, Lifecycle, Phase, Status};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// Knobs of the health rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Consecutive failed health-URL checks that make a gateway sick (at least 1).
    pub failure_threshold: u32,
    /// How long after a reboot a still-sick gateway is left before it is recovered.
    pub reboot_grace: Duration,
}

/// The gateway software's own health check this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "probe", content = "detail", rename_all = "snake_case")]
pub enum Probe {
    /// No health URL configured for the instance, or it was not checked (not running).
    NotChecked,
    /// The URL answered 2xx within the timeout.
    Passed,
    /// It did not: the status or error.
    Failed(String),
}

/// What invoked the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// The EventBridge schedule.
    Schedule,
    /// An "EC2 Instance State-change Notification" for `instance_id`.
    StateChange {
        /// The instance whose state changed.
        instance_id: String,
        /// The new state named in the event.
        state: String,
    },
    /// An EventBridge event of a kind this function does not handle (ignored).
    Other {
        /// Its `detail-type`.
        detail_type: String,
    },
}

/// Everything [`plan`] looks at for one gateway.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Now.
    pub now: OffsetDateTime,
    /// The gateway's state row.
    pub record: &'a GatewayRecord,
    /// The row's current instance as described; `None` when EC2 no longer knows it.
    pub current: Option<&'a Instance>,
    /// Its status checks (`None` when not reported, e.g. not running).
    pub status: Option<Status>,
    /// Its health URL check.
    pub probe: Probe,
    /// What invoked us.
    pub trigger: &'a Trigger,
}

/// What to do about one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Serving: record it healthy if the row says otherwise (`reset`: failures or a reboot
    /// to clear).
    Healthy {
        /// The row needs writing (failures to reset, or back from `rebooted`).
        reset: bool,
    },
    /// The health URL failed, not yet `failure_threshold` times in a row: record the count.
    CountFailure {
        /// Consecutive failures including this one.
        failures: u32,
    },
    /// Sick: reboot once (`RebootInstances`).
    Reboot {
        /// Why.
        reason: String,
    },
    /// Rebooted and still sick, within the grace period: leave it be until `until`.
    AwaitReboot {
        /// End of the grace period.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// Replace the instance (launch, move the Elastic IP, terminate the failed one).
    Recover {
        /// Why.
        reason: String,
    },
    /// A recovery is under way: resume it where it stopped.
    ResumeRecovery,
    /// In transition (pending, stopping): look again next time.
    Wait {
        /// Why.
        reason: String,
    },
    /// Nothing for this gateway (an event about an instance that is not its current one).
    Ignore {
        /// Why.
        reason: String,
    },
}

/// Decides what to do about one gateway. Rules, in order:
///
/// 1. a state-change event about an instance that is neither the current instance nor the
///    replacement of an unfinished recovery: [`Decision::Ignore`] (e.g. the failed instance
///    this function terminated itself);
/// 2. a recovery under way: [`Decision::ResumeRecovery`];
/// 3. the current instance unknown to EC2, stopped or terminated: [`Decision::Recover`]
///    (this function never stops instances and terminates only replaced ones);
/// 4. not running (pending, stopping, shutting down): [`Decision::Wait`];
/// 5. running, healthy phase: a status check `impaired`, or the health URL failing for the
///    `failure_threshold`-th time in a row: [`Decision::Reboot`]; a failure below the
///    threshold: [`Decision::CountFailure`]; else [`Decision::Healthy`];
/// 6. running, rebooted phase: still sick (impaired, or the health URL failing once) after
///    `reboot_grace`: [`Decision::Recover`]; within it: [`Decision::AwaitReboot`]; well
///    again: [`Decision::Healthy`] (back to the healthy phase); still sick and the reboot
///    never went out (`RebootInstances` failed): [`Decision::Reboot`] again.
pub fn plan(o: &Observation<'_>, settings: &HealthSettings) -> Decision {
    let record = o.record;
    let recovery = record.recovery();
    if let Trigger::StateChange { instance_id, .. } = o.trigger {
        let replacement = recovery.and_then(|r| r.replacement.as_deref());
        if *instance_id != record.instance_id && replacement != Some(instance_id.as_str()) {
            return Decision::Ignore {
                reason: format!(
                    "{instance_id} is not gateway {}'s current instance ({})",
                    record.gateway_id, record.instance_id
                ),
            };
        }
    }
    if recovery.is_some() {
        return Decision::ResumeRecovery;
    }
    let Some(current) = o.current else {
        return Decision::Recover {
            reason: format!("instance {} no longer exists", record.instance_id),
        };
    };
    match current.lifecycle {
        Lifecycle::Running => {}
        l if l.is_down() => {
            return Decision::Recover {
                reason: format!("instance {} is {}", current.id, lifecycle_name(l)),
            }
        }
        l => {
            return Decision::Wait {
                reason: format!("instance {} is {}", current.id, lifecycle_name(l)),
            }
        }
    }
    let impaired = o.status.filter(Status::impaired).map(|s| {
        format!("status checks impaired (system {:?}, instance {:?})", s.system, s.instance)
    });
    let probe_failure = match &o.probe {
        Probe::Failed(why) => Some(why.as_str()),
        Probe::NotChecked | Probe::Passed => None,
    };
    match &record.phase {
        Phase::Healthy => {
            if let Some(reason) = impaired {
                return Decision::Reboot { reason };
            }
            let Some(why) = probe_failure else {
                return Decision::Healthy { reset: record.health_failures > 0 };
            };
            let failures = record.health_failures.saturating_add(1);
            if failures >= settings.failure_threshold.max(1) {
                Decision::Reboot {
                    reason: format!("health URL failed {failures} times in a row: {why}"),
                }
            } else {
                Decision::CountFailure { failures }
            }
        }
        Phase::Rebooted { at, sent } => {
            let sick =
                impaired.or_else(|| probe_failure.map(|w| format!("health URL failed: {w}")));
            match sick {
                None => Decision::Healthy { reset: true },
                Some(reason) if !sent => {
                    Decision::Reboot { reason: format!("reboot not sent yet: {reason}") }
                }
                Some(reason) => {
                    let until = *at + settings.reboot_grace;
                    if o.now >= until {
                        Decision::Recover { reason: format!("still sick after reboot: {reason}") }
                    } else {
                        Decision::AwaitReboot { until }
                    }
                }
            }
        }
        Phase::Recovering(_) => Decision::ResumeRecovery,
    }
}

fn lifecycle_name(l: Lifecycle) -> &'static str {
    match l {
        Lifecycle::Pending => "pending",
        Lifecycle::Running => "running",
        Lifecycle::Stopping => "stopping",
        Lifecycle::Stopped => "stopped",
        Lifecycle::ShuttingDown => "shutting-down",
        Lifecycle::Terminated => "terminated",
        Lifecycle::Unknown => "in an unknown state",
    }
}

/// Knobs of the backup schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSettings {
    /// Recovery point objective: one image per gateway per interval of this length (at least
    /// a minute), intervals aligned to the Unix epoch.
    pub rpo: Duration,
    /// Images kept per gateway (at least 1), the one being created included; the newest
    /// available image is kept beyond it.
    pub retention: usize,
}

/// Start of the RPO interval holding `now`.
pub fn interval_start(now: OffsetDateTime, rpo: Duration) -> OffsetDateTime {
    let step = rpo.whole_seconds().max(1);
    let secs = now.unix_timestamp();
    let start = secs - secs.rem_euclid(step);
    OffsetDateTime::from_unix_timestamp(start).unwrap_or(now)
}

/// The deterministic image name of `gateway_id`'s backup for the interval starting at
/// `start`: `streamstack-gw-<gateway id>-<YYYYMMDDTHHMMSSZ>`, characters AMI names do not
/// allow replaced by `-`, at most 128 characters. `CreateImage` refuses a second image of
/// the same name, so a retried run creates nothing new.
pub fn image_name(gateway_id: &str, start: OffsetDateTime) -> String {
    let safe: String = gateway_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "()[]./-'@_".contains(c) { c } else { '-' })
        .take(90)
        .collect();
    let (date, clock) = (start.date(), start.time());
    format!(
        "streamstack-gw-{safe}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    )
}

/// Backup work for one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ImagePlan {
    /// Name of the image to create this interval, if none exists yet.
    pub create: Option<String>,
    /// Images to delete (`DeregisterImage`, then `DeleteSnapshot` of their snapshots).
    pub prune: Vec<String>,
}

/// Plans `gateway_id`'s backups from its existing `images` (those this function created).
///
/// - create: when `can_create` (the gateway is healthy and running) and no image carries
///   this interval's [`image_name`] (whatever its state);
/// - prune: images newest first (creation time, then name), the planned one counted first;
///   the first `retention` are kept, the newest `available` one is always kept, `pending`
///   ones are never deleted; the rest are pruned.
pub fn plan_images(
    gateway_id: &str,
    images: &[Image],
    now: OffsetDateTime,
    settings: &ImageSettings,
    can_create: bool,
) -> ImagePlan {
    let name = image_name(gateway_id, interval_start(now, settings.rpo));
    let create = (can_create && !images.iter().any(|i| i.name == name)).then_some(name);
    let mut sorted: Vec<&Image> = images.iter().collect();
    sorted.sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));
    let keep = settings.retention.max(1).saturating_sub(usize::from(create.is_some()));
    let newest_available = sorted.iter().find(|i| i.is_available()).map(|i| i.id.clone());
    let prune = sorted
        .iter()
        .skip(keep)
        .filter(|i| !i.is_pending() && Some(&i.id) != newest_available.as_ref())
        .map(|i| i.id.clone())
        .collect();
    ImagePlan { create, prune }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::model::{CheckStatus, Recovery};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);
    const SETTINGS: HealthSettings =
        HealthSettings { failure_threshold: 3, reboot_grace: Duration::minutes(10) };

    fn instance(id: &str, lifecycle: Lifecycle) -> Instance {
        Instance {
            image_id: Some("ami-1".into()),
            instance_type: Some("c6i.large".into()),
            private_ip: Some("10.0.0.5".into()),
            ..Instance::bare(id, lifecycle)
        }
    }

    fn record(phase: Phase, failures: u32) -> GatewayRecord {
        GatewayRecord { phase, health_failures: failures, ..GatewayRecord::new("gw", "i-1", None) }
    }

    fn decide(
        record: &GatewayRecord,
        current: Option<&Instance>,
        status: Option<Status>,
        probe: Probe,
        trigger: &Trigger,
    ) -> Decision {
        plan(&Observation { now: NOW, record, current, status, probe, trigger }, &SETTINGS)
    }

    fn scheduled(record: &GatewayRecord, status: Status, probe: Probe) -> Decision {
        decide(
            record,
            Some(&instance("i-1", Lifecycle::Running)),
            Some(status),
            probe,
            &Trigger::Schedule,
        )
    }

    /// A scheduled run on a healthy row, `current` in a state where nothing was checked.
    fn scheduled_unchecked(current: Option<&Instance>) -> Decision {
        decide(&record(Phase::Healthy, 0), current, None, Probe::NotChecked, &Trigger::Schedule)
    }

    const SYSTEM_IMPAIRED: Status =
        Status { system: CheckStatus::Impaired, instance: CheckStatus::Ok };
    const INSTANCE_IMPAIRED: Status =
        Status { system: CheckStatus::Ok, instance: CheckStatus::Impaired };

    #[test]
    fn healthy_gateway_needs_nothing() {
        let d = scheduled(&record(Phase::Healthy, 0), Status::OK, Probe::Passed);
        assert_eq!(d, Decision::Healthy { reset: false });
        let d = scheduled(&record(Phase::Healthy, 0), Status::OK, Probe::NotChecked);
        assert_eq!(d, Decision::Healthy { reset: false });
    }

    #[test]
    fn a_passed_probe_resets_failures() {
        let d = scheduled(&record(Phase::Healthy, 2), Status::OK, Probe::Passed);
        assert_eq!(d, Decision::Healthy { reset: true });
    }

    #[test]
    fn system_or_instance_impaired_reboots() {
        for status in [SYSTEM_IMPAIRED, INSTANCE_IMPAIRED] {
            let d = scheduled(&record(Phase::Healthy, 0), status, Probe::NotChecked);
            assert!(matches!(d, Decision::Reboot { .. }), "{status:?}: {d:?}");
        }
    }

    #[test]
    fn initializing_or_insufficient_data_is_not_sick() {
        for check in
            [CheckStatus::Initializing, CheckStatus::InsufficientData, CheckStatus::Unknown]
        {
            let status = Status { system: check, instance: check };
            assert!(!status.impaired());
            let d = scheduled(&record(Phase::Healthy, 0), status, Probe::NotChecked);
            assert_eq!(d, Decision::Healthy { reset: false });
        }
    }

    #[test]
    fn health_url_failures_count_up_to_the_threshold_then_reboot() {
        let failed = || Probe::Failed("HTTP 500".into());
        let d = scheduled(&record(Phase::Healthy, 0), Status::OK, failed());
        assert_eq!(d, Decision::CountFailure { failures: 1 });
        let d = scheduled(&record(Phase::Healthy, 1), Status::OK, failed());
        assert_eq!(d, Decision::CountFailure { failures: 2 });
        let d = scheduled(&record(Phase::Healthy, 2), Status::OK, failed());
        assert!(
            matches!(d, Decision::Reboot { ref reason } if reason.contains("3 times")),
            "{d:?}"
        );
    }

    #[test]
    fn threshold_one_reboots_on_the_first_failure() {
        let s = HealthSettings { failure_threshold: 1, ..SETTINGS };
        let r = record(Phase::Healthy, 0);
        let i = instance("i-1", Lifecycle::Running);
        let o = Observation {
            now: NOW,
            record: &r,
            current: Some(&i),
            status: Some(Status::OK),
            probe: Probe::Failed("timeout".into()),
            trigger: &Trigger::Schedule,
        };
        assert!(matches!(plan(&o, &s), Decision::Reboot { .. }));
    }

    #[test]
    fn rebooted_and_still_sick_waits_out_the_grace_period() {
        let at = NOW - Duration::minutes(5);
        let d = scheduled(
            &record(Phase::Rebooted { at, sent: true }, 0),
            SYSTEM_IMPAIRED,
            Probe::NotChecked,
        );
        assert_eq!(d, Decision::AwaitReboot { until: at + Duration::minutes(10) });
    }

    #[test]
    fn rebooted_and_still_sick_after_grace_recovers() {
        let at = NOW - Duration::minutes(10);
        let d = scheduled(
            &record(Phase::Rebooted { at, sent: true }, 0),
            INSTANCE_IMPAIRED,
            Probe::NotChecked,
        );
        assert!(matches!(d, Decision::Recover { .. }), "{d:?}");
        // One health URL failure after the reboot is enough.
        let d = scheduled(
            &record(Phase::Rebooted { at, sent: true }, 0),
            Status::OK,
            Probe::Failed("x".into()),
        );
        assert!(matches!(d, Decision::Recover { .. }), "{d:?}");
    }

    #[test]
    fn an_unsent_reboot_is_sent_again_while_sick() {
        let at = NOW - Duration::minutes(30);
        let r = record(Phase::Rebooted { at, sent: false }, 0);
        let d = scheduled(&r, INSTANCE_IMPAIRED, Probe::NotChecked);
        assert!(matches!(d, Decision::Reboot { .. }), "{d:?}");
        assert_eq!(scheduled(&r, Status::OK, Probe::Passed), Decision::Healthy { reset: true });
    }

    #[test]
    fn rebooted_and_well_again_is_healthy() {
        let at = NOW - Duration::minutes(1);
        let d =
            scheduled(&record(Phase::Rebooted { at, sent: true }, 0), Status::OK, Probe::Passed);
        assert_eq!(d, Decision::Healthy { reset: true });
    }

    #[test]
    fn stopped_terminated_or_missing_instance_recovers() {
        for l in [Lifecycle::Stopped, Lifecycle::Terminated] {
            let d = scheduled_unchecked(Some(&instance("i-1", l)));
            assert!(matches!(d, Decision::Recover { .. }), "{l:?}: {d:?}");
        }
        let d = scheduled_unchecked(None);
        assert!(
            matches!(d, Decision::Recover { ref reason } if reason.contains("no longer exists"))
        );
    }

    #[test]
    fn transitional_states_wait() {
        for l in [Lifecycle::Pending, Lifecycle::Stopping, Lifecycle::ShuttingDown] {
            let d = scheduled_unchecked(Some(&instance("i-1", l)));
            assert!(matches!(d, Decision::Wait { .. }), "{l:?}: {d:?}");
        }
    }

    #[test]
    fn state_change_of_the_current_instance_recovers() {
        let i = instance("i-1", Lifecycle::Stopped);
        let t = Trigger::StateChange { instance_id: "i-1".into(), state: "stopped".into() };
        let d = decide(&record(Phase::Healthy, 0), Some(&i), None, Probe::NotChecked, &t);
        assert!(matches!(d, Decision::Recover { .. }), "{d:?}");
    }

    #[test]
    fn state_change_of_another_instance_is_ignored() {
        // The failed instance this function terminated after the row moved on.
        let i = instance("i-2", Lifecycle::Running);
        let r = GatewayRecord::new("gw", "i-2", None);
        let t = Trigger::StateChange { instance_id: "i-1".into(), state: "terminated".into() };
        let d = decide(&r, Some(&i), None, Probe::NotChecked, &t);
        assert!(matches!(d, Decision::Ignore { .. }), "{d:?}");
    }

    #[test]
    fn a_recovery_under_way_is_resumed() {
        let recovery = Recovery {
            failed_instance: "i-1".into(),
            replacement: Some("i-9".into()),
            attempt: 0,
            reason: "x".into(),
            started_at: NOW,
        };
        let r = record(Phase::Recovering(recovery), 0);
        let i = instance("i-1", Lifecycle::Running);
        assert_eq!(scheduled(&r, Status::OK, Probe::Passed), Decision::ResumeRecovery);
        // Events about the failed instance or the replacement resume it too.
        for id in ["i-1", "i-9"] {
            let t = Trigger::StateChange { instance_id: id.into(), state: "terminated".into() };
            assert_eq!(decide(&r, Some(&i), None, Probe::NotChecked, &t), Decision::ResumeRecovery);
        }
    }

    const IMAGES: ImageSettings = ImageSettings { rpo: Duration::hours(24), retention: 3 };

    fn image(id: &str, hours_ago: i64, state: &str) -> Image {
        let created = NOW - Duration::hours(hours_ago);
        Image {
            id: id.into(),
            name: image_name("gw", interval_start(created, Duration::hours(1))),
            state: state.into(),
            created: Some(created),
            snapshot_ids: vec![format!("snap-{id}")],
        }
    }

    #[test]
    fn image_names_are_per_gateway_and_interval() {
        let a = image_name("gw 1/x", interval_start(NOW, Duration::hours(24)));
        assert_eq!(a, "streamstack-gw-gw-1/x-20261124T000000Z");
        let later = interval_start(NOW + Duration::hours(11), Duration::hours(24));
        assert_eq!(image_name("gw 1/x", later), a);
        let next = interval_start(NOW + Duration::hours(12), Duration::hours(24));
        assert_ne!(image_name("gw 1/x", next), a);
        assert!(image_name(&"g".repeat(500), NOW).len() <= 128);
    }

    #[test]
    fn creates_one_image_per_interval() {
        let p = plan_images("gw", &[], NOW, &IMAGES, true);
        assert_eq!(p.create.as_deref(), Some("streamstack-gw-gw-20261124T000000Z"));
        let existing =
            Image { name: p.create.clone().unwrap_or_default(), ..image("ami-a", 1, "pending") };
        assert_eq!(plan_images("gw", &[existing], NOW, &IMAGES, true).create, None);
    }

    #[test]
    fn no_image_of_a_sick_gateway() {
        assert_eq!(plan_images("gw", &[], NOW, &IMAGES, false), ImagePlan::default());
    }

    #[test]
    fn prunes_beyond_retention_counting_the_new_image() {
        let images =
            [image("a", 72, "available"), image("b", 48, "available"), image("c", 24, "available")];
        let p = plan_images("gw", &images, NOW, &IMAGES, true);
        assert!(p.create.is_some());
        assert_eq!(p.prune, vec!["a".to_owned()]);
        // Without a new image: three kept.
        assert!(plan_images("gw", &images, NOW, &IMAGES, false).prune.is_empty());
    }

    #[test]
    fn keeps_the_newest_available_image_beyond_retention() {
        let s = ImageSettings { retention: 2, ..IMAGES };
        let images = [
            image("old", 96, "available"),
            image("good", 72, "available"),
            image("bad1", 48, "failed"),
            image("bad2", 24, "disabled"),
        ];
        let p = plan_images("gw", &images, NOW, &s, true);
        // Kept: the new one, bad2 (retention 2), good (newest available).
        assert_eq!(p.prune, vec!["bad1".to_owned(), "old".to_owned()]);
    }

    #[test]
    fn never_prunes_pending_images() {
        let s = ImageSettings { retention: 1, ..IMAGES };
        let images = [image("p", 48, "pending"), image("a", 24, "available")];
        let p = plan_images("gw", &images, NOW, &s, true);
        assert!(p.prune.is_empty(), "{p:?}");
    }
}
