//! Unit tests of the GOP-dropping byte-bounded queue.

use super::*;
use crate::media::{AudioConfig, Frame, VideoConfig};
use bytes::Bytes;

const AUDIO: AudioConfig = AudioConfig { profile: 1, sampling_index: 4, channels: 2 };

fn av() -> MediaEvent {
    MediaEvent::Tracks(Tracks {
        video: Some(VideoConfig { parameter_sets: Bytes::from_static(&[0, 0, 0, 1, 0x67]) }),
        audio: Some(AUDIO),
    })
}

fn audio_only() -> MediaEvent {
    MediaEvent::Tracks(Tracks { video: None, audio: Some(AUDIO) })
}

fn frame(track: Track, idr: bool, dts: u64, len: usize) -> MediaEvent {
    MediaEvent::Frame(Frame {
        track,
        dts,
        pts: dts,
        idr,
        discontinuity: false,
        data: Bytes::from(vec![0u8; len]),
    })
}

fn v(idr: bool, dts: u64) -> MediaEvent {
    frame(Track::Video, idr, dts, 1000)
}

fn a(dts: u64) -> MediaEvent {
    frame(Track::Audio, false, dts, 100)
}

/// What the queue holds, as `T` (tracks), `K` (key frame), `v` (video), `a` (audio) + dts.
fn drain(q: &Queue) -> Vec<String> {
    std::iter::from_fn(|| q.try_pop())
        .map(|e| match e {
            MediaEvent::Tracks(_) => "T".to_owned(),
            MediaEvent::Frame(f) if f.idr => format!("K{}", f.dts),
            MediaEvent::Frame(f) if f.track == Track::Video => format!("v{}", f.dts),
            MediaEvent::Frame(f) => format!("a{}", f.dts),
        })
        .collect()
}

#[test]
fn closed_queue_keeps_the_latest_gop_and_counts_nothing() {
    let q = Queue::new(1 << 20);
    q.push(&av());
    q.push(&a(100)); // before any IDR: not kept
    for i in 0..10 {
        q.push(&v(i % 5 == 0, i));
        q.push(&a(i));
    }
    assert_eq!(q.counters(), (0, 0));
    q.open();
    let kept = ["T", "K5", "a5", "v6", "a6", "v7", "a7", "v8", "a8", "v9", "a9"];
    assert_eq!(drain(&q), kept);
    assert_eq!(q.bytes(), 0);
    // A GOP larger than the queue is not kept at all.
    let q = Queue::new(3000); // tracks + 2 video frames fit, not 3
    q.push(&av());
    for i in 0..6 {
        q.push(&v(i == 0, i));
    }
    q.open();
    q.push(&v(false, 6));
    q.push(&v(true, 7));
    assert_eq!(drain(&q), ["T", "K7"]);
}

#[test]
fn open_starts_at_the_next_idr_with_tracks_first() {
    let q = Queue::new(1 << 20);
    q.push(&av());
    q.open();
    q.push(&v(false, 1));
    q.push(&a(2));
    q.push(&v(true, 3));
    q.push(&a(4));
    q.push(&v(false, 5));
    assert_eq!(drain(&q), ["T", "K3", "a4", "v5"]);
    assert_eq!(q.counters(), (0, 0), "waiting for the first IDR is no drop");
    assert_eq!(q.bytes(), 0);
}

#[test]
fn overflow_drops_the_rest_of_the_gop_and_resumes_at_idr() {
    // Room for tracks + 3 video frames + 1 audio frame.
    let room = cost(&av()) + 3 * cost(&v(false, 0)) + cost(&a(0));
    let q = Queue::new(room);
    q.push(&av());
    q.open();
    q.push(&v(true, 0));
    q.push(&v(false, 1));
    q.push(&v(false, 2));
    q.push(&a(3));
    assert_eq!(q.bytes(), room);
    assert!(q.push(&v(false, 4)), "a new GOP drop is reported");
    assert_eq!(q.counters(), (1, 1));
    // The worker catches up, but the rest of the GOP stays dropped, audio included.
    assert_eq!(drain(&q), ["T", "K0", "v1", "v2", "a3"]);
    assert!(!q.push(&a(5)));
    assert!(!q.push(&v(false, 6)));
    assert_eq!(q.counters(), (1, 3));
    q.push(&v(true, 7));
    q.push(&a(8));
    assert_eq!(drain(&q), ["T", "K7", "a8"]);
    assert_eq!(q.counters(), (1, 3));
}

#[test]
fn an_idr_that_does_not_fit_is_another_dropped_gop() {
    let room = cost(&av()) + 2 * cost(&v(false, 0));
    let q = Queue::new(room);
    q.push(&av());
    q.open();
    q.push(&v(true, 0));
    q.push(&v(false, 1));
    assert!(q.push(&v(false, 2)));
    assert!(q.push(&v(true, 3)), "still full: the next GOP is dropped too");
    q.push(&v(false, 4));
    assert_eq!(q.counters(), (2, 3));
    assert_eq!(drain(&q), ["T", "K0", "v1"]);
    q.push(&v(true, 5));
    assert_eq!(drain(&q), ["T", "K5"]);
}

#[test]
fn a_frame_larger_than_the_queue_is_dropped_not_queued() {
    let q = Queue::new(500);
    q.push(&av());
    q.open();
    assert!(q.push(&v(true, 0)));
    assert!(drain(&q).is_empty());
    assert_eq!(q.counters(), (1, 1));
}

