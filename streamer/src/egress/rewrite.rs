//! The MPEG-TS packet rewriter: HLS segments in, one continuous transport stream out
//! (ISO/IEC 13818-1 §2.4.3).
//!
//! - **Alignment**: packets are 188 bytes starting with sync byte 0x47 (§2.4.3.2). A
//!   candidate packet is taken out of sync (a segment's start, after garbage) only when the
//!   next one starts with 0x47 too (or the segment ends with it), in sync whenever it starts
//!   with 0x47; otherwise the rewriter slides one byte at a time to resync. Packets with
//!   `adaptation_field_control` `00` (reserved) or an impossible `adaptation_field_length`
//!   are dropped, as are null packets (PID 0x1FFF, §2.4.3.3: stuffing the output has no use
//!   for).
//! - **Continuity counters** (§2.4.3.3): rewritten per PID on the output side, incremented
//!   only for packets with a payload (`adaptation_field_control` `01`/`11`); a packet
//!   without payload repeats the last value. The output thus has no counter error across
//!   segment joins, source restarts or skipped segments, whatever the source's counters did.
//!   An input packet repeating the previous one of its PID within a segment (same counter
//!   and bytes but for the PCR, which §2.4.3.3 lets differ: a duplicate) is dropped, since
//!   with a rewritten counter it would no longer read as a duplicate.
//! - **Discontinuities** (§2.4.3.5): after [`Rewriter::mark_discontinuity`] (the playlist's
//!   `EXT-X-DISCONTINUITY`, a source restart), the first packet of the PCR PID that carries a
//!   PCR gets `discontinuity_indicator` = 1. §2.4.3.5 requires exactly this for a new system
//!   time base: the indicator is set in the packet of the PCR PID holding the first PCR of
//!   the new time base (and may, but need not, be set in earlier packets of that PID). Such a
//!   packet always has an adaptation field (the PCR is in it), so the flag is set in place,
//!   no payload moves. Other PIDs get no indicator: on them it only announces a continuity
//!   counter discontinuity, and their counters stay continuous here. A stream without PCR
//!   gets no indicator (there is no time base to announce).
//! - **Clock**: every PCR of the PCR PID (the first PID seen carrying one) is reported with
//!   its packet, 27 MHz (§2.4.3.5: base × 300 + extension). A stream that never carried a PCR
//!   reports the DTS (else the PTS) × 300 of the first PID whose PES headers carry one
//!   (§2.4.3.7), so it can still be paced.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Size of a transport stream packet, bytes (§2.4.3.2).
pub const PACKET_SIZE: usize = 188;
/// `sync_byte` (§2.4.3.3).
pub const SYNC_BYTE: u8 = 0x47;
/// PID of null packets (§2.4.3.3, Table 2-3).
pub const NULL_PID: u16 = 0x1FFF;
/// `discontinuity_indicator` bit of the adaptation field's flags byte (§2.4.3.5).
pub const DISCONTINUITY_INDICATOR: u8 = 0x80;
const PCR_FLAG: u8 = 0x10;

/// One segment's packets, rewritten.
#[derive(Debug, Default)]
pub struct Rewritten {
    /// The packets, back to back (a multiple of [`PACKET_SIZE`]).
    pub data: Vec<u8>,
    /// `(packet index in data, 27 MHz clock)` of the packets carrying the stream's clock
    /// (module doc), in order; clock values modulo 2^33 × 300.
    pub clocks: Vec<(usize, u64)>,
}

impl Rewritten {
    /// Number of packets.
    pub fn packets(&self) -> usize {
        self.data.len() / PACKET_SIZE
    }
}

/// What the rewriter dropped or changed so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RewriteStats {
    /// Packets passed on.
    pub packets: u64,
    /// Null packets dropped.
    pub null_packets: u64,
    /// Bytes skipped to find the packet alignment again (and a segment's trailing partial
    /// packet).
    pub resync_bytes: u64,
    /// Packets dropped as malformed (reserved `adaptation_field_control`, bad length).
    pub malformed: u64,
    /// Duplicate packets dropped.
    pub duplicates: u64,
    /// Packets given a `discontinuity_indicator`.
    pub flagged: u64,
}

#[derive(Debug, Default)]
struct PidState {
    /// The counter the next output packet with payload gets.
    next_cc: u8,
    /// Input counter and hash of the previous input packet with payload.
    last_in: Option<(u8, u64)>,
}

/// Rewrites segments into one continuous program (module doc).
#[derive(Debug, Default)]
pub struct Rewriter {
    pids: HashMap<u16, PidState>,
    pcr_pid: Option<u16>,
    pts_pid: Option<u16>,
    pending_discontinuity: bool,
    stats: RewriteStats,
}

impl Rewriter {
    /// A rewriter whose first output packet of each PID gets continuity counter 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts so far.
    pub fn stats(&self) -> RewriteStats {
        self.stats
    }

    /// The next segment does not continue the previous one: flag the next PCR (module doc).
    pub fn mark_discontinuity(&mut self) {
        self.pending_discontinuity = true;
        // A new time base may come on another PID: learn the clock PIDs again.
        self.pcr_pid = None;
        self.pts_pid = None;
    }

