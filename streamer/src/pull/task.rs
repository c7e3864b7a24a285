//! One pulled source's task: open its output, connect, receive, reconnect with backoff.

use super::{open_source, Backoff, Output, PullContext, PullSource, Shutdown, StateReporter};
use crate::ingest::{redact_url, MediaSource, SourceError};
use crate::media::{MediaEvent, Timeline};
use crate::publish::{PublishError, Revocation};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Media must flow this long before the reconnect backoff starts again from its first step:
/// a source that connects, sends a frame and breaks is not retried every second.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Resolves once the process is shutting down.
async fn stopping(stop: &mut Shutdown) {
    if stop.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps `delay` unless the process starts shutting down first (then `false`).
async fn wait(delay: Duration, stop: &mut Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stopping(stop) => false,
    }
}

/// How receiving from one connection ended.
enum Ended {
    /// The source failed or ended (`permanent`: retry at the longest backoff); reconnect.
    Source { error: String, permanent: bool },
    /// A passive source (UDP) went quiet: flush, keep listening on the same socket.
    Quiet(String),
    /// The channel's publish was revoked.
    Revoked(Revocation),
    /// The process is stopping.
    Stop,
}

/// One open connection and the bytes counted before it.
struct Connection {
    media: Box<dyn MediaSource>,
    bytes_before: u64,
}

impl Connection {
    fn bytes_in(&self) -> u64 {
        self.bytes_before + self.media.bytes_in()
    }
}

/// Pulls one source into its target until shutdown, or until the channel is deleted or
/// expires. A channel publish revoked for another reason (lease lost or lapsed, key
/// rotated) is finished and its output opened again after a backoff.
pub(super) async fn pull_one(context: Arc<PullContext>, source: PullSource, stop: Shutdown) {
    let target = source.target.to_string();
    let store = context.state_store(&source.target);
    let mut state = StateReporter::new(store, &target, source.target.id());
    let bytes_in = pull_until_stopped(&context, &source, &mut state, stop).await;
    state.stopped(bytes_in).await;
}

/// [`pull_one`]'s loop; returns the bytes received when it ends.
async fn pull_until_stopped(
    context: &Arc<PullContext>,
    source: &PullSource,
    state: &mut StateReporter,
    mut stop: Shutdown,
) -> u64 {
    let mut backoff = Backoff::new(Duration::from_secs(1), context.max_backoff);
    let mut timeline = Timeline::new(context.media.max_timestamp_jump);
    let mut bytes_in = 0u64;
    loop {
        let Some(mut output) = open_output(context, source, state, &mut backoff, &mut stop).await
        else {
            return bytes_in;
        };
        tracing::info!("pulling");
        let revoked = pull_into(
            context,
            source,
            &mut output,
            &mut timeline,
            state,
            &mut backoff,
            &mut bytes_in,
            &mut stop,
        )
        .await;
        let report = output.finish(stop.clone()).await;
        tracing::info!(?report, "output finished");
        match revoked {
            None | Some(Revocation::Deleted | Revocation::Expired) => return bytes_in,
            Some(reason) => {
                timeline.restart();
                state.reconnecting(&format!("publish ended: {reason}"), bytes_in);
                if !wait(backoff.delay(false), &mut stop).await {
                    return bytes_in;
                }
            }
        }
    }
}

/// Opens the target's output, retrying with backoff; `None` when shutting down first.
async fn open_output(
    context: &PullContext,
    source: &PullSource,
    state: &mut StateReporter,
    backoff: &mut Backoff,
    stop: &mut Shutdown,
) -> Option<Output> {
    loop {
        match context.open_output(source, stop).await {
            Ok(output) => return Some(output),
            Err(e) => {
                let permanent = matches!(e, PublishError::UnknownChannel);
                state.reconnecting(&format!("output: {e}"), 0);
                if !wait(backoff.delay(permanent), stop).await {
                    return None;
                }
            }
        }
    }
}

