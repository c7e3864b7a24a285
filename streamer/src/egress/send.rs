//! The sending half of the egress: segments in order through the [`Rewriter`], the
//! [`Interpolator`] and the [`Scheduler`], out as datagrams of [`PACKETS_PER_DATAGRAM`]
//! packets (1316 bytes: the payload every IP/UDP MPEG-TS receiver expects, SMPTE 2022-2
//! / ETSI TS 102 034 §4.1.3 without RTP). Packets left over at a segment's end (after its
//! last PCR, or not filling a datagram) wait for the next segment, so every datagram is
//! whole and evenly paced; at the source's end (`EXT-X-ENDLIST`) the remainder is padded
//! with null packets (PID 0x1FFF) and sent.

use super::follow::{stopped, Item, SegmentData};
use super::pacer::{Interpolator, Reanchor, Scheduler};
use super::rewrite::{RewriteStats, Rewriter, NULL_PID, PACKET_SIZE, SYNC_BYTE};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// TS packets per datagram.
pub const PACKETS_PER_DATAGRAM: usize = 7;
/// Datagram payload, bytes (7 × 188 = 1316).
pub const DATAGRAM_BYTES: usize = PACKETS_PER_DATAGRAM * PACKET_SIZE;
/// A datagram due within this is sent at once (timer granularity): 1 ms.
pub const SEND_AHEAD: Duration = Duration::from_millis(1);

/// What the egress did, for the closing log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Datagrams sent.
    pub datagrams: u64,
    /// Bytes sent (UDP payload).
    pub bytes: u64,
    /// Segments sent.
    pub segments: u64,
    /// Media sent, seconds (sum of `EXTINF`).
    pub media_secs: f64,
    /// Discontinuities (playlist tags, restarts, gaps).
    pub discontinuities: u64,
    /// Re-anchors because the stream was late or early.
    pub late_reanchors: u64,
    /// Sends the OS refused.
    pub send_errors: u64,
    /// The rewriter's counts.
    pub rewrite: RewriteStats,
}

/// Sends segments to one UDP destination (module doc).
pub struct Sender {
    socket: UdpSocket,
    dest: SocketAddr,
    rewriter: Rewriter,
    interpolator: Interpolator,
    scheduler: Scheduler,
    /// Packets not yet sent and their send-clock times.
    carry: Vec<u8>,
    carry_times: Vec<u64>,
    /// Media sequence number of the last segment taken, for the log.
    last_sequence: u64,
    summary: Summary,
}

impl Sender {
    /// A sender on `socket` to `dest`.
    pub fn new(socket: UdpSocket, dest: SocketAddr) -> Self {
        Self {
            socket,
            dest,
            rewriter: Rewriter::new(),
            interpolator: Interpolator::new(),
            scheduler: Scheduler::new(Duration::from_secs(2)),
            carry: Vec::new(),
            carry_times: Vec::new(),
            last_sequence: 0,
            summary: Summary::default(),
        }
    }

