use super::*;

/// A media playlist: target 2 s, sequence `first`, segments `(uri, discontinuity)`.
fn playlist(first: u64, segments: &[(&str, bool)], ended: bool) -> Vec<u8> {
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    for (uri, discontinuity) in segments {
        if *discontinuity {
            text.push_str("#EXT-X-DISCONTINUITY\n");
        }
        text.push_str(&format!("#EXTINF:2.000,\n{uri}\n"));
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text.into_bytes()
}

fn taken(update: &Update) -> Vec<(u64, &str, bool)> {
    update.segments.iter().map(|s| (s.sequence, s.uri.as_str(), s.discontinuity)).collect()
}

#[test]
fn starts_at_the_live_edge_then_takes_each_new_segment_once() {
    let mut f = Follower::new(2);
    let first = f.update(&playlist(10, &[("a", false), ("b", false), ("c", false)], false));
    let first = first.unwrap();
    assert_eq!(taken(&first), [(11, "b", false), (12, "c", false)]);
    assert!(first.changed && !first.restarted && !first.ended);
    assert_eq!(
        (first.target, first.reload_after),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    // Unchanged: nothing new, reload after half the target duration.
    let same = f.update(&playlist(10, &[("a", false), ("b", false), ("c", false)], false));
    let same = same.unwrap();
    assert!(same.segments.is_empty() && !same.changed);
    assert_eq!(same.reload_after, Duration::from_secs(1));
    // The window slides by two.
    let slid = f.update(&playlist(12, &[("c", false), ("d", false), ("e", false)], false)).unwrap();
    assert_eq!(taken(&slid), [(13, "d", false), (14, "e", false)]);
    assert_eq!(slid.skipped, 0);
}

#[test]
fn a_discontinuity_tag_marks_its_segment_but_not_the_first_one_taken() {
    let mut f = Follower::new(1);
    let first = f.update(&playlist(0, &[("a", false), ("b", true)], false)).unwrap();
    assert_eq!(taken(&first), [(1, "b", false)], "the start needs no discontinuity");
    let next = f.update(&playlist(0, &[("a", false), ("b", true), ("c", true)], false)).unwrap();
    assert_eq!(taken(&next), [(2, "c", true)]);
}

#[test]
fn segments_that_slid_out_untaken_are_a_gap() {
    let mut f = Follower::new(1);
    f.update(&playlist(0, &[("a", false)], false)).unwrap();
    let behind = f.update(&playlist(5, &[("f", false), ("g", false)], false)).unwrap();
    assert_eq!(taken(&behind), [(6, "g", true)]);
    assert_eq!(behind.skipped, 5);
}

#[test]
fn after_a_gap_a_long_window_is_taken_from_the_live_edge() {
    let mut f = Follower::new(2);
    f.update(&playlist(0, &[("s0", false), ("s1", false)], false)).unwrap();
    let names: Vec<String> = (10..30).map(|i| format!("s{i}")).collect();
    let window: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), false)).collect();
    let behind = f.update(&playlist(10, &window, false)).unwrap();
    assert_eq!(taken(&behind), [(28, "s28", true), (29, "s29", false)]);
    assert_eq!(behind.skipped, 26);
    assert!(!behind.restarted);
}

#[test]
fn discontinuities_inside_the_first_window_are_kept() {
    let mut f = Follower::new(3);
    let first =
        f.update(&playlist(0, &[("a", false), ("b", true), ("c", true), ("d", false)], false));
    assert_eq!(taken(&first.unwrap()), [(1, "b", false), (2, "c", true), (3, "d", false)]);
}

#[test]
fn a_shorter_playlist_with_the_same_sequence_is_a_restart() {
    let mut f = Follower::new(1);
    let long = [("a", false), ("b", false), ("c", false), ("d", false)];
    f.update(&playlist(0, &long, false)).unwrap();
    let short = f.update(&playlist(0, &[("n0", false), ("n1", false)], false)).unwrap();
    assert!(short.restarted);
    assert_eq!(taken(&short), [(1, "n1", true)]);
    let next = f.update(&playlist(0, &[("n0", false), ("n1", false), ("n2", false)], false));
    assert_eq!(taken(&next.unwrap()), [(2, "n2", false)]);
}

