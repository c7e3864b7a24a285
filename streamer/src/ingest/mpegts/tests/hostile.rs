//! Hostile audio: PES packets of many tiny ADTS frames and audio timestamps far from the
//! video must cost output (frames, events, timeline) proportional to the media, not to the
//! frame count a sender can pack in.

use super::*;

/// The smallest ADTS frame: a 7-byte header and one byte.
fn tiny() -> Vec<u8> {
    let tiny = adts(1);
    assert_eq!(tiny.len(), 8);
    tiny
}

fn count(frames: &[&Frame], track: Track) -> usize {
    frames.iter().filter(|f| f.track == track).count()
}

#[test]
fn an_unbounded_audio_pes_of_tiny_adts_frames_is_dropped_and_the_stream_goes_on() {
    let mut mux = TsMuxer::new(true);
    let (mut ts, mut sent) = (Vec::new(), Vec::new());
    for i in 0..2 {
        write_av(&mut mux, i, 0, 0, &mut ts, &mut sent);
    }
    // The reviewer's burst: 4 MiB of 8-byte ADTS frames (524,288 frames, ~3 h at 48 kHz) in
    // one audio PES, too long for PES_packet_length, so 0.
    let at = ts.len();
    let burst = tiny().repeat(512 << 10);
    mux.write_frame(&frame(Track::Audio, 2 * FRAME, 2 * FRAME, false, burst), &mut ts).unwrap();
    assert_eq!((ts[at + 1] & 0x40, &ts[at + 4..at + 10]), (0x40, &[0, 0, 1, 0xC0, 0, 0][..]));
    let burst_packets = (ts.len() - at) / 188;
    assert!(burst_packets > 20_000);
    for i in 2..30 {
        write_av(&mut mux, i, 0, 0, &mut ts, &mut sent);
    }
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    // Nothing of the burst comes out (dropped at 64 KiB); everything else does, exactly.
    assert_eq!(events.len(), sent.len() + 1, "one Tracks event, then the frames");
    let got = frames(&events);
    assert_eq!(got.len(), sent.len());
    for track in [Track::Video, Track::Audio] {
        let got = got.iter().filter(|f| f.track == track);
        let expected = sent.iter().filter(|f| f.track == track);
        for (g, e) in got.zip(expected) {
            assert_eq!((g.dts - WRAP, &g.data), (e.dts, &e.data), "{track:?}");
        }
    }
    let stats = d.stats();
    assert_eq!(stats.oversize_pes, 1, "{stats:?}");
    assert_eq!(stats.frames, sent.len() as u64);
    assert_eq!((stats.cc_errors, stats.dropped_pes, stats.distant_audio_frames), (0, 0, 0));
}

#[test]
fn an_audio_pes_yields_at_most_one_second_and_audio_cannot_outrun_the_video() {
    let mut mux = TsMuxer::new(true);
    let (mut ts, mut sent) = (Vec::new(), Vec::new());
    for i in 0..2 {
        write_av(&mut mux, i, 0, 0, &mut ts, &mut sent);
    }
    // 200 audio PES of 60,000 bytes (under 64 KiB, with a length): 7,500 8-byte ADTS frames
    // (160 s at 48 kHz) each, PTS one second apart; the video stays at 0 meanwhile (frame 1
    // ends only when frame 2 starts).
    let pes_frames = 7_500;
    for k in 0..200 {
        let pts = 2 * FRAME + k * 90_000;
        let data = tiny().repeat(pes_frames);
        mux.write_frame(&frame(Track::Audio, pts, pts, false, data), &mut ts).unwrap();
    }
    assert!(ts.len() > 12_000_000);
    for i in 2..30 {
        write_av(&mut mux, i, 0, 0, &mut ts, &mut sent);
    }
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    let got = frames(&events);
    let stats = d.stats();
    // Per PES the first second: 47 frames of 1920 ticks (frame 47 would start at 1.003 s).
    assert_eq!(stats.excess_audio_frames, 200 * (pes_frames as u64 - 47), "{stats:?}");
    // Within 5 s of the video's DTS (0): PES 0..=3 whole, 44 frames of PES 4 (7200 + 4 s +
    // 43 × 1920 = 449,760 ticks); the other 3 of PES 4 and all of PES 5..200 dropped.
    let burst = 4 * 47 + 44;
    assert_eq!(stats.distant_audio_frames, 3 + 195 * 47);
    assert_eq!(count(&got, Track::Audio), 2 * 30 + burst);
    assert_eq!(count(&got, Track::Video), 30);
    assert_eq!(events.len(), got.len() + 1);
    assert!(got.iter().all(|f| f.dts - WRAP <= 5 * 90_000 + 29 * FRAME), "audio within 5 s");
    assert_eq!(stats.frames, got.len() as u64);
    assert_eq!((stats.cc_errors, stats.dropped_pes, stats.oversize_pes), (0, 0, 0));
    // The demuxer still follows the stream exactly: the last frames are the sent ones.
    let last = got.last().unwrap();
    let sent_last = sent.last().unwrap();
    assert_eq!((last.dts - WRAP, &last.data), (sent_last.dts, &sent_last.data));
}

