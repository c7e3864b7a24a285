//! Media playlists (RFC 8216 §4.3.3), rendered with `m3u8-rs`.
//!
//! `EXT-X-TARGETDURATION` is fixed when the playlist is created and never changes
//! (RFC 8216 §6.2.1): the [`Segmenter`](super::Segmenter) cuts every segment so that its
//! EXTINF rounds to at most the target.
//!
//! A sliding live playlist can continue the one a previous session left at the same key
//! ([`LivePlaylist::continue_from`]): a process that died and was replaced keeps the media
//! sequence numbers growing (RFC 8216 §6.2.1 and §6.3.5: numbers never go backwards nor
//! get reused), with `EXT-X-DISCONTINUITY` (§4.3.2.3) before the new session's first segment.

use m3u8_rs::{MediaPlaylist, MediaPlaylistType, MediaSegment};
use std::collections::VecDeque;

/// A media playlist: a sliding live window, or (with an unbounded window) a full
/// recording (`EXT-X-PLAYLIST-TYPE:EVENT`, becoming VOD-like once ended).
#[derive(Debug, Clone)]
pub struct LivePlaylist {
    target: u64,
    window: usize,
    event: bool,
    segments: VecDeque<MediaSegment>,
    media_sequence: u64,
    discontinuity_sequence: u64,
    ended: bool,
    /// The next segment pushed carries `EXT-X-DISCONTINUITY` (a continued playlist's new
    /// session).
    pending_discontinuity: bool,
}

/// A previous live playlist that cannot be continued: the new session starts afresh.
#[derive(Debug, thiserror::Error)]
pub enum PreviousPlaylistError {
    /// Not UTF-8, not an `#EXTM3U` media playlist, trailing garbage, or no
    /// `EXT-X-TARGETDURATION`.
    #[error("previous live playlist unparsable: {0}")]
    Unparsable(String),
}

/// Parses a media playlist this crate wrote, strictly: UTF-8, `#EXTM3U`, a media (not master)
/// playlist with a target duration, nothing left unparsed.
pub(crate) fn parse_previous(bytes: &[u8]) -> Result<MediaPlaylist, PreviousPlaylistError> {
    let bad = |why: &str| Err(PreviousPlaylistError::Unparsable(why.to_owned()));
    if std::str::from_utf8(bytes).is_err() {
        return bad("not UTF-8");
    }
    if !bytes.starts_with(b"#EXTM3U") {
        return bad("no #EXTM3U header");
    }
    if m3u8_rs::is_master_playlist(bytes) {
        return bad("a master playlist");
    }
    let (rest, playlist) = match m3u8_rs::parse_media_playlist(bytes) {
        Ok(parsed) => parsed,
        Err(e) => return bad(&format!("{e:?}").chars().take(200).collect::<String>()),
    };
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return bad("unparsed lines");
    }
    if playlist.target_duration == 0 {
        return bad("no EXT-X-TARGETDURATION");
    }
    Ok(playlist)
}

impl LivePlaylist {
    /// A sliding playlist of at most `window` segments with target duration `target` s.
    pub fn sliding(target: u32, window: usize) -> Self {
        Self::new(target, window.max(1), false)
    }

    /// A playlist keeping every segment (`EXT-X-PLAYLIST-TYPE:EVENT`).
    pub fn event(target: u32) -> Self {
        Self::new(target, usize::MAX, true)
    }

    fn new(target: u32, window: usize, event: bool) -> Self {
        Self {
            target: u64::from(target),
            window,
            event,
            segments: VecDeque::new(),
            media_sequence: 0,
            discontinuity_sequence: 0,
            ended: false,
            pending_discontinuity: false,
        }
    }