    /// Sends what `items` brings until it closes or `stop` turns true (the datagram in hand
    /// still goes out, the packets after it do not), and returns the summary.
    pub async fn run(
        mut self,
        mut items: mpsc::Receiver<Item>,
        mut stop: watch::Receiver<bool>,
    ) -> Summary {
        loop {
            let item = match items.try_recv() {
                Ok(item) => item,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let item = tokio::select! {
                        item = items.recv() => item,
                        () = stopped(&mut stop) => None,
                    };
                    let Some(item) = item else { break };
                    self.scheduler.mark_starved();
                    item
                }
            };
            let finished = match item {
                Item::Segment(segment) => self.segment(segment, &mut stop).await,
                Item::Ended => {
                    let stopping = self.flush(&mut stop).await;
                    tracing::info!(
                        segments = self.summary.segments,
                        "source ended: everything sent; waiting for it to go live again"
                    );
                    stopping
                }
            };
            if finished || *stop.borrow() {
                break;
            }
        }
        self.summary.rewrite = self.rewriter.stats();
        self.summary
    }

    /// Sends one segment, paced; returns whether it stopped on the way.
    async fn segment(&mut self, segment: SegmentData, stop: &mut watch::Receiver<bool>) -> bool {
        if segment.discontinuity {
            self.rewriter.mark_discontinuity();
            self.interpolator.mark_discontinuity();
            self.scheduler.mark_discontinuity();
            self.summary.discontinuities += 1;
        }
        self.scheduler.set_headroom(segment.target);
        self.last_sequence = segment.sequence;
        let rewritten = self.rewriter.rewrite(&segment.bytes);
        drop(segment.bytes);
        let times = self.interpolator.times(rewritten.packets(), &rewritten.clocks);
        self.carry.extend_from_slice(&rewritten.data);
        self.carry_times.extend(times);
        let stopping = self.drain(segment.sequence, stop).await;
        if !stopping {
            self.summary.segments += 1;
            self.summary.media_secs += f64::from(segment.duration);
            tracing::debug!(sequence = segment.sequence, "segment sent");
        }
        stopping
    }

    /// Sends the whole datagrams of placed packets, each when due; returns whether it
    /// stopped on the way (the datagram in hand still sent).
    async fn drain(&mut self, sequence: u64, stop: &mut watch::Receiver<bool>) -> bool {
        let mut sent = 0;
        let mut stopping = false;
        while self.carry_times.len() - sent >= PACKETS_PER_DATAGRAM && !stopping {
            let now = Instant::now();
            let (due, why) = self.scheduler.due(self.carry_times[sent], now);
            log_reanchor(why, sequence, &mut self.summary);
            if due > now + SEND_AHEAD {
                stopping = tokio::select! {
                    () = tokio::time::sleep_until(due) => false,
                    () = stopped(stop) => true,
                };
            }
            let start = sent * PACKET_SIZE;
            self.send(start, start + DATAGRAM_BYTES).await;
            sent += PACKETS_PER_DATAGRAM;
        }
        self.carry.drain(..sent * PACKET_SIZE);
        self.carry_times.drain(..sent);
        stopping
    }

    async fn send(&mut self, start: usize, end: usize) {
        match self.socket.send_to(&self.carry[start..end], self.dest).await {
            Ok(n) => {
                self.summary.datagrams += 1;
                self.summary.bytes += n as u64;
            }
            Err(e) => {
                self.summary.send_errors += 1;
                if self.summary.send_errors % 1000 == 1 {
                    tracing::warn!(error = %e, errors = self.summary.send_errors, "send failed");
                }
            }
        }
    }

    /// The source ended: places the packets still waiting for a clock point
    /// ([`Interpolator::flush`]), pads them with null packets to whole datagrams and sends
    /// them, paced; returns whether it stopped on the way.
    async fn flush(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let times = self.interpolator.flush();
        self.carry_times.extend(times);
        let mut null = [0xFFu8; PACKET_SIZE];
        null[..4].copy_from_slice(&[SYNC_BYTE, (NULL_PID >> 8) as u8, NULL_PID as u8, 0x10]);
        let last = self.carry_times.last().copied().unwrap_or_default();
        while !self.carry_times.len().is_multiple_of(PACKETS_PER_DATAGRAM) {
            self.carry.extend_from_slice(&null);
            self.carry_times.push(last);
        }
        self.drain(self.last_sequence, stop).await
    }
}

fn log_reanchor(why: Option<Reanchor>, sequence: u64, summary: &mut Summary) {
    match why {
        None => {}
        Some(Reanchor::Start) => tracing::info!(sequence, "sending"),
        Some(Reanchor::Discontinuity { starved }) => {
            tracing::info!(sequence, starved, "discontinuity: pacing re-anchored")
        }
        Some(Reanchor::Late(by)) => {
            summary.late_reanchors += 1;
            tracing::warn!(
                sequence,
                late_ms = by.as_millis() as u64,
                "behind the stream clock: pacing re-anchored"
            );
        }
        Some(Reanchor::Early(by)) => {
            summary.late_reanchors += 1;
            tracing::warn!(
                sequence,
                early_ms = by.as_millis() as u64,
                "ahead of the stream clock: pacing re-anchored"
            );
        }
    }
}