    /// Rewrites one segment's bytes.
    pub fn rewrite(&mut self, input: &[u8]) -> Rewritten {
        let mut out = Rewritten { data: Vec::with_capacity(input.len()), clocks: Vec::new() };
        // Duplicates are looked for within a segment: across a join, the same counter and
        // bytes (a restarted source's first PAT) are a new packet.
        for state in self.pids.values_mut() {
            state.last_in = None;
        }
        let mut pos = 0;
        // In sync, a packet is taken when it starts with the sync byte; out of sync (at the
        // start, after garbage), only when the next one starts with it too.
        let mut in_sync = false;
        while pos + PACKET_SIZE <= input.len() {
            in_sync = input[pos] == SYNC_BYTE
                && (in_sync || input.get(pos + PACKET_SIZE).is_none_or(|b| *b == SYNC_BYTE));
            if !in_sync {
                pos += 1;
                self.stats.resync_bytes += 1;
                continue;
            }
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(&input[pos..pos + PACKET_SIZE]);
            pos += PACKET_SIZE;
            if let Some(clock) = self.packet(&mut packet) {
                out.clocks.push((out.packets(), clock));
            }
            if packet[0] == SYNC_BYTE {
                out.data.extend_from_slice(&packet);
            }
        }
        self.stats.resync_bytes += (input.len() - pos) as u64;
        out
    }

    /// Rewrites `p` in place; clears its sync byte when it is to be dropped. Returns its
    /// clock, if it carries the stream's.
    fn packet(&mut self, p: &mut [u8; PACKET_SIZE]) -> Option<u64> {
        let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
        let control = (p[3] >> 4) & 0b11;
        let has_adaptation = control & 0b10 != 0;
        let has_payload = control & 0b01 != 0;
        let adaptation_len = if has_adaptation { usize::from(p[4]) } else { 0 };
        let valid_len = match control {
            0b10 => adaptation_len == 183,
            0b11 => adaptation_len <= 182,
            _ => true,
        };
        if pid == NULL_PID {
            self.stats.null_packets += 1;
            p[0] = 0;
            return None;
        }
        if control == 0 || !valid_len {
            self.stats.malformed += 1;
            p[0] = 0;
            return None;
        }
        let pcr = (adaptation_len >= 7 && p[5] & PCR_FLAG != 0).then(|| pcr_of(p));
        if pcr.is_some() && self.pcr_pid.is_none() {
            self.pcr_pid = Some(pid);
        }
        let state = self.pids.entry(pid).or_default();
        let cc = if has_payload {
            let input = (p[3] & 0x0F, packet_hash(p, pcr.is_some()));
            if state.last_in == Some(input) {
                self.stats.duplicates += 1;
                p[0] = 0;
                return None;
            }
            state.last_in = Some(input);
            let cc = state.next_cc;
            state.next_cc = (cc + 1) & 0x0F;
            cc
        } else {
            state.next_cc.wrapping_sub(1) & 0x0F
        };
        p[3] = (p[3] & 0xF0) | cc;
        self.stats.packets += 1;
        if self.pcr_pid == Some(pid) {
            if let Some(pcr) = pcr {
                if std::mem::take(&mut self.pending_discontinuity) {
                    p[5] |= DISCONTINUITY_INDICATOR;
                    self.stats.flagged += 1;
                }
                return Some(pcr);
            }
        }
        if self.pcr_pid.is_none() && has_payload && p[1] & 0x40 != 0 {
            let start = 4 + if has_adaptation { 1 + adaptation_len } else { 0 };
            if let Some(ts) = pes_timestamp(&p[start.min(PACKET_SIZE)..]) {
                if *self.pts_pid.get_or_insert(pid) == pid {
                    return Some(ts * 300);
                }
            }
        }
        None
    }
}

/// The PCR of a packet whose adaptation field has one: base × 300 + extension, 27 MHz.
fn pcr_of(p: &[u8; PACKET_SIZE]) -> u64 {
    let base = u64::from(p[6]) << 25
        | u64::from(p[7]) << 17
        | u64::from(p[8]) << 9
        | u64::from(p[9]) << 1
        | u64::from(p[10]) >> 7;
    let extension = u64::from(p[10] & 1) << 8 | u64::from(p[11]);
    base * 300 + extension
}

/// The DTS, else the PTS, of a PES packet header at the start of `payload` (§2.4.3.6-7),
/// 90 kHz.
fn pes_timestamp(payload: &[u8]) -> Option<u64> {
    if payload.len() < 14 || payload[..3] != [0, 0, 1] {
        return None;
    }
    // Streams without the optional PES header (Table 2-22).
    if matches!(payload[3], 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) {
        return None;
    }
    let field = |b: &[u8]| {
        u64::from(b[0] >> 1 & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1)
    };
    match payload[7] >> 6 {
        0b11 if payload.len() >= 19 => Some(field(&payload[14..19])),
        0b10 | 0b11 => Some(field(&payload[9..14])),
        _ => None,
    }
}

/// Hash of the bytes after the header, without the PCR field (§2.4.3.3: a duplicate may
/// carry another PCR).
fn packet_hash(p: &[u8; PACKET_SIZE], has_pcr: bool) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if has_pcr {
        p[4..6].hash(&mut hasher);
        p[12..].hash(&mut hasher);
    } else {
        p[4..].hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
