//! One destination's worker: connect, publish while live, back off and retry after errors,
//! until the [`RelaySet`](super::RelaySet) asks it to end.

use super::queue::Ending;
use super::{rtmp, srt, RelayError, RelaySettings, RelayState, Shared};
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::relay::Endpoint;
use tokio::time::Instant;

/// A connection publishing on a destination.
enum Session {
    Rtmp(rtmp::Publisher),
    Srt(srt::Publisher),
}

impl Session {
    async fn connect(endpoint: &Endpoint, settings: &RelaySettings) -> Result<Self, RelayError> {
        let within = settings.connect_timeout;
        let connect = async {
            Ok(match endpoint {
                Endpoint::Rtmp { .. } => Self::Rtmp(rtmp::Publisher::connect(endpoint).await?),
                Endpoint::Srt { .. } => Self::Srt(srt::Publisher::connect(endpoint).await?),
            })
        };
        tokio::time::timeout(within, connect)
            .await
            .map_err(|_| RelayError::Timeout("connect and publish", within))?
    }

    /// Publishes the queue until it ends (`Ok`) or the connection fails.
    async fn run(self, shared: &Shared, settings: &RelaySettings) -> Result<(), RelayError> {
        match self {
            Self::Rtmp(p) => p.run(shared, settings).await,
            Self::Srt(p) => p.run(shared, settings).await,
        }
    }
}

/// The delay before attempt `failures + 1`: `min` doubled per failure beyond the first,
/// capped at `max`.
pub(super) fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    min.saturating_mul(1 << doublings).min(max)
}

/// Resolves `within` after the worker is asked to stop: the time its connection gets to
/// close the stream (deleteStream) before it is dropped.
async fn stop_deadline(shared: &Shared, within: Duration) {
    shared.queue.stopped().await;
    tokio::time::sleep(within).await;
}

/// The worker task of one destination.
pub(super) async fn run(
    shared: Arc<Shared>,
    endpoint: Result<Endpoint, RelayError>,
    settings: RelaySettings,
) {
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(relay = %shared.id, error = %e, "relay destination unusable");
            shared.set(RelayState::Retrying, Some(&e));
            shared.queue.ended().await;
            return;
        }
    };
    let mut failures = 0u32;
    loop {
        if failures > 0 {
            shared.count_reconnect();
        }
        shared.set(RelayState::Connecting, None);
        let attempt = tokio::select! {
            attempt = Session::connect(&endpoint, &settings) => attempt,
            _ = shared.queue.ended() => return,
        };
        let error = match attempt {
            Ok(session) => {
                tracing::info!(relay = %shared.id, url = %shared.masked, "relay live");
                // Open before reporting live: frames pushed once the state reads live count.
                shared.queue.open();
                shared.set(RelayState::Live, None);
                let since = Instant::now();
                let result = tokio::select! {
                    result = session.run(&shared, &settings) => result,
                    () = stop_deadline(&shared, settings.stop_timeout) => Ok(()),
                };
                shared.queue.close();
                if since.elapsed() >= settings.backoff_reset {
                    failures = 0;
                }
                match result {
                    Ok(()) => {
                        tracing::info!(relay = %shared.id, url = %shared.masked, "relay ended");
                        return;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if shared.queue.ending() == Some(Ending::Stop) {
            return;
        }
        failures = failures.saturating_add(1);
        shared.set(RelayState::Retrying, Some(&error));
        let delay = backoff(failures, settings.backoff_min, settings.backoff_max);
        let shown = streamstack_core::relay::url::scrub(&error.to_string(), &shared.secrets);
        tracing::warn!(relay = %shared.id, url = %shared.masked, error = %shown, ?delay, "relay failed, retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.queue.ended() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<u64> = (1..=8).map(|f| backoff(f, min, max).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }
}