/// Connects and receives into `output` until shutdown (`None`) or a revocation of the
/// channel's publish.
#[allow(clippy::too_many_arguments)]
async fn pull_into(
    context: &PullContext,
    source: &PullSource,
    output: &mut Output,
    timeline: &mut Timeline,
    state: &mut StateReporter,
    backoff: &mut Backoff,
    bytes_in: &mut u64,
    stop: &mut Shutdown,
) -> Option<Revocation> {
    let mut kept: Option<Connection> = None;
    loop {
        let mut connection = match kept.take() {
            Some(connection) => connection,
            None => {
                let opened = tokio::select! {
                    opened = open_source(&source.url, &context.sources) => opened,
                    () = stopping(stop) => return None,
                };
                match opened {
                    Ok(media) => Connection { media, bytes_before: *bytes_in },
                    Err(e) => {
                        let error = redact_url(&e.to_string());
                        if !failed(
                            output,
                            timeline,
                            state,
                            backoff,
                            &error,
                            e.is_permanent(),
                            *bytes_in,
                            stop,
                        )
                        .await
                        {
                            return None;
                        }
                        continue;
                    }
                }
            }
        };
        let ended = receive(&mut connection, output, timeline, state, backoff, stop).await;
        *bytes_in = connection.bytes_in();
        match ended {
            Ended::Stop => return None,
            Ended::Revoked(reason) => {
                tracing::warn!(%reason, "channel publish ended");
                return Some(reason);
            }
            Ended::Quiet(error) => {
                // No backoff: the socket stays open, whatever arrives next is recorded.
                output.flush().await;
                timeline.restart();
                state.reconnecting(&error, *bytes_in);
                kept = Some(connection);
            }
            Ended::Source { error, permanent } => {
                drop(connection);
                let error = redact_url(&error);
                if !failed(output, timeline, state, backoff, &error, permanent, *bytes_in, stop)
                    .await
                {
                    return None;
                }
            }
        }
    }
}

/// After a failed connection: flush what was received (a source down for hours leaves no
/// segment or archive hour open in memory), mark the next frames as a discontinuity, report,
/// and wait the backoff. `false` when shutting down meanwhile.
#[allow(clippy::too_many_arguments)]
async fn failed(
    output: &mut Output,
    timeline: &mut Timeline,
    state: &mut StateReporter,
    backoff: &mut Backoff,
    error: &str,
    permanent: bool,
    bytes_in: u64,
    stop: &mut Shutdown,
) -> bool {
    output.flush().await;
    timeline.restart();
    state.reconnecting(error, bytes_in);
    wait(backoff.delay(permanent), stop).await
}

/// Feeds one connection's events into `output` until it fails, goes quiet, the process
/// stops, or the channel's publish is revoked.
async fn receive(
    connection: &mut Connection,
    output: &mut Output,
    timeline: &mut Timeline,
    state: &mut StateReporter,
    backoff: &mut Backoff,
    stop: &mut Shutdown,
) -> Ended {
    let mut flowing_since: Option<Instant> = None;
    let mut stable = false;
    loop {
        let event = tokio::select! {
            event = connection.media.next_event() => event,
            reason = output.revoked() => return Ended::Revoked(reason),
            () = stopping(stop) => return Ended::Stop,
        };
        let mut event = match event {
            Ok(Some(event)) => event,
            Ok(None) => {
                return Ended::Source { error: "source ended the stream".into(), permanent: false }
            }
            Err(e @ SourceError::Timeout(_)) if connection.media.survives_timeout() => {
                return Ended::Quiet(e.to_string())
            }
            Err(e) => return Ended::Source { error: e.to_string(), permanent: e.is_permanent() },
        };
        if let MediaEvent::Frame(frame) = &mut event {
            timeline.map_frame(frame);
            state.receiving(connection.bytes_in());
        }
        if let Err(e) = output.push(&event).await {
            // A segment over its byte limit was dropped (the segmenter records on from the
            // next IDR); anything else (the store cannot keep up) is worth a reconnect.
            if !matches!(e, PublishError::Mux(_)) {
                return Ended::Source { error: e.to_string(), permanent: false };
            }
            tracing::warn!(error = %e, "segment dropped");
            flowing_since = None;
            continue;
        }
        let since = *flowing_since.get_or_insert_with(Instant::now);
        if !stable && since.elapsed() >= STABLE_AFTER {
            backoff.reset();
            stable = true;
        }
    }
}
