//! Pacing by the stream's own clock, as a hardware encoder or `ffmpeg -re` sends: each
//! datagram leaves when the program clock says its first packet is due, not when its
//! segment arrived.
//!
//! Two stages:
//! - [`Interpolator`]: a send clock for every packet (27 MHz, monotonic, from 0). Packets
//!   that carry a clock (PCR, ISO/IEC 13818-1 §2.4.2.2 and §2.4.3.5; see
//!   [`super::rewrite`]) are points; packets between two points are placed linearly by
//!   position (the constant-rate delivery a T-STD assumes between PCRs, §2.4.2.2). Packets
//!   after the last known point wait for the next one (the next segment's first PCR); only
//!   at the stream's end are they extrapolated at the last rate (at most
//!   [`MAX_CLOCK_STEP`] ahead). The 33-bit wrap is unwrapped; a step backwards, a step
//!   more than [`MAX_CLOCK_STEP`] beyond what the packet count predicts, or any step after
//!   a discontinuity starts a new time base: the send clock goes on where extrapolation
//!   puts it (a rebase), so it never jumps.
//! - [`Scheduler`]: wall-clock instants of send-clock times. The first datagram anchors the
//!   send clock to now; every later one is due at `anchor + (time − anchor time)`. It
//!   re-anchors (and says why, for the log):
//!   - at a discontinuity: right after the previous datagram, or if the sender was starved
//!     (waited for a segment, so it sits at the live edge) and is behind, [`Scheduler`]'s
//!     headroom from now (one target duration: a segment of buffer again);
//!   - more than [`LATE_LIMIT`] late (a stalled source, a slow fetch), or late at all after
//!     being starved: from now (plus the headroom when starved), rather than bursting to
//!     catch up;
//!   - more than the headroom plus [`LATE_LIMIT`] early: from now.

use std::time::Duration;
use tokio::time::Instant;

/// The system clock frequency, Hz (ISO/IEC 13818-1 §2.4.2.1).
pub const CLOCK_HZ: u64 = 27_000_000;
/// PCRs (base 2^33 × 300) wrap at this value, 27 MHz ticks (~26.5 h).
pub const CLOCK_WRAP: u64 = (1 << 33) * 300;
/// Largest clock step between two points beyond the packet-count prediction that is still
/// one time base, and the farthest extrapolation: 1 s of 27 MHz ticks (PCRs must come at
/// least every 100 ms, §2.7.2).
pub const MAX_CLOCK_STEP: u64 = CLOCK_HZ;
/// Packets waiting for the next clock point beyond which they are extrapolated instead
/// (~9 MiB; ~1 s at 75 Mbit/s).
pub const MAX_UNPLACED: u64 = 50_000;
/// Lateness beyond which the scheduler re-anchors instead of catching up: 1 s.
pub const LATE_LIMIT: Duration = Duration::from_secs(1);
/// Lateness tolerated after a starved wait (timer and scheduling jitter): 50 ms.
pub const STARVED_SLACK: Duration = Duration::from_millis(50);

/// 27 MHz ticks as a duration.
pub fn ticks(t: u64) -> Duration {
    Duration::from_nanos((u128::from(t) * 1000 / 27).min(u128::from(u64::MAX)) as u64)
}

#[derive(Debug, Clone, Copy)]
struct Point {
    /// Packet number since the start.
    index: u64,
    /// Clock as the stream carries it (wrapping).
    raw: u64,
    /// Send-clock time.
    time: u64,
}

/// Send-clock times of packets (module doc).
#[derive(Debug, Default)]
pub struct Interpolator {
    /// Packets taken so far.
    packets: u64,
    /// Packets given a time so far (a prefix of those taken).
    placed: u64,
    last: Option<Point>,
    /// Clock ticks per packets, of the last interval between two points of one time base.
    rate: Option<(u64, u64)>,
    last_time: u64,
    discontinuity: bool,
    rebases: u64,
}

impl Interpolator {
    /// An interpolator at send-clock time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next clock point starts a new time base.
    pub fn mark_discontinuity(&mut self) {
        self.discontinuity = true;
    }

    /// Time bases started so far (discontinuities and clock jumps).
    pub fn rebases(&self) -> u64 {
        self.rebases
    }

    /// Takes the next `packets` packets, of which those in `clocks` (`(index among them,
    /// wrapping 27 MHz clock)`, in order) carry the stream's clock, and returns the
    /// send-clock times (27 MHz) of the packets placed now: those up to the last clock point
    /// so far, in order, starting with any left unplaced by earlier calls. Packets after the
    /// last point wait for the next point (the next segment's first PCR) rather than being
    /// extrapolated, so a segment's tail is spread up to the next segment's first PCR, not
    /// guessed at the last interval's rate (which, overshooting, would bunch the next
    /// packets up). A stream without any clock is placed at once; more than
    /// [`MAX_UNPLACED`] waiting packets are extrapolated ([`Interpolator::flush`]).
    pub fn times(&mut self, packets: usize, clocks: &[(usize, u64)]) -> Vec<u64> {
        let base = self.packets;
        let mut points: Vec<Point> = self.last.into_iter().collect();
        for &(i, raw) in clocks {
            let index = base + i as u64;
            let raw = raw % CLOCK_WRAP;
            let time = match self.last {
                None => self.last_time,
                Some(prev) => {
                    let step = (raw + CLOCK_WRAP - prev.raw) % CLOCK_WRAP;
                    let span = index.saturating_sub(prev.index);
                    let expected = self.rate.map_or(0, |r| scale(r.0, span, r.1));
                    if self.discontinuity || step > expected + MAX_CLOCK_STEP {
                        self.rebases += 1;
                        prev.time + expected.min(MAX_CLOCK_STEP)
                    } else {
                        if span > 0 {
                            self.rate = Some((step, span));
                        }
                        prev.time + step
                    }
                }
            };
            self.discontinuity = false;
            let point = Point { index, raw, time };
            points.push(point);
            self.last = Some(point);
        }
        self.packets += packets as u64;
        let end = match self.last {
            Some(last) if self.packets - self.placed <= MAX_UNPLACED => last.index + 1,
            _ => self.packets,
        };
        self.place(&points, end)
    }

