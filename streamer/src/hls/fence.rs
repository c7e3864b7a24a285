//! [`LiveFence`]: until when a publish may still write its channel's live playlist.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Until when a publish may write the channel's live playlist (`<prefix>/index.m3u8`).
///
/// A publish holds a lease on its channel; once the lease may have lapsed, another streamer
/// task may claim the channel and write the same playlist, so this one must stop writing it
/// (split brain). The lease keeper moves the fence forward after each renewal to the lease's
/// expiry as seen on the local monotonic clock from *before* the renewal call, less a
/// margin; the uploader skips live-playlist writes past it (segments and the session's own
/// recording playlist go on). A fence that was never set allows everything (offline remux,
/// tests).
#[derive(Debug, Default)]
pub struct LiveFence {
    until: Mutex<Option<Instant>>,
}

impl LiveFence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Allows live-playlist writes until `until` (earlier or later than before).
    pub fn hold_until(&self, until: Instant) {
        *self.lock() = Some(until);
    }

    /// Forbids live-playlist writes from now on.
    pub fn revoke(&self) {
        self.hold_until(Instant::now());
    }

    /// Whether a live-playlist write may happen now.
    pub fn allows(&self) -> bool {
        self.lock().is_none_or(|until| Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unset_allows_held_allows_until_then_not() {
        let fence = LiveFence::default();
        assert!(fence.allows());
        fence.hold_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.allows());
        fence.hold_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.allows());
        fence.hold_until(Instant::now() + Duration::from_secs(60));
        fence.revoke();
        assert!(!fence.allows());
    }
}
