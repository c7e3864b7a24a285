//! Tolerant demux end to end: what ffmpeg really sends when it relays MPEG-TS (`-c copy`),
//! a resolution change and a one-hour timestamp jump mid-publish. Each ends as a complete
//! HLS playlist whose segments stay within the channel's fixed target duration, with
//! `EXT-X-DISCONTINUITY` where the encoding or the timeline breaks, and that ffmpeg decodes.

use m3u8_rs::MediaPlaylist;
use std::path::{Path, PathBuf};
use std::process::Command;
use streamer::flv::{FlvFileReader, TAG_AUDIO, TAG_VIDEO};
use streamstack_core::{Channel, HlsSettings};
use streamstack_tests::*;

/// A fresh directory for this test's media files.
fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("discontinuity"));
    std::fs::create_dir_all(&dir).expect("create work dir");
    dir
}

/// The relay command people use: `ffmpeg [-re] [-copyts] -i in.ts -c copy -f flv <output>`.
fn relay(input: &Path, realtime: bool, copyts: bool, output: &str) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
    if realtime {
        cmd.arg("-re");
    }
    if copyts {
        cmd.arg("-copyts");
    }
    cmd.arg("-i").arg(input).args(["-c", "copy", "-f", "flv", output]);
    cmd
}

async fn publish(mut cmd: Command) -> bool {
    tokio::task::spawn_blocking(move || cmd.status().map(|s| s.success()).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// Codec types (`video`, `audio`) and widths of the streams in `input`, from ffprobe.
fn streams(input: &str) -> Vec<(String, String)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,width", "-of", "csv=p=0"])
        .arg(input)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut parts = l.split(',');
            let kind = parts.next().unwrap_or_default().to_owned();
            (kind, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Every segment's EXTINF rounds to at most the declared target, which is the channel's.
fn assert_within_target(pl: &MediaPlaylist, target: u64) {
    assert_eq!(pl.target_duration, target, "{pl:?}");
    for s in &pl.segments {
        assert!(
            f64::from(s.duration).round() as u64 <= target,
            "{} lasts {} s, target {target}",
            s.uri,
            s.duration
        );
    }
}

/// Relays `input` (as [`relay`] does) into a new channel (2 s target, 20-segment window) of
/// an in-process streamer writing to a new bucket; returns the ended live playlist.
async fn relay_into_new_channel(
    input: &Path,
    realtime: bool,
    copyts: bool,
) -> (String, Channel, MediaPlaylist) {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let ch =
        channel(store.as_ref(), HlsSettings { segment_duration: 2, playlist_window: 20 }).await;
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;
    let url = streamer.push_url(&ch);
    assert!(publish(relay(input, realtime, copyts, &url)).await, "relay failed");
    let pl = ended_playlist(&aws, &bucket, &ch).await;
    streamer.stop().await;
    (bucket, ch, pl)
}

fn total(pl: &MediaPlaylist) -> f32 {
    pl.segments.iter().map(|s| s.duration).sum()
}

#[tokio::test]
async fn mpegts_relay_with_empty_first_audio_config_becomes_complete_hls() {
    let dir = work_dir();
    let ts = make_ts(&dir, "relay.ts", "320x240", 5, "0");

    // What reaches the wire: the relay's first AAC sequence header carries no
    // AudioSpecificConfig (the real one follows), the case this test is about.
    let flv = dir.join("relay.flv");
    assert!(publish(relay(&ts, false, false, flv.to_str().unwrap())).await);
    let file = std::fs::File::open(&flv).expect("open relay.flv");
    let mut reader = FlvFileReader::new(std::io::BufReader::new(file)).expect("FLV header");
    let mut first_aac_config = None;
    while let Some(tag) = reader.next_tag().expect("FLV tag") {
        // AUDIODATA: SoundFormat 10 (AAC), AACPacketType 0 (sequence header).
        let aac = tag.body.first().map(|b| b >> 4) == Some(10);
        if tag.kind == TAG_AUDIO && aac && tag.body.get(1) == Some(&0) {
            first_aac_config = Some(tag.body[2..].to_vec());
            break;
        }
    }
    assert_eq!(first_aac_config, Some(vec![]), "the relay's first AAC config is not empty");

    let (bucket, ch, pl) = relay_into_new_channel(&ts, true, false).await;

    assert_within_target(&pl, 2);
    assert!((total(&pl) - 5.0).abs() <= 0.5, "{} s: {pl:?}", total(&pl));
    assert!(pl.segments.iter().all(|s| !s.discontinuity), "{pl:?}");
    let url = format!("{}/{bucket}/live/{}/index.m3u8", endpoint(), ch.id);
    let kinds: Vec<String> = streams(&url).into_iter().map(|(kind, _)| kind).collect();
    assert!(
        kinds.contains(&"audio".to_owned()) && kinds.contains(&"video".to_owned()),
        "{kinds:?}"
    );
    let duration = ffprobe_duration(&url).expect("ffprobe reads the playlist");
    assert!((duration - 5.0).abs() <= 0.5, "ffprobe duration {duration}");
    let errors = ffmpeg_decode_errors(&url);
    assert!(errors.is_empty(), "decode errors: {errors}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn resolution_change_and_one_hour_jump_are_discontinuities_within_target() {
    let dir = work_dir();
    // 3 s at 320x240; 3 s at 640x360 continuing the timeline (ffmpeg starts the first piece's
    // video 21 ms late, behind the AAC priming, hence 3.021); 3 s more an hour later. Where
    // the pieces meet, the AAC priming of the next one overlaps the previous one's end.
    let pieces = [
        make_ts(&dir, "a.ts", "320x240", 3, "0"),
        make_ts(&dir, "b.ts", "640x360", 3, "3.021"),
        make_ts(&dir, "c.ts", "640x360", 3, "3606"),
    ];
    let joined = dir.join("joined.ts");
    let bytes: Vec<u8> =
        pieces.iter().flat_map(|p| std::fs::read(p).expect("read piece")).collect();
    std::fs::write(&joined, bytes).expect("write joined.ts");

    // What reaches the wire: the same relay into an FLV file carries the jump (ffmpeg smooths
    // MPEG-TS discontinuities away unless -copyts) and no new AVC sequence header.
    let flv = dir.join("wire.flv");
    assert!(publish(relay(&joined, false, true, flv.to_str().unwrap())).await);
    let file = std::fs::File::open(&flv).expect("open wire.flv");
    let mut reader = FlvFileReader::new(std::io::BufReader::new(file)).expect("FLV header");
    let (mut last, mut largest_step) = (None::<u32>, 0u32);
    while let Some(tag) = reader.next_tag().expect("FLV tag") {
        if tag.kind == TAG_VIDEO {
            if let Some(last) = last {
                largest_step = largest_step.max(tag.timestamp_ms.saturating_sub(last));
            }
            last = Some(tag.timestamp_ms);
        }
    }
    assert!(largest_step >= 3_600_000, "no one-hour jump on the wire: {largest_step} ms");

    let (bucket, ch, pl) = relay_into_new_channel(&joined, false, true).await;

    assert_within_target(&pl, 2);
    assert!((total(&pl) - 9.0).abs() <= 0.5, "{} s: {pl:?}", total(&pl));
    // One at the new resolution (3 s), one at the jump (6 s).
    let breaks: Vec<f32> = pl
        .segments
        .iter()
        .scan(0.0f32, |at, s| {
            let start = *at;
            *at += s.duration;
            Some((start, s.discontinuity))
        })
        .filter_map(|(start, d)| d.then_some(start))
        .collect();
    assert_eq!(breaks.len(), 2, "{pl:?}");
    assert!((breaks[0] - 3.0).abs() < 0.1 && (breaks[1] - 6.0).abs() < 0.1, "{breaks:?}");

    let base = format!("{}/{bucket}/live/{}", endpoint(), ch.id);
    let widths = |uri: &str| {
        streams(&format!("{base}/{uri}")).into_iter().find(|(k, _)| k == "video").map(|(_, w)| w)
    };
    assert_eq!(widths(&pl.segments[0].uri).as_deref(), Some("320"));
    assert_eq!(widths(&pl.segments[pl.segments.len() - 1].uri).as_deref(), Some("640"));
    let url = format!("{base}/index.m3u8");
    // Rebased: the timeline is 9 s long, not an hour.
    let duration = ffprobe_duration(&url).expect("ffprobe reads the playlist");
    assert!((duration - 9.0).abs() <= 1.0, "ffprobe duration {duration}");
    let errors = ffmpeg_decode_errors(&url);
    assert!(errors.is_empty(), "decode errors: {errors}");
    let _ = std::fs::remove_dir_all(dir);
}