#[test]
fn audio_far_from_the_video_is_dropped_and_counted() {
    let ten_s = 900_000;
    // Audio behind the first video frame is dropped as early (frames 0 and 1's, held).
    for (shift_s, audio_out) in [(4, 60), (-4, 56), (6, 0), (-6, 0)] {
        let (ts, _) = stream_shifted(30, ten_s, shift_s * 90_000);
        let mut d = demuxer();
        let got_events = demux_in_chunks(&ts, &[1316], &mut d);
        let got = frames(&got_events);
        assert_eq!(count(&got, Track::Video), 30, "shift {shift_s} s");
        assert_eq!(count(&got, Track::Audio), audio_out, "shift {shift_s} s");
        let stats = d.stats();
        let dropped = stats.distant_audio_frames + stats.early_audio_frames;
        assert_eq!(dropped, 60 - audio_out as u64, "shift {shift_s} s: {stats:?}");
        if shift_s > 0 {
            // Held audio and audio after the first video frame alike: none is early.
            assert_eq!(stats.early_audio_frames, 0);
        }
        if shift_s < 0 {
            assert_eq!(stats.early_audio_frames, 4, "{stats:?}");
        }
    }
}

#[test]
fn audio_of_a_new_epoch_waits_for_its_video_and_is_bounded_meanwhile() {
    // A sender flagging a discontinuity on every audio packet, video stalled: the audio of
    // each new epoch waits (at most 64 frames, copies), none goes out, all are counted.
    let mut mux = TsMuxer::new(true);
    let (mut ts, mut sent) = (Vec::new(), Vec::new());
    for i in 0..2 {
        write_av(&mut mux, i, 0, 0, &mut ts, &mut sent);
    }
    let from = ts.len();
    for k in 0..500 {
        let pts = 2 * FRAME + k * 1920;
        mux.write_frame(&frame(Track::Audio, pts, pts, false, adts(50)), &mut ts).unwrap();
    }
    for at in packets_of(&ts, crate::ts::AUDIO_PID).into_iter().filter(|&at| at >= from) {
        // Each is one packet with stuffing, so an adaptation field to flag.
        assert_eq!(ts[at + 3] & 0x20, 0x20);
        ts[at + 5] |= 0x80;
    }
    let mut d = demuxer();
    let mut out = Vec::new();
    for chunk in ts.chunks(1316) {
        d.push(chunk, &mut out).unwrap();
    }
    // A null packet (PID 0x1FFF): the demuxer takes the last audio packet once the next one
    // confirms the sync.
    let mut null = vec![0x47, 0x1F, 0xFF, 0x10];
    null.resize(188, 0xFF);
    d.push(&null, &mut out).unwrap();
    let got = frames(&out);
    // Video frame 0 and the audio of frames 0 and 1; video 1 waits for the next video PES.
    assert_eq!((count(&got, Track::Video), count(&got, Track::Audio)), (1, 4));
    let stats = d.stats();
    assert_eq!(stats.discontinuities, 500);
    assert_eq!(stats.early_audio_frames, 500 - 64, "{stats:?}");
    // The video resumes: frame 1 (epoch 0) ends, then frame 2 (epoch 500, flagged) with its
    // audio. Of the 64 frames held, those of older epochs are dropped as early, the last
    // one (epoch 500, PTS 10 s ahead) as distant.
    write_av(&mut mux, 2, 0, 0, &mut ts, &mut sent);
    let mut d = demuxer();
    let events = demux_in_chunks(&ts, &[1316], &mut d);
    let got = frames(&events);
    assert_eq!((count(&got, Track::Video), count(&got, Track::Audio)), (3, 6));
    let marked: Vec<u64> = got.iter().filter(|f| f.discontinuity).map(|f| f.dts - WRAP).collect();
    assert_eq!(marked, [2 * FRAME]);
    let stats = d.stats();
    assert_eq!((stats.early_audio_frames, stats.distant_audio_frames), (499, 1), "{stats:?}");
}
