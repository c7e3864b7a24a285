//! The reconcile plan: a pure function from what was observed (devices, slots, tasks) to the
//! actions that make the actual state match the desired one. No I/O here, so every rule is
//! unit-tested; [`crate::reconcile`] observes and acts.
//!
//! Desired: every enabled device whose gateway reported it online inside the online window
//! and whose restart backoff (`not_before`) has passed ([`Device::is_desired`]), in exactly
//! one slot, with exactly one live task per non-empty slot.
//!
//! Rules, in order:
//! 1. A device unseen for the age-out window is deleted (and so leaves its slot).
//! 2. A slot member that is gone, not desired, or claimed by another slot is taken out; one
//!    whose URL changed gets the new digest in its slot (its task restarts that pull); one
//!    not claimed for its slot is claimed again.
//! 3. A desired device in no slot is assigned: to `dev-<id>` with one device per task, else
//!    to the first slot with room (by id), else to a new `grp-…` slot. A device already
//!    claimed for a slot that does not list it (a crashed or concurrent assign) is added to
//!    that slot again (idempotent).
//! 4. A non-empty slot without a live task gets one started, unless another reconciler's
//!    start claim is unexpired, or the task it recorded may still be starting (then it is
//!    verified first); extra tasks of a slot are stopped (the recorded one is kept, else the
//!    oldest). Starts per run are capped, the rest wait for the next run.
//! 5. An emptied slot's tasks are stopped and the slot is deleted; a task whose slot does not
//!    exist is stopped.

use crate::tasks::TaskInfo;
use std::collections::{BTreeMap, HashMap, HashSet};
use streamstack_core::device::{Device, DeviceSettings};
use streamstack_core::slot::Slot;
use time::OffsetDateTime;

/// Knobs of a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSettings {
    /// Devices per streamer task (`DEVICES_PER_TASK`, 1..=100).
    pub devices_per_task: usize,
    /// Online window and age-out.
    pub device: DeviceSettings,
    /// Most task starts per run (`MAX_TASK_STARTS_PER_RUN`).
    pub max_starts: usize,
}

/// What was observed. Tasks must be listed before slots and devices are read, so a task
/// started by a concurrent reconciler always finds its slot in the view.
#[derive(Debug, Clone)]
pub struct View {
    /// Every device.
    pub devices: Vec<Device>,
    /// Every slot.
    pub slots: Vec<Slot>,
    /// Every live streamer task.
    pub tasks: Vec<TaskInfo>,
    /// When the view was taken.
    pub now: OffsetDateTime,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete a device unseen for the age-out window (if still unseen).
    AgeOut {
        /// The device as observed.
        device: Box<Device>,
    },
    /// Take `device` out of `slot`, then clear the device's slot (when it still exists).
    Unassign {
        /// Slot id.
        slot: String,
        /// Device id.
        device: String,
        /// Why, for the log.
        why: &'static str,
    },
    /// Record `device`'s new URL digest in `slot`.
    SetDigest {
        /// Slot id.
        slot: String,
        /// Device id.
        device: String,
        /// New digest.
        digest: String,
    },
    /// Claim `device` for `slot`, then add it (creating the slot unless `exists`).
    Assign {
        /// Slot id.
        slot: String,
        /// Whether the slot item exists.
        exists: bool,
        /// Device id.
        device: String,
        /// Its URL digest.
        digest: String,
    },
    /// Start `slot`'s task under a claim at `generation`.
    Start {
        /// Slot id.
        slot: String,
        /// Observed generation (0 for a slot this plan creates).
        generation: u64,
        /// Members after this plan, for the assignment tag and device records.
        devices: BTreeMap<String, String>,
    },
    /// The slot's recorded task is not among the listed ones (ECS lists eventually): describe
    /// it, and start a new task only if it is gone.
    Verify {
        /// Slot id.
        slot: String,
        /// The recorded task.
        task_arn: String,
        /// Observed generation.
        generation: u64,
        /// Members after this plan.
        devices: BTreeMap<String, String>,
        /// When the task was recorded.
        started_at: Option<OffsetDateTime>,
    },
    /// Stop a task.
    Stop {
        /// Task ARN.
        task_arn: String,
        /// Reason, without the reconciler prefix.
        reason: String,
    },
    /// Delete an emptied slot (if still empty and at `generation`).
    DeleteSlot {
        /// Slot id.
        slot: String,
        /// Observed generation.
        generation: u64,
    },
    /// Show `task_arn` on the device (it is in `slot`).
    RecordTask {
        /// Device id.
        device: String,
        /// Its slot.
        slot: String,
        /// The slot's task.
        task_arn: String,
    },
}

