//! Restart policy of device tasks: capped exponential backoff, crash-loop detection, and
//! the reset after a healthy run. Pure: the handler reads the device, asks [`next_record`],
//! and writes the answer conditionally.

use super::event::StopKind;
use std::time::Duration;
use streamstack_core::device::Device;
use streamstack_core::device_health::{HealthRecord, TaskExit};
use time::OffsetDateTime;

/// Restart settings (environment variables in brackets, with their defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Backoff after the first failure in a window; doubles with each further one
    /// (`RESTART_BACKOFF_BASE_SECS`, 10 s).
    pub backoff_base: Duration,
    /// Cap of the backoff (`RESTART_BACKOFF_MAX_SECS`, 600 s).
    pub backoff_max: Duration,
    /// Failures within [`RestartPolicy::crash_window`] that make a crash loop: the device is
    /// marked failed and an alarm published (`CRASH_LOOP_RESTARTS`, 5).
    pub crash_loop_restarts: u32,
    /// The crash window (`CRASH_LOOP_WINDOW_SECS`, 1800 s): failures further apart than this
    /// from the window's first one start a new count.
    pub crash_window: Duration,
    /// A task that ran at least this long before failing was healthy: the count starts over
    /// (`HEALTHY_RUN_SECS`, 600 s).
    pub healthy_run: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(600),
            crash_loop_restarts: 5,
            crash_window: Duration::from_secs(1800),
            healthy_run: Duration::from_secs(600),
        }
    }
}

impl RestartPolicy {
    /// The backoff before restart number `restarts` (1-based): base × 2^(restarts − 1),
    /// capped at [`RestartPolicy::backoff_max`].
    pub fn backoff(&self, restarts: u32) -> Duration {
        let factor = 1u32.checked_shl(restarts.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

/// What the device should record after `exit` (a stop of kind `kind` of a task that started
/// running at `started_at`, if it did), at `now`.
///
/// A task that ran at least [`RestartPolicy::healthy_run`] was healthy: the count starts
/// over. Then:
/// - [`StopKind::Failure`], and a clean exit (code 0) of a task that was not healthy (a
///   streamer that exits at once would otherwise restart forever): counted. The count also
///   starts over when the window's first failure is older than
///   [`RestartPolicy::crash_window`]; the restart waits [`RestartPolicy::backoff`]; the
///   [`RestartPolicy::crash_loop_restarts`]-th failure in a window sets `failed_at` (and
///   `alarm_pending`).
/// - [`StopKind::Interrupted`] otherwise: not counted, no backoff.
/// - [`StopKind::Intended`] never reaches here.
pub fn next_record(
    policy: &RestartPolicy,
    device: &Device,
    kind: StopKind,
    started_at: Option<OffsetDateTime>,
    exit: TaskExit,
    now: OffsetDateTime,
) -> HealthRecord {
    let healthy = started_at.is_some_and(|s| exit.stopped_at - s >= policy.healthy_run);
    let counted = kind == StopKind::Failure || (exit.exit_code == Some(0) && !healthy);
    if !counted {
        let (restarts, window_start) =
            if healthy { (0, None) } else { (device.restarts, device.restart_window_start) };
        return HealthRecord {
            restarts,
            window_start,
            not_before: None,
            failed_at: device.failed_at,
            alarm_pending: false,
            exit,
        };
    }
    let window_over =
        device.restart_window_start.is_none_or(|w| exit.stopped_at - w > policy.crash_window);
    let (restarts, window_start) = if healthy || window_over || device.restarts == 0 {
        (1, Some(exit.stopped_at))
    } else {
        (device.restarts.saturating_add(1), device.restart_window_start)
    };
    let failed = restarts >= policy.crash_loop_restarts;
    HealthRecord {
        restarts,
        window_start,
        not_before: (!failed).then(|| now + policy.backoff(restarts)),
        failed_at: if failed { Some(device.failed_at.unwrap_or(now)) } else { None },
        alarm_pending: failed && device.failed_at.is_none(),
        exit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamstack_core::media_url::MediaUrl;
    use time::Duration as Span;

    fn exit(at: OffsetDateTime) -> TaskExit {
        TaskExit {
            task_arn: "t".into(),
            version: 3,
            stopped_at: at,
            stop_code: "EssentialContainerExited".into(),
            exit_code: Some(137),
            reason: "Essential container in task exited".into(),
        }
    }

    fn apply(d: &mut Device, r: &HealthRecord) {
        d.restarts = r.restarts;
        d.restart_window_start = r.window_start;
        d.not_before = r.not_before;
        d.failed_at = r.failed_at;
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let p = RestartPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(p.backoff(u32::MAX), p.backoff_max);
    }

    #[test]
    fn crash_loop_fails_the_device_and_healthy_runs_reset() {
        let p = RestartPolicy::default();
        let t0 = OffsetDateTime::now_utc();
        let url = MediaUrl::seal("rtsp://cam/s", "d", None).unwrap();
        let mut d = Device::new("d", "gw", url, streamstack_core::Playback::Public, t0);
        for n in 1..=4u32 {
            let at = t0 + Span::seconds(i64::from(n) * 30);
            let r =
                next_record(&p, &d, StopKind::Failure, Some(at - Span::seconds(5)), exit(at), at);
            assert_eq!(r.restarts, n);
            assert_eq!(r.not_before, Some(at + p.backoff(n)));
            assert!(r.failed_at.is_none());
            apply(&mut d, &r);
        }
        // An interruption neither counts nor waits.
        let at = t0 + Span::seconds(140);
        let r = next_record(&p, &d, StopKind::Interrupted, None, exit(at), at);
        assert_eq!((r.restarts, r.not_before), (4, None));
        // The fifth failure in the window: failed, no further restart.
        let at = t0 + Span::seconds(150);
        let r = next_record(&p, &d, StopKind::Failure, Some(at - Span::seconds(5)), exit(at), at);
        assert_eq!(r.restarts, 5);
        assert_eq!((r.failed_at, r.not_before), (Some(at), None));
        // A long healthy run before failing starts the count over.
        let at = t0 + Span::hours(1);
        let r = next_record(&p, &d, StopKind::Failure, Some(at - Span::minutes(20)), exit(at), at);
        assert_eq!((r.restarts, r.failed_at), (1, None));
        // A clean exit right after starting counts (no endless restarts); after a healthy run
        // it is an interruption that also starts the count over.
        let at = t0 + Span::seconds(140);
        let mut clean = exit(at);
        clean.exit_code = Some(0);
        let r = next_record(
            &p,
            &d,
            StopKind::Interrupted,
            Some(at - Span::seconds(3)),
            clean.clone(),
            at,
        );
        assert_eq!(r.restarts, 5);
        assert!(r.alarm_pending && r.failed_at.is_some());
        let r = next_record(&p, &d, StopKind::Interrupted, Some(at - Span::hours(1)), clean, at);
        assert_eq!((r.restarts, r.not_before, r.failed_at), (0, None, None));
        // So does a failure after the window.
        let at = t0 + Span::minutes(31);
        let r = next_record(&p, &d, StopKind::Failure, Some(at - Span::seconds(5)), exit(at), at);
        assert_eq!(r.restarts, 1);
    }
}
