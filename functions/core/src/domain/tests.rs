//! Unit tests of [`super`] (domain.rs).

use super::*;

fn new(name: &str) -> NewChannel {
    NewChannel {
        name: name.into(),
        description: String::new(),
        hls: HlsSettings::default(),
        recording: false,
        playback: None,
        relays: Vec::new(),
        expires_at: None,
    }
}

#[test]
fn new_channel_defaults() {
    let now = OffsetDateTime::now_utc();
    let c = new("cam").into_channel(now, Playback::Public).unwrap();
    assert_eq!(c.id.len(), 32);
    assert_eq!(c.version, 1);
    assert_eq!(c.state, ChannelState::Idle);
    assert!(c.expires_at > now + Duration::days(29));
    assert_ne!(c.secret, new("cam").into_channel(now, Playback::Public).unwrap().secret);
}

#[test]
fn names_the_invalid_field() {
    let now = OffsetDateTime::now_utc();
    assert_eq!(new(" ").into_channel(now, Playback::Public).unwrap_err().field, "name");
    let mut n = new("a");
    n.hls.segment_duration = 11;
    assert_eq!(n.into_channel(now, Playback::Public).unwrap_err().field, "hls.segment_duration");
    let mut n = new("a");
    n.hls.playlist_window = 2;
    assert_eq!(n.into_channel(now, Playback::Public).unwrap_err().field, "hls.playlist_window");
    let mut n = new("a");
    n.expires_at = Some(now - Duration::hours(1));
    assert_eq!(n.into_channel(now, Playback::Public).unwrap_err().field, "expires_at");
}

#[test]
fn patch_bumps_version_and_keeps_unset_fields() {
    let now = OffsetDateTime::now_utc();
    let c = new("a").into_channel(now, Playback::Public).unwrap();
    let p = ChannelPatch {
        hls: Some(HlsPatch { segment_duration: Some(2), playlist_window: None }),
        ..Default::default()
    };
    let n = p.apply(&c, now).unwrap();
    assert_eq!(n.version, 2);
    assert_eq!(n.hls.segment_duration, 2);
    assert_eq!(n.hls.playlist_window, c.hls.playlist_window);
    assert_eq!(n.name, "a");
    assert_eq!(c.playback, Playback::Public);
    let same = ChannelPatch { playback: Some(Playback::Public), ..Default::default() };
    assert!(same.apply(&c, now).is_ok());
    let change = ChannelPatch { playback: Some(Playback::Signed), ..Default::default() };
    assert_eq!(change.apply(&c, now).unwrap_err().field, "playback");
    let mut signed = new("s");
    signed.playback = Some(Playback::Signed);
    let s = signed.into_channel(now, Playback::Public).unwrap();
    assert_eq!((s.playback, s.prefix()), (Playback::Signed, format!("signed/live/{}", s.id)));
}

#[test]
fn secret_is_redacted_and_round_trips() {
    let s = Secret::generate();
    assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    assert_eq!(Secret::from_hex(&s.to_hex()), Some(s));
    assert_eq!(Secret::from_hex("zz"), None);
}