/// Computes the actions that move `view` towards the desired state.
pub fn plan(view: &View, settings: &PlanSettings) -> Vec<Action> {
    let now = view.now;
    let capacity = settings.devices_per_task.max(1);
    let mut actions = Vec::new();

    // 1. Age-out.
    let mut devices: HashMap<&str, &Device> = HashMap::new();
    for device in &view.devices {
        if now - device.last_seen() > settings.device.age_out {
            actions.push(Action::AgeOut { device: Box::new(device.clone()) });
        } else {
            devices.insert(&device.id, device);
        }
    }
    let desired = |id: &str| devices.get(id).is_some_and(|d| d.is_desired(now, &settings.device));

    // 2. Slot members. `members` is the projected membership after this plan.
    let mut members: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let mut placed: HashSet<String> = HashSet::new();
    let mut slots: Vec<&Slot> = view.slots.iter().collect();
    slots.sort_by(|a, b| a.id.cmp(&b.id));
    for slot in &slots {
        let kept = members.entry(&slot.id).or_default();
        for (id, digest) in &slot.devices {
            let device = devices.get(id.as_str());
            let why = match device {
                None => Some("device deleted or aged out"),
                Some(_) if !desired(id) => {
                    Some("device not desired (disabled, offline or backing off)")
                }
                Some(d) if d.slot.as_deref().is_some_and(|s| s != slot.id) => {
                    Some("device claimed by another slot")
                }
                Some(_) if placed.contains(id) => Some("device already in another slot"),
                Some(_) if kept.len() >= capacity => Some("slot over capacity"),
                Some(_) => None,
            };
            if let Some(why) = why {
                actions.push(Action::Unassign { slot: slot.id.clone(), device: id.clone(), why });
                continue;
            }
            let current = &devices[id.as_str()].media_url.digest;
            if current != digest {
                actions.push(Action::SetDigest {
                    slot: slot.id.clone(),
                    device: id.clone(),
                    digest: current.clone(),
                });
            }
            if devices[id.as_str()].slot.is_none() {
                // Listed but not claimed (an assign that lost a race released its claim after
                // another's add): claim it again, idempotently, so its task is shown on it.
                actions.push(Action::Assign {
                    slot: slot.id.clone(),
                    exists: true,
                    device: id.clone(),
                    digest: current.clone(),
                });
            }
            kept.insert(id.clone(), current.clone());
            placed.insert(id.clone());
        }
    }

    // 3. Desired devices in no slot.
    let existing: HashSet<&str> = view.slots.iter().map(|s| s.id.as_str()).collect();
    let mut new_slots: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut unplaced: Vec<&&Device> =
        devices.values().filter(|d| desired(&d.id) && !placed.contains(&d.id)).collect();
    unplaced.sort_by(|a, b| a.id.cmp(&b.id));
    for device in unplaced {
        let digest = device.media_url.digest.clone();
        let slot = match &device.slot {
            // Claimed for a slot that does not list it: finish that assignment.
            Some(slot) => slot.clone(),
            None if capacity == 1 => Slot::single_id(&device.id),
            None => {
                let roomy = members
                    .iter()
                    .find(|(_, m)| m.len() < capacity)
                    .map(|(id, _)| (*id).to_owned())
                    .or_else(|| {
                        new_slots.iter().find(|(_, m)| m.len() < capacity).map(|(id, _)| id.clone())
                    });
                roomy.unwrap_or_else(Slot::group_id)
            }
        };
        let exists = existing.contains(slot.as_str());
        actions.push(Action::Assign {
            slot: slot.clone(),
            exists,
            device: device.id.clone(),
            digest: digest.clone(),
        });
        match members.get_mut(slot.as_str()) {
            Some(m) => {
                m.insert(device.id.clone(), digest);
            }
            None => {
                new_slots.entry(slot).or_default().insert(device.id.clone(), digest);
            }
        }
    }

    // 4 and 5. Tasks.
    let mut tasks_by_slot: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
    for task in view.tasks.iter().filter(|t| t.is_alive()) {
        match task.slot.as_deref() {
            Some(slot) if existing.contains(slot) => {
                tasks_by_slot.entry(slot).or_default().push(task)
            }
            Some(_) => actions.push(Action::Stop {
                task_arn: task.arn.clone(),
                reason: "slot no longer exists".into(),
            }),
            None => {} // not started by a reconciler: not ours to stop
        }
    }
    let mut starts = 0usize;
    let mut start = |actions: &mut Vec<Action>, action: Action| {
        if starts < settings.max_starts {
            starts += 1;
            actions.push(action);
        }
    };
    for slot in slots {
        let projected = members.get(slot.id.as_str()).cloned().unwrap_or_default();
        let mut tasks = tasks_by_slot.remove(slot.id.as_str()).unwrap_or_default();
        if projected.is_empty() {
            for task in tasks {
                actions.push(Action::Stop {
                    task_arn: task.arn.clone(),
                    reason: "slot emptied".into(),
                });
            }
            actions.push(Action::DeleteSlot { slot: slot.id.clone(), generation: slot.generation });
            continue;
        }
        // Keep the recorded task, else the oldest; stop the others.
        tasks
            .sort_by_key(|t| (Some(&t.arn) != slot.task_arn.as_ref(), t.created_at, t.arn.clone()));
        if let Some((keep, extra)) = tasks.split_first() {
            for task in extra {
                actions.push(Action::Stop {
                    task_arn: task.arn.clone(),
                    reason: "duplicate task for slot".into(),
                });
            }
            for id in projected.keys() {
                let shown = devices.get(id.as_str()).and_then(|d| d.task_arn.as_deref());
                if shown != Some(keep.arn.as_str()) {
                    actions.push(Action::RecordTask {
                        device: id.clone(),
                        slot: slot.id.clone(),
                        task_arn: keep.arn.clone(),
                    });
                }
            }
            continue;
        }
        if slot.start.as_ref().is_some_and(|c| c.until > now) {
            continue; // another reconciler is starting it
        }
        let action = match &slot.task_arn {
            Some(arn) => Action::Verify {
                slot: slot.id.clone(),
                task_arn: arn.clone(),
                generation: slot.generation,
                devices: projected,
                started_at: slot.started_at,
            },
            None => Action::Start {
                slot: slot.id.clone(),
                generation: slot.generation,
                devices: projected,
            },
        };
        start(&mut actions, action);
    }
    for (slot, projected) in new_slots {
        start(&mut actions, Action::Start { slot, generation: 0, devices: projected });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamstack_core::device::DeviceStatus;
    use streamstack_core::media_url::MediaUrl;
    use time::Duration;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn device(id: &str, online: bool) -> Device {
        let url = MediaUrl::seal(&format!("rtsp://cam/{id}"), id, None).unwrap();
        let mut d = Device::new(
            id,
            "gw",
            url,
            streamstack_core::Playback::Public,
            now() - Duration::hours(1),
        );
        if online {
            d.reported = DeviceStatus::Online;
            d.last_heartbeat = Some(now() - Duration::minutes(1));
        }
        d
    }

    fn slot(id: &str, members: &[&Device]) -> Slot {
        Slot {
            id: id.into(),
            devices: members.iter().map(|d| (d.id.clone(), d.media_url.digest.clone())).collect(),
            generation: 1,
            task_arn: Some(format!("arn:task/{id}")),
            start: None,
            started_at: None,
        }
    }

    fn task(slot: &str) -> TaskInfo {
        TaskInfo {
            arn: format!("arn:task/{slot}"),
            slot: Some(slot.into()),
            assignment: None,
            last_status: "RUNNING".into(),
            desired_status: "RUNNING".into(),
            created_at: Some(now()),
        }
    }

    fn settings(k: usize) -> PlanSettings {
        PlanSettings { devices_per_task: k, device: DeviceSettings::default(), max_starts: 500 }
    }

    fn view(devices: Vec<Device>, slots: Vec<Slot>, tasks: Vec<TaskInfo>) -> View {
        View { devices, slots, tasks, now: now() }
    }

    fn count(actions: &[Action], f: impl Fn(&Action) -> bool) -> usize {
        actions.iter().filter(|a| f(a)).count()
    }

    #[test]
    fn empty_to_online_devices_assigns_and_starts_one_task_each() {
        let devices: Vec<Device> = (0..20).map(|i| device(&format!("cam{i}"), true)).collect();
        let actions = plan(&view(devices, vec![], vec![]), &settings(1));
        assert_eq!(count(&actions, |a| matches!(a, Action::Assign { exists: false, .. })), 20);
        assert_eq!(count(&actions, |a| matches!(a, Action::Start { generation: 0, .. })), 20);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Assign { slot, .. } if slot == "dev-cam3")));
    }

    #[test]
    fn a_member_without_its_claim_is_claimed_again() {
        let d = device("cam", true);
        let s = slot("dev-cam", &[&d]);
        let actions = plan(&view(vec![d.clone()], vec![s], vec![task("dev-cam")]), &settings(1));
        assert!(actions.contains(&Action::Assign {
            slot: "dev-cam".into(),
            exists: true,
            device: "cam".into(),
            digest: d.media_url.digest.clone(),
        }));
    }

    #[test]
    fn steady_state_is_a_no_op() {
        let mut d = device("cam", true);
        d.slot = Some("dev-cam".into());
        d.task_arn = Some("arn:task/dev-cam".into());
        let s = slot("dev-cam", &[&d]);
        assert_eq!(plan(&view(vec![d], vec![s], vec![task("dev-cam")]), &settings(1)), vec![]);
    }

    #[test]
    fn offline_disabled_backing_off_and_deleted_devices_leave_and_tasks_stop() {
        let offline = device("a", false);
        let mut disabled = device("b", true);
        disabled.enabled = false;
        let mut backing_off = device("c", true);
        backing_off.not_before = Some(now() + Duration::seconds(30));
        let gone = device("d", true);
        let slots = vec![
            slot("dev-a", &[&offline]),
            slot("dev-b", &[&disabled]),
            slot("dev-c", &[&backing_off]),
            slot("dev-d", &[&gone]),
        ];
        let tasks = vec![task("dev-a"), task("dev-b"), task("dev-c"), task("dev-d")];
        let actions = plan(&view(vec![offline, disabled, backing_off], slots, tasks), &settings(1));
        assert_eq!(count(&actions, |a| matches!(a, Action::Unassign { .. })), 4);
        assert_eq!(
            count(
                &actions,
                |a| matches!(a, Action::Stop { reason, .. } if reason == "slot emptied")
            ),
            4
        );
        assert_eq!(count(&actions, |a| matches!(a, Action::DeleteSlot { .. })), 4);
        assert_eq!(count(&actions, |a| matches!(a, Action::Start { .. })), 0);
    }

    #[test]
    fn heartbeat_older_than_the_window_means_offline_and_age_out_deletes() {
        let mut stale = device("a", true);
        stale.last_heartbeat = Some(now() - Duration::minutes(21));
        let mut ancient = device("b", true);
        ancient.last_heartbeat = Some(now() - Duration::days(8));
        let actions = plan(&view(vec![stale, ancient], vec![], vec![]), &settings(1));
        assert_eq!(
            count(&actions, |a| matches!(a, Action::AgeOut { device } if device.id == "b")),
            1
        );
        assert_eq!(count(&actions, |a| matches!(a, Action::Assign { .. })), 0);
    }

    #[test]
    fn url_change_updates_the_slot_digest_and_keeps_the_task() {
        let mut d = device("cam", true);
        d.slot = Some("dev-cam".into());
        d.task_arn = Some("arn:task/dev-cam".into());
        let s = slot("dev-cam", &[&d]);
        d.media_url = MediaUrl::seal("rtsp://cam/other", "cam", None).unwrap();
        let actions = plan(&view(vec![d.clone()], vec![s], vec![task("dev-cam")]), &settings(1));
        assert_eq!(
            actions,
            vec![Action::SetDigest {
                slot: "dev-cam".into(),
                device: "cam".into(),
                digest: d.media_url.digest
            }]
        );
    }

    #[test]
    fn packs_k_devices_per_task() {
        let devices: Vec<Device> = (0..18).map(|i| device(&format!("cam{i:02}"), true)).collect();
        let actions = plan(&view(devices, vec![], vec![]), &settings(4));
        let starts: Vec<usize> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { devices, .. } => Some(devices.len()),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 5);
        assert_eq!(starts.iter().sum::<usize>(), 18);
        assert!(starts.iter().all(|&n| n <= 4));
    }

    #[test]
    fn missing_task_restarts_pending_claim_waits_and_duplicates_stop() {
        let mut d = device("cam", true);
        d.slot = Some("dev-cam".into());
        let mut s = slot("dev-cam", &[&d]);
        // Recorded task not listed: verify, not blind start.
        let actions = plan(&view(vec![d.clone()], vec![s.clone()], vec![]), &settings(1));
        assert!(matches!(&actions[..], [Action::Verify { .. }]));
        // Another reconciler's claim is live: nothing.
        s.start = Some(streamstack_core::slot::StartClaim {
            token: "t".into(),
            until: now() + Duration::seconds(30),
        });
        assert_eq!(plan(&view(vec![d.clone()], vec![s.clone()], vec![]), &settings(1)), vec![]);
        // Two tasks: the recorded one is kept.
        s.start = None;
        let mut other = task("dev-cam");
        other.arn = "arn:task/zzz".into();
        other.created_at = Some(now() - Duration::hours(1));
        let actions = plan(&view(vec![d], vec![s], vec![other, task("dev-cam")]), &settings(1));
        assert!(actions.contains(&Action::Stop {
            task_arn: "arn:task/zzz".into(),
            reason: "duplicate task for slot".into()
        }));
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::Stop { task_arn, .. } if task_arn == "arn:task/dev-cam")));
    }

    #[test]
    fn orphan_tasks_stop_foreign_tasks_stay_and_starts_are_capped() {
        let mut foreign = task("x");
        foreign.slot = None;
        let actions = plan(&view(vec![], vec![], vec![task("ghost"), foreign]), &settings(1));
        assert_eq!(actions.len(), 1);
        assert!(
            matches!(&actions[0], Action::Stop { reason, .. } if reason == "slot no longer exists")
        );
        let devices: Vec<Device> = (0..10).map(|i| device(&format!("c{i}"), true)).collect();
        let mut s = settings(1);
        s.max_starts = 3;
        let actions = plan(&view(devices, vec![], vec![]), &s);
        assert_eq!(count(&actions, |a| matches!(a, Action::Start { .. })), 3);
    }
}
