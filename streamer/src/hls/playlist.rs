//! Media playlists (RFC 8216 §4.3.3), rendered with `m3u8-rs`.
//!
//! `EXT-X-TARGETDURATION` is fixed when the playlist is created and never changes
//! (RFC 8216 §6.2.1): the [`Segmenter`](super::Segmenter) cuts every segment so that its
//! EXTINF rounds to at most the target.

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
        }
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
        self.segments.push_back(MediaSegment {
            uri,
            duration: duration as f32,
            discontinuity,
            ..Default::default()
        });
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
}
