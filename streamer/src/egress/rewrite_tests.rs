use super::*;
use crate::media::{Frame, Track};
use crate::ts::{TsMuxer, AUDIO_PID, PCR_DELAY, VIDEO_PID};
use bytes::Bytes;

/// A segment as our muxer writes it: tables, then `frames` video frames (every 10th an
/// IDR) of `len` bytes each with an audio frame after each, from DTS `start` on (90 kHz).
fn segment(muxer: &mut TsMuxer, start: u64, frames: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    muxer.write_tables(&mut out).unwrap();
    for n in 0..frames {
        let dts = start + n * 3600;
        let video = Frame {
            track: Track::Video,
            dts,
            pts: dts,
            idr: n % 10 == 0,
            discontinuity: false,
            data: Bytes::from(vec![0x11; len]),
        };
        muxer.write_frame(&video, &mut out).unwrap();
        let audio = Frame { track: Track::Audio, data: Bytes::from(vec![0x22; 300]), ..video };
        muxer.write_frame(&audio, &mut out).unwrap();
    }
    out
}

fn pid(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

/// Continuity counter errors of `ts` per §2.4.3.3: a packet with payload must carry the
/// previous counter of its PID plus one, one without the same value.
fn cc_errors(ts: &[u8]) -> usize {
    let mut last: HashMap<u16, u8> = HashMap::new();
    let mut errors = 0;
    for p in ts.chunks(PACKET_SIZE) {
        let cc = p[3] & 0x0F;
        let payload = p[3] & 0x10 != 0;
        if let Some(prev) = last.insert(pid(p), cc) {
            let expected = if payload { (prev + 1) & 0x0F } else { prev };
            errors += usize::from(cc != expected);
        }
    }
    errors
}

fn flagged(ts: &[u8]) -> Vec<(usize, u16)> {
    ts.chunks(PACKET_SIZE)
        .enumerate()
        .filter(|(_, p)| p[3] & 0x20 != 0 && p[4] > 0 && p[5] & DISCONTINUITY_INDICATOR != 0)
        .map(|(i, p)| (i, pid(p)))
        .collect()
}

#[test]
fn continuity_counters_run_on_across_segment_joins_and_restarts() {
    let mut rewriter = Rewriter::new();
    let mut output = Vec::new();
    // One session (counters continue), then a restarted source (counters from 0 again),
    // then a segment that repeats the previous one's counters exactly.
    let mut session = TsMuxer::new(true);
    let first = segment(&mut session, 126_000, 25, 3000);
    let second = segment(&mut session, 126_000 + 25 * 3600, 25, 700);
    let restarted = segment(&mut TsMuxer::new(true), 126_000, 25, 1500);
    for input in [&first, &second, &restarted, &restarted] {
        assert!(cc_errors(input) == 0 || std::ptr::eq(input, &restarted));
        output.extend(rewriter.rewrite(input).data);
    }
    let joined: Vec<u8> = [&first[..], &second, &restarted, &restarted].concat();
    assert!(cc_errors(&joined) > 0, "the input joins are discontinuous");
    assert_eq!(cc_errors(&output), 0);
    assert_eq!(output.len(), joined.len(), "every packet passed on");
    assert_eq!(rewriter.stats().packets as usize, joined.len() / PACKET_SIZE);
}

#[test]
fn the_first_pcr_after_a_discontinuity_carries_the_indicator() {
    let mut rewriter = Rewriter::new();
    let mut muxer = TsMuxer::new(true);
    let a = rewriter.rewrite(&segment(&mut muxer, 126_000, 10, 500));
    assert!(flagged(&a.data).is_empty());
    rewriter.mark_discontinuity();
    let b = rewriter.rewrite(&segment(&mut TsMuxer::new(true), 900_000, 10, 500));
    // PAT, PMT, then the first video frame's first packet: the only flagged one.
    assert_eq!(flagged(&b.data), [(2, VIDEO_PID)]);
    assert_eq!(b.clocks[0], (2, (900_000 - PCR_DELAY) * 300));
    let c = rewriter.rewrite(&segment(&mut muxer, 126_000 + 36_000, 10, 500));
    assert!(flagged(&c.data).is_empty(), "once per discontinuity");
    assert_eq!(rewriter.stats().flagged, 1);
}

#[test]
fn clocks_are_the_pcrs_of_the_pcr_pid_with_their_packet_index() {
    let mut rewriter = Rewriter::new();
    let out = rewriter.rewrite(&segment(&mut TsMuxer::new(true), 126_000, 5, 400));
    let expected: Vec<u64> = (0..5).map(|n| (126_000 + n * 3600 - PCR_DELAY) * 300).collect();
    assert_eq!(out.clocks.iter().map(|c| c.1).collect::<Vec<_>>(), expected);
    for (index, _) in &out.clocks {
        assert_eq!(pid(&out.data[index * PACKET_SIZE..]), VIDEO_PID);
    }
}

#[test]
fn null_packets_garbage_and_duplicates_are_dropped() {
    let source = segment(&mut TsMuxer::new(true), 126_000, 4, 400);
    let packets: Vec<&[u8]> = source.chunks(PACKET_SIZE).collect();
    let mut null = [0xFFu8; PACKET_SIZE];
    null[..4].copy_from_slice(&[SYNC_BYTE, 0x1F, 0xFF, 0x10]);
    let mut input = Vec::new();
    input.extend_from_slice(b"\x47garbage");
    for (n, p) in packets.iter().enumerate() {
        input.extend_from_slice(p);
        if n == 3 {
            input.extend_from_slice(&null);
            input.extend_from_slice(p); // a duplicate (same counter, same bytes)
        }
        if n == 5 {
            input.extend_from_slice(&[0x00, 0x47, 0x01]);
        }
    }
    input.extend_from_slice(&packets[0][..100]); // truncated at the end
    let mut rewriter = Rewriter::new();
    let out = rewriter.rewrite(&input);
    assert_eq!(out.data, source, "exactly the source's packets (its counters start at 0 too)");
    let stats = rewriter.stats();
    assert_eq!((stats.null_packets, stats.duplicates), (1, 1));
    assert_eq!(stats.resync_bytes, 8 + 3 + 100);
}

#[test]
fn adaptation_only_packets_keep_the_counter_and_reserved_ones_are_dropped() {
    let mut af_only = [0xFFu8; PACKET_SIZE];
    af_only[..6].copy_from_slice(&[SYNC_BYTE, 0x01, 0x00, 0x27, 183, 0x00]);
    let mut payload = [0xAAu8; PACKET_SIZE];
    payload[..4].copy_from_slice(&[SYNC_BYTE, 0x01, 0x00, 0x1C]);
    let mut reserved = payload;
    reserved[3] = 0x05;
    let mut bad_len = af_only;
    bad_len[4] = 100;
    let mut next = payload;
    next[3] = 0x1D;
    next[100] = 0xBB;
    let input = [payload, af_only, reserved, bad_len, next, af_only].concat();
    let mut rewriter = Rewriter::new();
    let out = rewriter.rewrite(&input);
    let ccs: Vec<u8> = out.data.chunks(PACKET_SIZE).map(|p| p[3] & 0x0F).collect();
    assert_eq!(ccs, [0, 0, 1, 1]);
    assert_eq!(rewriter.stats().malformed, 2);
    assert_eq!(cc_errors(&out.data), 0);
}

#[test]
fn without_pcr_the_first_pid_with_timestamps_clocks_the_stream() {
    // An audio-only stream (no PCR at all): PES headers of the audio PID.
    let mut muxer = TsMuxer::new(true);
    let mut input = Vec::new();
    for n in 0..3u64 {
        let frame = Frame {
            track: Track::Audio,
            dts: 126_000 + n * 1920,
            pts: 126_000 + n * 1920,
            idr: false,
            discontinuity: false,
            data: Bytes::from(vec![0x22; 300]),
        };
        muxer.write_frame(&frame, &mut input).unwrap();
    }
    let out = Rewriter::new().rewrite(&input);
    let clocks: Vec<u64> = out.clocks.iter().map(|c| c.1).collect();
    assert_eq!(clocks, [126_000 * 300, 127_920 * 300, 129_840 * 300]);
    assert!(out.clocks.iter().all(|(i, _)| pid(&out.data[i * PACKET_SIZE..]) == AUDIO_PID));
}

/// A packet of `pid` with counter `cc`, an adaptation field holding PCR base `base`, and
/// a payload of `fill` bytes.
fn pcr_packet(pid: u16, cc: u8, base: u64, fill: u8) -> [u8; PACKET_SIZE] {
    let mut p = [fill; PACKET_SIZE];
    p[0] = SYNC_BYTE;
    p[1] = (pid >> 8) as u8 & 0x1F;
    p[2] = pid as u8;
    p[3] = 0x30 | (cc & 0x0F);
    p[4] = 7;
    p[5] = PCR_FLAG;
    p[6] = (base >> 25) as u8;
    p[7] = (base >> 17) as u8;
    p[8] = (base >> 9) as u8;
    p[9] = (base >> 1) as u8;
    p[10] = ((base & 1) as u8) << 7 | 0x7E;
    p[11] = 0;
    p
}

#[test]
fn the_pcr_pid_is_learned_again_after_a_discontinuity() {
    let mut rewriter = Rewriter::new();
    let first: Vec<u8> =
        (0..3).flat_map(|i| pcr_packet(0x100, i, 1000 + u64::from(i), 1)).collect();
    assert_eq!(rewriter.rewrite(&first).clocks.len(), 3);
    rewriter.mark_discontinuity();
    let second: Vec<u8> =
        (0..3).flat_map(|i| pcr_packet(0x200, i, 5000 + u64::from(i), 2)).collect();
    let out = rewriter.rewrite(&second);
    assert_eq!(out.clocks, vec![(0, 5000 * 300), (1, 5001 * 300), (2, 5002 * 300)]);
    assert_eq!(flagged(&out.data), vec![(0, 0x200)]);
}

#[test]
fn a_duplicate_with_another_pcr_is_still_a_duplicate() {
    let mut rewriter = Rewriter::new();
    let input = [pcr_packet(0x100, 4, 1000, 7), pcr_packet(0x100, 4, 1001, 7)].concat();
    let out = rewriter.rewrite(&input);
    assert_eq!(out.packets(), 1);
    assert_eq!(rewriter.stats().duplicates, 1);
    // Another payload with the same counter is no duplicate.
    let other = [pcr_packet(0x100, 5, 2000, 7), pcr_packet(0x100, 5, 2001, 8)].concat();
    assert_eq!(rewriter.rewrite(&other).packets(), 2);
}
