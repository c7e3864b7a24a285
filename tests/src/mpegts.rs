//! Checks of a received MPEG-TS stream (ISO/IEC 13818-1 §2.4.3): continuity counters per
//! PID, `discontinuity_indicator`s, and the video PES timestamps, independently of the
//! streamer's own parser.

use std::collections::HashMap;

/// Size of a transport stream packet, bytes.
pub const PACKET: usize = 188;

/// What [`analyze`] found.
#[derive(Debug, Default)]
pub struct TsReport {
    /// Packets read.
    pub packets: usize,
    /// Packets not starting with the sync byte 0x47.
    pub unsynced: usize,
    /// `(packet index, PID, expected counter, counter)` of every continuity counter error
    /// (§2.4.3.3, strictly: a `discontinuity_indicator` does not excuse one).
    pub cc_errors: Vec<(usize, u16, u8, u8)>,
    /// `(packet index, PID)` of packets whose adaptation field sets `discontinuity_indicator`.
    pub discontinuities: Vec<(usize, u16)>,
    /// `(packet index, PTS)` of every PES start of the video PID, 90 kHz.
    pub video_pts: Vec<(usize, u64)>,
}

fn pid(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

/// The PTS of a PES header at the start of `payload`, if it has one.
fn pts(payload: &[u8]) -> Option<u64> {
    if payload.len() < 14 || payload[..3] != [0, 0, 1] || payload[7] & 0x80 == 0 {
        return None;
    }
    let b = &payload[9..14];
    Some(
        u64::from(b[0] >> 1 & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

/// Reads `ts` (packets back to back) with `video_pid` as the video PID.
pub fn analyze(ts: &[u8], video_pid: u16) -> TsReport {
    let mut report = TsReport::default();
    let mut last: HashMap<u16, u8> = HashMap::new();
    for (i, p) in ts.chunks_exact(PACKET).enumerate() {
        report.packets += 1;
        if p[0] != 0x47 {
            report.unsynced += 1;
            continue;
        }
        let pid = pid(p);
        if pid == 0x1FFF {
            continue;
        }
        let control = p[3] >> 4 & 0b11;
        let cc = p[3] & 0x0F;
        let adaptation = if control & 0b10 != 0 { 1 + usize::from(p[4]) } else { 0 };
        if adaptation > 1 && p[5] & 0x80 != 0 {
            report.discontinuities.push((i, pid));
        }
        if let Some(prev) = last.insert(pid, cc) {
            let expected = if control & 0b01 != 0 { (prev + 1) & 0x0F } else { prev };
            if cc != expected {
                report.cc_errors.push((i, pid, expected, cc));
            }
        }
        if pid == video_pid && p[1] & 0x40 != 0 && 4 + adaptation < PACKET {
            if let Some(pts) = pts(&p[4 + adaptation..]) {
                report.video_pts.push((i, pts));
            }
        }
    }
    report
}