#[test]
fn audio_only_drops_single_frames_and_counts_no_gops() {
    let room = cost(&audio_only()) + 2 * cost(&a(0));
    let q = Queue::new(room);
    q.push(&audio_only());
    q.open();
    q.push(&a(0));
    q.push(&a(1));
    assert!(!q.push(&a(2)));
    assert_eq!(drain(&q), ["T", "a0", "a1"]);
    q.push(&a(3));
    assert_eq!(drain(&q), ["a3"], "no wait for a key frame");
    assert_eq!(q.counters(), (0, 1));
}

#[test]
fn new_tracks_are_queued_before_the_next_frame() {
    let q = Queue::new(1 << 20);
    q.push(&av());
    q.open();
    q.push(&v(true, 0));
    q.push(&av());
    q.push(&v(true, 1));
    assert_eq!(drain(&q), ["T", "K0", "T", "K1"]);
    // A tracks change while dropping is not lost: it comes with the resumed IDR.
    q.close();
    q.push(&audio_only());
    q.open();
    q.push(&a(2));
    let first = q.try_pop();
    assert!(matches!(first, Some(MediaEvent::Tracks(t)) if t.video.is_none()));
}

#[test]
fn close_drops_everything_and_reopens_at_idr() {
    let q = Queue::new(1 << 20);
    q.push(&av());
    q.open();
    q.push(&v(true, 0));
    q.push(&v(false, 1));
    q.close();
    assert_eq!(q.bytes(), 0);
    q.push(&v(true, 2));
    q.open();
    q.push(&v(false, 3));
    q.push(&v(true, 4));
    // K2 arrived while closed: kept, and sent first once live again.
    assert_eq!(drain(&q), ["T", "K2", "v3", "K4"]);
}

#[tokio::test]
async fn pop_waits_drains_and_stops() {
    let q = std::sync::Arc::new(Queue::new(1 << 20));
    q.push(&av());
    q.open();
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.pop().await.is_some() })
    };
    tokio::task::yield_now().await;
    q.push(&v(true, 0));
    assert!(waiter.await.unwrap());
    q.push(&v(false, 1));
    q.end(Ending::Drain);
    assert!(matches!(q.pop().await, Some(MediaEvent::Frame(f)) if f.dts == 0));
    assert!(matches!(q.pop().await, Some(MediaEvent::Frame(f)) if f.dts == 1), "drained");
    assert!(q.pop().await.is_none(), "then ends");
    q.push(&v(false, 2));
    q.end(Ending::Stop);
    q.end(Ending::Drain);
    assert_eq!(q.ending(), Some(Ending::Stop), "stop is not downgraded");
    assert!(q.pop().await.is_none());
    assert_eq!(q.ended().await, Ending::Stop);
}

#[derive(Debug, Clone)]
enum Op {
    Video { idr: bool, len: usize },
    Audio { len: usize },
    Tracks,
    Pop(usize),
    Open,
    Close,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (any::<u8>(), 0usize..3000).prop_map(|(r, len)| Op::Video { idr: r % 8 == 0, len }),
        3 => (0usize..500).prop_map(|len| Op::Audio { len }),
        1 => Just(Op::Tracks),
        2 => (0usize..6).prop_map(Op::Pop),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
    ]
}

proptest::proptest! {
    /// Whatever is pushed, popped, opened and closed: the queue stays within its bytes, the
    /// worker gets whole GOPs (a frame other than an IDR comes only right after the frame
    /// pushed before it), and tracks come right before every IDR that restarts the stream.
    #[test]
    fn queue_delivers_whole_gops_within_its_bytes(ops in proptest::collection::vec(op(), 1..300)) {
        let limit = 10_000;
        let q = Queue::new(limit);
        q.push(&av());
        let mut seq = 0u64;
        let mut popped: Vec<Option<(u64, bool)>> = Vec::new(); // None: tracks
        let pop = |q: &Queue, n: usize, popped: &mut Vec<_>| {
            for e in std::iter::from_fn(|| q.try_pop()).take(n) {
                popped.push(match e {
                    MediaEvent::Tracks(_) => None,
                    MediaEvent::Frame(f) => Some((f.dts, f.idr)),
                });
            }
        };
        for op in ops {
            match op {
                Op::Video { idr, len } => {
                    seq += 1;
                    q.push(&frame(Track::Video, idr, seq, len));
                }
                Op::Audio { len } => {
                    seq += 1;
                    q.push(&frame(Track::Audio, false, seq, len));
                }
                Op::Tracks => {
                    q.push(&av());
                }
                Op::Pop(n) => pop(&q, n, &mut popped),
                Op::Open => q.open(),
                Op::Close => {
                    q.close();
                    popped.push(Some((u64::MAX, false))); // a break: nothing continues over it
                }
            }
            proptest::prop_assert!(q.bytes() <= limit);
        }
        pop(&q, usize::MAX, &mut popped);
        let mut previous: Option<(u64, bool)> = None;
        let mut after_tracks = false;
        for item in popped {
            match item {
                None => after_tracks = true,
                Some((u64::MAX, _)) => previous = None,
                Some((s, key)) => {
                    let continues = previous.is_some_and(|(p, _)| p + 1 == s);
                    proptest::prop_assert!(key || continues, "frame {s} does not continue");
                    proptest::prop_assert!(continues || after_tracks, "IDR {s} without tracks");
                    previous = Some((s, key));
                    after_tracks = false;
                }
            }
        }
    }
}