#[test]
fn a_sequence_going_back_is_a_restart_from_the_live_edge() {
    let mut f = Follower::new(2);
    f.update(&playlist(40, &[("x40", false), ("x41", false), ("x42", false)], false)).unwrap();
    let restarted =
        f.update(&playlist(0, &[("n0", false), ("n1", false), ("n2", false)], false)).unwrap();
    assert!(restarted.restarted);
    assert_eq!(taken(&restarted), [(1, "n1", true), (2, "n2", false)]);
    let next = f.update(&playlist(
        0,
        &[("n0", false), ("n1", false), ("n2", false), ("n3", false)],
        false,
    ));
    assert_eq!(taken(&next.unwrap()), [(3, "n3", false)]);
}

#[test]
fn a_replaced_playlist_with_the_same_numbers_is_a_restart() {
    let mut f = Follower::new(1);
    f.update(&playlist(3, &[("old3", false), ("old4", false)], false)).unwrap();
    let replaced = f.update(&playlist(3, &[("new3", false), ("new4", false)], false)).unwrap();
    assert!(replaced.restarted);
    assert_eq!(taken(&replaced), [(4, "new4", true)]);
}

#[test]
fn an_empty_restarted_playlist_flags_its_first_segment_later() {
    let mut f = Follower::new(1);
    f.update(&playlist(7, &[("a", false)], false)).unwrap();
    let empty = f.update(&playlist(0, &[], false)).unwrap();
    assert!(empty.restarted && empty.segments.is_empty());
    let first = f.update(&playlist(0, &[("n0", false)], false)).unwrap();
    assert_eq!(taken(&first), [(0, "n0", true)]);
}

#[test]
fn an_ended_playlist_going_live_again_continues_behind_a_discontinuity() {
    let mut f = Follower::new(1);
    let ended = f.update(&playlist(0, &[("a", false), ("b", false)], true)).unwrap();
    assert!(ended.ended);
    assert_eq!(taken(&ended), [(1, "b", false)]);
    // A new session continues the numbers (streamer's LivePlaylist::continue_from).
    let live = f.update(&playlist(0, &[("a", false), ("b", false), ("c", false)], false)).unwrap();
    assert!(live.restarted && !live.ended);
    assert_eq!(taken(&live), [(2, "c", true)]);
}

#[test]
fn refuses_master_oversized_and_garbage_playlists_without_losing_its_place() {
    let mut f = Follower::new(1);
    f.update(&playlist(0, &[("a", false)], false)).unwrap();
    let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv.m3u8\n";
    assert_eq!(f.update(master), Err(PlaylistError::Master));
    assert_eq!(f.update(&vec![b'#'; MAX_PLAYLIST_BYTES + 1]), Err(PlaylistError::TooLarge));
    assert!(matches!(f.update(b"<html>"), Err(PlaylistError::Unparsable(_))));
    let next = f.update(&playlist(0, &[("a", false), ("b", false)], false)).unwrap();
    assert_eq!(taken(&next), [(1, "b", false)]);
}

#[test]
fn a_huge_target_duration_reloads_within_30_seconds() {
    let mut f = Follower::new(1);
    let text = b"#EXTM3U\n#EXT-X-TARGETDURATION:3600\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:3600,\na\n";
    let first = f.update(text).unwrap();
    assert_eq!(first.reload_after, MAX_RELOAD_INTERVAL);
    assert_eq!(f.update(text).unwrap().reload_after, MAX_RELOAD_INTERVAL);
}

#[test]
fn a_parse_error_never_repeats_the_playlist_text() {
    let mut f = Follower::new(1);
    let text = b"<html>seg.ts?token=SECRET</html>";
    let Err(PlaylistError::Unparsable(kind)) = f.update(text) else { panic!("parsed") };
    assert!(!kind.contains("SECRET") && !kind.contains("seg.ts"), "{kind}");
    assert!(kind.len() < 40, "{kind}");
}
