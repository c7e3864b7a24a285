use super::*;

const MS: u64 = CLOCK_HZ / 1000;

#[test]
fn packets_between_clocks_are_placed_by_position() {
    let mut i = Interpolator::new();
    // PCR at packets 0 and 4, 40 ms apart: 10 ms per packet; the two after the last point
    // wait for the next point.
    let times = i.times(7, &[(0, 1_000 * MS), (4, 1_040 * MS)]);
    assert_eq!(times, [0, 10, 20, 30, 40].map(|t| t * MS));
    // The next segment: the waiting packets and its own before its first PCR sit between
    // the previous PCR (packet 4) and this one (packet 7 + 2 = 9, 50 ms after it).
    let times = i.times(3, &[(2, 1_090 * MS)]);
    assert_eq!(times, [50, 60, 70, 80, 90].map(|t| t * MS));
    assert_eq!(i.rebases(), 0);
}

#[test]
fn a_long_tail_is_spread_to_the_next_pcr_not_extrapolated_past_it() {
    let mut i = Interpolator::new();
    // A last interval of 4 ms per packet, then a tail of 19 packets: extrapolated it would
    // run 76 ms past the last PCR, though the next PCR comes 40 ms after it.
    let times = i.times(30, &[(0, 0), (10, 40 * MS)]);
    assert_eq!(times.len(), 11);
    let times = i.times(10, &[(0, 80 * MS), (5, 120 * MS)]);
    // Packets 11..=29 spread over 40..80 ms (2 ms apart), then the next segment's.
    assert_eq!(times.len(), 19 + 6);
    assert_eq!(times[0], 42 * MS);
    assert_eq!(times[19], 80 * MS);
    assert!(times.windows(2).all(|w| w[1] > w[0]), "no two packets at once: {times:?}");
}

#[test]
fn the_send_clock_is_monotonic_over_wraps_jumps_and_discontinuities() {
    let mut i = Interpolator::new();
    let near_wrap = CLOCK_WRAP - 20 * MS;
    let times = i.times(4, &[(0, near_wrap), (2, near_wrap + 20 * MS - CLOCK_WRAP)]);
    assert_eq!(times, [0, 10, 20].map(|t| t * MS), "wrapped PCR continues");
    // A step backwards: a new time base, continuing where the rate puts it.
    let times = i.times(2, &[(0, CLOCK_WRAP - 10_000 * MS)]);
    assert_eq!(times, [30, 40].map(|t| t * MS));
    assert_eq!(i.rebases(), 1);
    // A jump of an hour: the same.
    let times = i.times(2, &[(0, 3_600_000 * MS)]);
    assert_eq!(times, [50, 60].map(|t| t * MS));
    assert_eq!(i.rebases(), 2);
    // A marked discontinuity rebases even a plausible step.
    i.mark_discontinuity();
    let times = i.times(2, &[(0, 3_600_000 * MS + 500 * MS)]);
    assert_eq!(times, [70, 80].map(|t| t * MS));
    assert_eq!(i.rebases(), 3);
}

#[test]
fn without_clock_packets_go_at_once_and_the_end_is_extrapolated_capped() {
    let mut i = Interpolator::new();
    assert_eq!(i.times(3, &[]), [0, 0, 0], "no clock yet: nothing to wait for");
    let times = i.times(3, &[(1, 7 * MS), (2, 8 * MS)]);
    assert_eq!(times, [0, 0, MS]);
    // Rate 1 ms per packet: 5000 packets wait, then (the end) are extrapolated, capped at
    // 1 s past the last point.
    assert!(i.times(5000, &[]).is_empty());
    let flushed = i.flush();
    assert_eq!(flushed.len(), 5000);
    assert_eq!((flushed[0], *flushed.last().unwrap()), (2 * MS, MS + MAX_CLOCK_STEP));
    assert!(i.flush().is_empty());
    // More than MAX_UNPLACED waiting: placed anyway.
    assert_eq!(i.times(MAX_UNPLACED as usize + 1, &[]).len(), MAX_UNPLACED as usize + 1);
}

#[test]
fn the_scheduler_follows_the_clock_from_its_anchor() {
    let start = Instant::now();
    let mut s = Scheduler::new(Duration::from_secs(2));
    assert_eq!(s.due(500 * MS, start), (start, Some(Reanchor::Start)));
    let (due, why) = s.due(700 * MS, start + Duration::from_millis(50));
    assert_eq!((due, why), (start + Duration::from_millis(200), None));
    // 0.9 s late: still on the original schedule (a short catch-up).
    let (due, why) = s.due(800 * MS, start + Duration::from_millis(1_200));
    assert_eq!((due, why), (start + Duration::from_millis(300), None));
}

#[test]
fn the_scheduler_reanchors_when_late_early_or_at_a_discontinuity() {
    let start = Instant::now();
    let sec = Duration::from_secs(1);
    let mut s = Scheduler::new(2 * sec);
    s.due(0, start);
    // 1.5 s late: from now.
    let now = start + 2 * sec;
    assert_eq!(s.due(500 * MS, now), (now, Some(Reanchor::Late(sec + sec / 2))));
    assert_eq!(s.due(600 * MS, now).0, now + sec / 10);
    // Starved and late at all: now plus the headroom (a segment of buffer again).
    s.mark_starved();
    let now = start + 3 * sec;
    let (due, why) = s.due(700 * MS, now);
    assert_eq!((due, why), (now + 2 * sec, Some(Reanchor::Late(sec - sec / 5))));
    // A discontinuity while ahead: right after the previous datagram.
    s.mark_discontinuity();
    let (due, why) = s.due(800 * MS, now);
    assert_eq!((due, why), (now + 2 * sec, Some(Reanchor::Discontinuity { starved: false })));
    // A discontinuity after starving behind the schedule: now plus the headroom.
    let later = now + 5 * sec;
    s.mark_starved();
    s.mark_discontinuity();
    let (due, why) = s.due(900 * MS, later);
    assert_eq!((due, why), (later + 2 * sec, Some(Reanchor::Discontinuity { starved: true })));
    // Far early (more than headroom + 1 s): from now.
    let (due, why) = s.due(900 * MS + 10 * CLOCK_HZ, later);
    assert_eq!((due, why), (later, Some(Reanchor::Early(10 * sec + 2 * sec))));
}

#[test]
fn ticks_convert_27_mhz_to_durations() {
    assert_eq!(ticks(CLOCK_HZ), Duration::from_secs(1));
    assert_eq!(ticks(27), Duration::from_micros(1));
    assert_eq!(ticks(CLOCK_WRAP), Duration::from_nanos(95_443_717_688_888));
}

#[test]
fn the_headroom_is_clamped_to_1_to_10_seconds() {
    let start = Instant::now();
    let sec = Duration::from_secs(1);
    let mut s = Scheduler::new(2 * sec);
    s.set_headroom(3600 * sec);
    s.due(0, start);
    // Far early (more than 10 s + 1 s): from now, however large the target duration.
    let (due, why) = s.due(20 * CLOCK_HZ, start);
    assert_eq!((due, why), (start, Some(Reanchor::Early(20 * sec))));
    // Starved behind: now plus at most 10 s.
    let later = start + 60 * sec;
    s.mark_starved();
    s.mark_discontinuity();
    assert_eq!(s.due(21 * CLOCK_HZ, later).0, later + 10 * sec);
    s.set_headroom(Duration::ZERO);
    s.mark_starved();
    s.mark_discontinuity();
    let much_later = later + 60 * sec;
    assert_eq!(s.due(22 * CLOCK_HZ, much_later).0, much_later + sec);
}