    /// Places every packet still waiting for a clock point, extrapolating at the last rate
    /// (at most [`MAX_CLOCK_STEP`] past the last point): the stream's end.
    pub fn flush(&mut self) -> Vec<u64> {
        let points: Vec<Point> = self.last.into_iter().collect();
        self.place(&points, self.packets)
    }

    /// Times of the packets from the first unplaced one up to `end` (exclusive), between
    /// `points` (in order, the first at or before the first unplaced packet).
    fn place(&mut self, points: &[Point], end: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(end.saturating_sub(self.placed) as usize);
        let mut k = 0;
        for g in self.placed..end {
            while k + 1 < points.len() && points[k + 1].index <= g {
                k += 1;
            }
            let time = match (points.get(k), points.get(k + 1)) {
                (None, _) => self.last_time,
                (Some(p), _) if p.index >= g => p.time,
                (Some(p), Some(n)) => {
                    p.time + scale(n.time - p.time, g - p.index, n.index - p.index)
                }
                (Some(p), None) => {
                    let ahead = self.rate.map_or(0, |(step, span)| scale(step, g - p.index, span));
                    p.time + ahead.min(MAX_CLOCK_STEP)
                }
            };
            self.last_time = time.max(self.last_time);
            out.push(self.last_time);
        }
        self.placed = self.placed.max(end);
        out
    }
}

/// `value × numerator / denominator` without overflow (saturating; 0 for a 0 denominator).
fn scale(value: u64, numerator: u64, denominator: u64) -> u64 {
    let scaled = u128::from(value) * u128::from(numerator) / u128::from(denominator.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// Why the scheduler re-anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reanchor {
    /// The first datagram.
    Start,
    /// A discontinuity; `starved`: at the live edge, so from now plus the headroom.
    Discontinuity {
        /// Whether the headroom was added.
        starved: bool,
    },
    /// This late (more than [`LATE_LIMIT`], or at all after a starved wait).
    Late(Duration),
    /// This early (more than the headroom plus [`LATE_LIMIT`]).
    Early(Duration),
}

/// Least headroom of a [`Scheduler`].
pub const MIN_HEADROOM: Duration = Duration::from_secs(1);
/// Most headroom of a [`Scheduler`] (a hostile `EXT-X-TARGETDURATION` must not make the
/// early tolerance huge).
pub const MAX_HEADROOM: Duration = Duration::from_secs(10);

/// Wall-clock instants of send-clock times (module doc).
#[derive(Debug)]
pub struct Scheduler {
    anchor: Option<(Instant, u64)>,
    last_due: Option<Instant>,
    headroom: Duration,
    discontinuity: bool,
    starved: bool,
}

impl Scheduler {
    /// A scheduler that re-anchors a starved stream `headroom` ahead of now.
    pub fn new(headroom: Duration) -> Self {
        let headroom = headroom.clamp(MIN_HEADROOM, MAX_HEADROOM);
        Self { anchor: None, last_due: None, headroom, discontinuity: false, starved: false }
    }

    /// Sets the headroom (one target duration of the source playlist), within
    /// [`MIN_HEADROOM`]..=[`MAX_HEADROOM`].
    pub fn set_headroom(&mut self, headroom: Duration) {
        self.headroom = headroom.clamp(MIN_HEADROOM, MAX_HEADROOM);
    }

    /// The next datagram follows a discontinuity.
    pub fn mark_discontinuity(&mut self) {
        self.discontinuity = true;
    }

    /// The sender had to wait for the next segment: it is at the live edge.
    pub fn mark_starved(&mut self) {
        self.starved = true;
    }

    /// When the datagram whose first packet has send-clock `time` is due, given `now`;
    /// with the reason when that re-anchored.
    pub fn due(&mut self, time: u64, now: Instant) -> (Instant, Option<Reanchor>) {
        let starved = std::mem::take(&mut self.starved);
        let discontinuity = std::mem::take(&mut self.discontinuity);
        let Some((anchor_at, anchor_time)) = self.anchor else {
            return self.reanchor(now, time, Reanchor::Start);
        };
        let behind = self.last_due.is_none_or(|d| d + STARVED_SLACK < now);
        if discontinuity {
            let starved = starved && behind;
            let at = match self.last_due {
                _ if starved => now + self.headroom,
                Some(last) => last.max(now),
                None => now,
            };
            return self.reanchor(at, time, Reanchor::Discontinuity { starved });
        }
        let due = anchor_at + ticks(time.saturating_sub(anchor_time));
        if due + LATE_LIMIT < now || (starved && due + STARVED_SLACK < now) {
            let at = if starved { now + self.headroom } else { now };
            return self.reanchor(at, time, Reanchor::Late(now - due));
        }
        if due > now + self.headroom + LATE_LIMIT {
            return self.reanchor(now, time, Reanchor::Early(due - now));
        }
        self.last_due = Some(due);
        (due, None)
    }

    fn reanchor(&mut self, at: Instant, time: u64, why: Reanchor) -> (Instant, Option<Reanchor>) {
        self.anchor = Some((at, time));
        self.last_due = Some(at);
        (at, Some(why))
    }
}

#[cfg(test)]
#[path = "pacer_tests.rs"]
mod tests;
