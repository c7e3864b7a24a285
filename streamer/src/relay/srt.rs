//! SRT publishing: an `srt-tokio` caller sending MPEG-TS from our [`TsMuxer`], seven 188-byte
//! packets per SRT message (1316 bytes), PAT/PMT in front of every IDR.
//!
//! Frames are paced: none is sent ahead of real time (its DTS from the first frame's, on the
//! wall clock from when that was sent). A live source arrives in real time anyway; a burst
//! (a backlog ahead of the clock) would otherwise leave SRT's live sender, which paces by
//! its estimate of the input rate, holding packets past their latency and dropping them.
//! At the end the worker waits one SRT latency before closing: receivers drop what they
//! still hold for delivery when the shutdown arrives.
//!
//! Limits: the program always declares an H.264 stream and carries the PCR on it, so an
//! audio-only stream reaches the destination without PCR (most receivers need video).

use super::queue::Ending;
use super::{RelayError, RelaySettings, Shared};
use crate::media::{MediaEvent, Track};
use crate::ts::TsMuxer;
use bytes::Bytes;
use futures::SinkExt;
use srt_tokio::SrtSocket;
use std::time::{Duration, Instant};
use streamstack_core::relay::Endpoint;
use tokio::time::Instant as TokioInstant;

/// Bytes of one SRT message: 7 TS packets (fits SRT's 1456-byte payload).
const MESSAGE: usize = 7 * 188;
/// SRT latency when the URL sets none (libsrt's default is 120 ms; 1 s tolerates long RTTs).
const DEFAULT_LATENCY: Duration = Duration::from_secs(1);
/// A frame further ahead of the pacing clock than this re-anchors the clock instead of
/// being waited for (a timeline rebase).
const MAX_LEAD: Duration = Duration::from_secs(2);
/// SRT passphrase length bounds (SRTO_PASSPHRASE).
const PASSPHRASE: std::ops::RangeInclusive<usize> = 10..=79;

/// A connected SRT caller.
pub(super) struct Publisher {
    socket: SrtSocket,
    latency: Duration,
}

fn srt(e: impl std::fmt::Display) -> RelayError {
    RelayError::Srt(e.to_string())
}

impl Publisher {
    /// Resolves the host and completes the SRT handshake as caller; the caller bounds the
    /// time taken.
    ///
    /// # Errors
    /// [`RelayError::Connect`] when the name does not resolve, [`RelayError::Srt`] for a bad
    /// passphrase length or a failed handshake (srt-tokio's text; no secret in it).
    pub(super) async fn connect(endpoint: &Endpoint) -> Result<Self, RelayError> {
        let Endpoint::Srt { host, port, streamid, passphrase, latency } = endpoint else {
            return Err(RelayError::Protocol("not an srt endpoint".into()));
        };
        let addr = super::dial::resolve(host, *port).await?[0];
        let latency = latency.unwrap_or(DEFAULT_LATENCY);
        let mut builder = SrtSocket::builder().latency(latency);
        if let Some(p) = passphrase {
            // srt-tokio checks (and panics on) the length in bytes.
            if !PASSPHRASE.contains(&p.len()) {
                return Err(RelayError::Srt("passphrase must be 10 to 79 bytes".into()));
            }
            builder = builder.encryption(16, p.clone());
        }
        let socket = builder.call(addr, streamid.as_deref()).await.map_err(srt)?;
        Ok(Self { socket, latency })
    }

    /// Sends the queue of `shared` until it ends (`Ok`, after closing the socket) or a send
    /// fails or stalls for [`RelaySettings::write_timeout`].
    pub(super) async fn run(
        mut self,
        shared: &Shared,
        settings: &RelaySettings,
    ) -> Result<(), RelayError> {
        let mut mux = TsMuxer::new(false);
        let mut out: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut started = false;
        let mut clock: Option<(TokioInstant, u64)> = None;
        let within = settings.write_timeout;
        while let Some(event) = shared.queue.pop().await {
            match &event {
                MediaEvent::Tracks(tracks) => mux.set_has_audio(tracks.audio.is_some()),
                MediaEvent::Frame(frame) => {
                    let now = TokioInstant::now();
                    let (t0, d0) = *clock.get_or_insert((now, frame.dts));
                    let ahead = Duration::from_micros(frame.dts.saturating_sub(d0) * 100 / 9);
                    let at = t0 + ahead;
                    if at > now + MAX_LEAD {
                        clock = Some((now, frame.dts));
                    } else if at > now && pace(at, shared).await {
                        return Ok(()); // stopped: the socket closes when dropped
                    }
                    let key = frame.track == Track::Video && frame.idr;
                    if key || !started {
                        mux.write_tables(&mut out).map_err(srt)?;
                        started = true;
                    }
                    mux.write_frame(frame, &mut out).map_err(srt)?;
                }
            }
            let whole = out.len() - out.len() % MESSAGE;
            if whole > 0 {
                self.send(&out[..whole], within).await?;
                shared.add_sent(whole);
                out.drain(..whole);
            }
        }
        if !out.is_empty() {
            self.send(&out, within).await?;
            shared.add_sent(out.len());
        }
        if shared.queue.ending() == Some(Ending::Drain) {
            tokio::time::sleep(self.latency).await;
        }
        let _ = tokio::time::timeout(within, self.socket.close()).await;
        Ok(())
    }

    /// Feeds `bytes` as 1316-byte messages (the last one shorter if need be) and flushes.
    async fn send(&mut self, bytes: &[u8], within: Duration) -> Result<(), RelayError> {
        let socket = &mut self.socket;
        let send = async {
            for chunk in bytes.chunks(MESSAGE) {
                socket.feed((Instant::now(), Bytes::copy_from_slice(chunk))).await?;
            }
            socket.flush().await
        };
        tokio::time::timeout(within, send)
            .await
            .map_err(|_| RelayError::Timeout("srt send", within))?
            .map_err(|e| RelayError::Io("srt send", e))
    }
}

/// Waits until `at`; `true` when the worker is asked to stop meanwhile (a drain waits on).
async fn pace(at: TokioInstant, shared: &Shared) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(at) => false,
        ending = shared.queue.ended() => {
            if ending == Ending::Stop {
                return true;
            }
            tokio::time::sleep_until(at).await;
            false
        }
    }
}