    /// A sliding playlist (target `target` s, at most `window` segments) continuing
    /// `previous`, the text of the live playlist an earlier session left at the same key,
    /// so that a player following it never sees the media sequence go backwards (RFC 8216
    /// §6.2.1: a number, once used, always names the same segment; §6.3.5: clients rely on
    /// it). `EXT-X-ENDLIST` of an ended previous playlist is dropped: the stream goes on.
    ///
    /// - Same target duration: its still-listed segments stay (their relative URIs still
    ///   name the earlier session's objects), with its `EXT-X-MEDIA-SEQUENCE` and
    ///   `EXT-X-DISCONTINUITY-SEQUENCE`; the first segment pushed carries
    ///   `EXT-X-DISCONTINUITY` (§4.3.2.3: another encoder session, timestamps restart), and
    ///   the window slides on as [`LivePlaylist::push`] always does (§6.2.2).
    /// - Another target duration (which must never change within a playlist, §6.2.1): none
    ///   of its segments stay, but the media sequence goes on after its last segment and the
    ///   discontinuity sequence counts the `EXT-X-DISCONTINUITY` tags of the segments it
    ///   drops, so every number stays as unique as if they had slid out of the window; the
    ///   first segment pushed carries `EXT-X-DISCONTINUITY`.
    ///
    /// # Errors
    /// [`PreviousPlaylistError`] when `previous` is not a media playlist: start afresh with
    /// [`LivePlaylist::sliding`].
    pub fn continue_from(
        target: u32,
        window: usize,
        previous: &[u8],
    ) -> Result<Self, PreviousPlaylistError> {
        Ok(Self::continued(target, window, parse_previous(previous)?))
    }

    /// [`LivePlaylist::continue_from`] of a parsed playlist.
    pub(crate) fn continued(target: u32, window: usize, previous: MediaPlaylist) -> Self {
        let mut playlist = Self::sliding(target, window);
        let listed = previous.segments.len() as u64;
        playlist.media_sequence = previous.media_sequence;
        playlist.discontinuity_sequence = previous.discontinuity_sequence;
        playlist.pending_discontinuity = listed > 0;
        if previous.target_duration == playlist.target {
            playlist.segments = previous.segments.into();
            playlist.slide();
        } else {
            tracing::warn!(
                previous = previous.target_duration,
                target,
                "previous live playlist has another target duration: its segments are dropped, \
                 its numbering goes on"
            );
            let tags = previous.segments.iter().filter(|s| s.discontinuity).count() as u64;
            playlist.media_sequence = playlist.media_sequence.saturating_add(listed);
            playlist.discontinuity_sequence = playlist.discontinuity_sequence.saturating_add(tags);
        }
        playlist
    }

    /// The same session's own live playlist, read back to be resumed (start-up recovery):
    /// everything kept as listed, no discontinuity added, not ended.
    pub(crate) fn resumed(target: u32, window: usize, own: MediaPlaylist) -> Self {
        let mut playlist = Self::continued(target, window, own);
        playlist.pending_discontinuity = false;
        playlist
    }

    /// Appends a segment at `uri` (relative to the playlist) lasting `duration` seconds, which
    /// should round to at most the target (a longer one is listed as it is and logged: the
    /// target never changes). `discontinuity` marks a break before it (new encoding
    /// parameters, timestamps, or a lost segment: `EXT-X-DISCONTINUITY`, §4.3.2.3). The oldest
    /// segment leaves the window when it is full (`EXT-X-MEDIA-SEQUENCE` and
    /// `EXT-X-DISCONTINUITY-SEQUENCE` advance accordingly, §6.2.2).
    pub fn push(&mut self, uri: String, duration: f64, discontinuity: bool) {
        if duration.round() > self.target as f64 {
            tracing::warn!(uri, duration, target = self.target, "segment longer than the target");
        }
        let discontinuity = discontinuity || std::mem::take(&mut self.pending_discontinuity);
        self.segments.push_back(MediaSegment {
            uri,
            duration: duration as f32,
            discontinuity,
            ..Default::default()
        });
        self.slide();
    }

    /// Drops the oldest segments beyond the window.
    fn slide(&mut self) {
        while self.segments.len() > self.window {
            self.media_sequence += 1;
            // §6.2.2: removing a segment that carries EXT-X-DISCONTINUITY advances the
            // discontinuity sequence, so every remaining segment keeps its number.
            if self.segments.pop_front().is_some_and(|s| s.discontinuity) {
                self.discontinuity_sequence += 1;
            }
        }
    }

    /// Marks the stream as finished (`EXT-X-ENDLIST`, §4.3.3.4).
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the number of the first listed segment.
    pub fn media_sequence(&self) -> u64 {
        self.media_sequence
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// URIs currently listed, oldest first.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| s.uri.as_str())
    }

    /// Renders the playlist text (UTF-8).
    pub fn render(&self) -> Vec<u8> {
        let playlist = MediaPlaylist {
            version: Some(3),
            target_duration: self.target,
            media_sequence: self.media_sequence,
            discontinuity_sequence: self.discontinuity_sequence,
            end_list: self.ended,
            playlist_type: self.event.then_some(MediaPlaylistType::Event),
            segments: self.segments.iter().cloned().collect(),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(128 + 48 * self.segments.len());
        // Writing into a Vec cannot fail.
        let _ = playlist.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_and_sequence_advances() {
        let mut p = LivePlaylist::sliding(4, 3);
        for i in 0..5 {
            p.push(format!("s/{i}.ts"), 4.0, false);
        }
        p.end();
        let text = String::from_utf8(p.render()).unwrap();
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(parsed.media_sequence, 2);
        assert_eq!(parsed.target_duration, 4);
        assert!(parsed.end_list);
        assert_eq!(p.uris().collect::<Vec<_>>(), vec!["s/2.ts", "s/3.ts", "s/4.ts"]);
    }

    /// The discontinuity sequence number of each listed segment (RFC 8216 §6.2.2): the
    /// playlist's EXT-X-DISCONTINUITY-SEQUENCE plus the tags up to and including it.
    fn numbers(p: &LivePlaylist) -> Vec<(String, u64)> {
        let parsed = m3u8_rs::parse_media_playlist_res(&p.render()).unwrap();
        let mut n = parsed.discontinuity_sequence;
        parsed
            .segments
            .iter()
            .map(|s| {
                n += u64::from(s.discontinuity);
                (s.uri.clone(), n)
            })
            .collect()
    }

    #[test]
    fn discontinuity_numbers_survive_the_window_sliding() {
        let mut p = LivePlaylist::sliding(2, 3);
        let mut seen = std::collections::HashMap::new();
        for i in 0..10 {
            p.push(format!("{i}.ts"), 2.0, i == 2 || i == 3 || i == 7);
            for (uri, n) in numbers(&p) {
                assert_eq!(*seen.entry(uri.clone()).or_insert(n), n, "{uri} renumbered");
            }
        }
        assert_eq!(seen["9.ts"], 3);
    }

    #[test]
    fn event_playlist_keeps_everything_and_target_never_changes() {
        let mut p = LivePlaylist::event(2);
        for i in 0..30 {
            p.push(format!("{i}.ts"), if i == 7 { 2.6 } else { 2.0 }, i == 9);
        }
        let parsed = m3u8_rs::parse_media_playlist_res(&p.render()).unwrap();
        assert_eq!(parsed.segments.len(), 30);
        assert_eq!(parsed.target_duration, 2);
        assert!(parsed.segments[9].discontinuity && !parsed.segments[8].discontinuity);
        assert_eq!(parsed.playlist_type, Some(MediaPlaylistType::Event));
    }

    /// A live playlist of `n` segments `old/NNNNNN.ts` through a window of `window`, with
    /// discontinuities before the segments in `at`.
    fn previous(target: u32, n: u64, window: usize, at: &[u64], ended: bool) -> Vec<u8> {
        let mut p = LivePlaylist::sliding(target, window);
        for i in 0..n {
            p.push(format!("old/{i:06}.ts"), f64::from(target), at.contains(&i));
        }
        if ended {
            p.end();
        }
        p.render()
    }

    /// Checks what a player following every version in turn relies on (RFC 8216 §6.2.1,
    /// §6.2.2, §6.3.5): the media sequence never goes back, a media sequence number always
    /// names the same URI, a URI keeps its discontinuity sequence number.
    fn assert_numbering(versions: &[Vec<u8>]) {
        let (mut by_number, mut discontinuities) = (HashMap::new(), HashMap::new());
        let mut last_sequence = 0;
        for text in versions {
            let p = m3u8_rs::parse_media_playlist_res(text).unwrap();
            assert!(p.media_sequence >= last_sequence, "media sequence went back");
            last_sequence = p.media_sequence;
            let mut d = p.discontinuity_sequence;
            for (i, s) in p.segments.iter().enumerate() {
                d += u64::from(s.discontinuity);
                let n = p.media_sequence + i as u64;
                assert_eq!(by_number.entry(n).or_insert_with(|| s.uri.clone()), &s.uri, "#{n}");
                assert_eq!(*discontinuities.entry(s.uri.clone()).or_insert(d), d, "{}", s.uri);
            }
        }
    }

    use std::collections::HashMap;

    #[test]
    fn continues_an_earlier_sessions_playlist_with_a_discontinuity() {
        // Listed: old/3..=7, the discontinuity before old/4 still listed.
        let old = previous(2, 8, 5, &[1, 4], false);
        let mut p = LivePlaylist::continue_from(2, 5, &old).unwrap();
        assert_eq!((p.media_sequence(), p.discontinuity_sequence()), (3, 1));
        let mut versions = vec![old];
        for i in 0..7 {
            p.push(format!("new/{i:06}.ts"), 2.0, false);
            versions.push(p.render());
        }
        assert_numbering(&versions);
        let first = m3u8_rs::parse_media_playlist_res(&versions[1]).unwrap();
        assert_eq!(first.media_sequence, 4, "one segment slid out");
        assert!(!first.end_list);
        let uris: Vec<_> = first.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            ["old/000004.ts", "old/000005.ts", "old/000006.ts", "old/000007.ts", "new/000000.ts"]
        );
        let flags: Vec<_> = first.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(flags, [true, false, false, false, true]);
        assert_eq!(first.discontinuity_sequence, 1);
        // Once the old segments are gone: 3 + 8 - 5 media sequence numbers, and the two
        // discontinuities they carried counted.
        let last = m3u8_rs::parse_media_playlist_res(versions.last().unwrap()).unwrap();
        assert_eq!((last.media_sequence, last.discontinuity_sequence), (10, 3));
        assert!(last.segments.iter().all(|s| !s.discontinuity));
    }

    #[test]
    fn an_ended_playlist_is_continued_and_no_longer_ended() {
        let old = previous(4, 3, 6, &[], true);
        let mut p = LivePlaylist::continue_from(4, 6, &old).unwrap();
        p.push("new/000000.ts".into(), 4.0, false);
        let text = p.render();
        assert_numbering(&[old, text.clone()]);
        let parsed = m3u8_rs::parse_media_playlist_res(&text).unwrap();
        assert!(!parsed.end_list, "EXT-X-ENDLIST dropped: the stream goes on");
        assert_eq!(parsed.media_sequence, 0);
        assert_eq!(parsed.segments.len(), 4);
        assert!(parsed.segments[3].discontinuity && !parsed.segments[2].discontinuity);
        p.end();
        assert!(m3u8_rs::parse_media_playlist_res(&p.render()).unwrap().end_list);
    }

    #[test]
    fn another_target_drops_the_segments_but_numbering_goes_on() {
        // Target 6: old/2..=9 listed, discontinuities before old/3 and old/7.
        let old = previous(6, 10, 8, &[0, 3, 7], false);
        let before = m3u8_rs::parse_media_playlist_res(&old).unwrap();
        assert_eq!((before.media_sequence, before.discontinuity_sequence), (2, 1));
        let mut p = LivePlaylist::continue_from(2, 5, &old).unwrap();
        assert_eq!(p.uris().count(), 0);
        let mut versions = vec![old];
        for i in 0..3 {
            p.push(format!("new/{i:06}.ts"), 2.0, false);
            versions.push(p.render());
        }
        assert_numbering(&versions);
        let parsed = m3u8_rs::parse_media_playlist_res(versions.last().unwrap()).unwrap();
        assert_eq!(parsed.target_duration, 2);
        assert_eq!(parsed.media_sequence, 10, "after old/9, numbered 9");
        // 1 + the two dropped tags; the new session's first segment is the third break.
        assert_eq!(parsed.discontinuity_sequence, 3);
        let flags: Vec<_> = parsed.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(flags, [true, false, false]);
    }

    #[test]
    fn a_narrower_window_drops_the_oldest_segments_in_order() {
        let old = previous(2, 10, 10, &[2], false);
        let mut p = LivePlaylist::continue_from(2, 3, &old).unwrap();
        assert_eq!((p.media_sequence(), p.discontinuity_sequence()), (7, 1));
        p.push("new/000000.ts".into(), 2.0, false);
        assert_numbering(&[old, p.render()]);
    }

    #[test]
    fn what_is_not_a_media_playlist_is_refused() {
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow/index.m3u8\n";
        for bad in [
            &b""[..],
            b"not a playlist",
            b"{\"json\": true}",
            b"#EXTM3U\n",
            b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2,\na.ts\n",
            master,
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n\xff\xfe\n",
        ] {
            assert!(
                LivePlaylist::continue_from(2, 5, bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let fine = previous(2, 2, 5, &[], false);
        assert!(LivePlaylist::continue_from(2, 5, &fine).is_ok());
    }
}
