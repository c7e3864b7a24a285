//! Browser playback: a 3-rendition ABR HLS asset (ffmpeg `-var_stream_map`) in moto's S3,
//! played by hls.js in headless Chromium through the harness (`streamstack_tests::browser`,
//! `tests/browser/play.mjs`): it plays to the end without a fatal error and, with the
//! bandwidth capped, fragments of at least two renditions are requested; a playlist whose
//! segments are missing (404) ends in a fatal error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use streamstack_tests::browser::{self, PlayOptions, PlayResult};

/// An 8 s ABR HLS rendition set (2 s segments): 240p ~200 kb/s, 360p ~700 kb/s and 540p
/// ~2 Mb/s H.264 with AAC, `master.m3u8` listing BANDWIDTH, RESOLUTION and CODECS; encoded
/// once per test binary.
fn abr_hls() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = streamstack_tests::tempdir();
        let rendition = |i: usize, kbps: u32| {
            [
                format!("-b:v:{i}"),
                format!("{kbps}k"),
                format!("-maxrate:v:{i}"),
                format!("{}k", kbps * 11 / 10),
                format!("-bufsize:v:{i}"),
                format!("{}k", kbps * 2),
            ]
        };
        let status = Command::new("ffmpeg")
            .current_dir(&dir)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=960x540:rate=25:duration=8"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8"])
            .args([
                "-filter_complex",
                "[0:v]split=3[a][b][c];[a]scale=426:240[v0];[b]scale=640:360[v1];[c]scale=960:540[v2]",
            ])
            .args(["-map", "[v0]", "-map", "[v1]", "-map", "[v2]"])
            .args(["-map", "1:a", "-map", "1:a", "-map", "1:a"])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main"])
            .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args(rendition(0, 200))
            .args(rendition(1, 700))
            .args(rendition(2, 2000))
            .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2"])
            .args(["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"])
            .args(["-hls_segment_filename", "v%v/seg_%03d.ts", "-master_pl_name", "master.m3u8"])
            .args(["-var_stream_map", "v:0,a:0 v:1,a:1 v:2,a:2", "v%v/index.m3u8"])
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "ffmpeg ABR HLS encode failed");
        let master = std::fs::read_to_string(dir.join("master.m3u8")).expect("master playlist");
        assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 3, "{master}");
        assert!(master.contains("RESOLUTION=") && master.contains("CODECS="), "{master}");
        dir
    })
}

/// Uploads the files of `dir` (relative paths kept) under `prefix` in a fresh public-read
/// bucket, skipping the `.ts` segments unless `segments`; returns the master playlist's URL.
async fn upload(dir: &Path, prefix: &str, segments: bool) -> String {
    let aws = streamstack_tests::aws().await;
    let bucket = streamstack_tests::unique("media");
    aws.s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    streamstack_tests::allow_public_read(&aws.s3, &bucket, "outputs/").await;
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).expect("read dir") {
                files.push(inner.expect("dir entry").path());
            }
        } else {
            files.push(path);
        }
    }
    for path in files {
        let name = path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("m3u8") => "application/vnd.apple.mpegurl",
            Some("ts") if segments => "video/mp2t",
            _ => continue,
        };
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(format!("{prefix}/{name}"))
            .content_type(content_type)
            .body(std::fs::read(&path).expect("read file").into())
            .send()
            .await
            .expect("put object");
    }
    format!("{}/{bucket}/{prefix}/master.m3u8", streamstack_tests::endpoint())
}

async fn play(url: String, options: PlayOptions) -> PlayResult {
    tokio::task::spawn_blocking(move || browser::play(&url, &options)).await.expect("play task")
}

#[tokio::test]
async fn abr_asset_plays_to_the_end_and_switches_renditions_under_a_bandwidth_cap() {
    let url = upload(abr_hls(), "outputs/asset-abr/hls", true).await;
    // 1.2 Mb/s: under the 540p rendition (~2.3 Mb/s with audio), above 360p (~0.85 Mb/s).
    let options = PlayOptions {
        max_bandwidth: Some(1_200_000),
        rate: 2.0,
        timeout: Duration::from_secs(60),
        ..PlayOptions::default()
    };
    let result = play(url, options).await;
    let summary = format!("{result:#?}");
    assert!(result.fatal_errors.is_empty(), "fatal error: {summary}");
    assert!(result.ended && !result.timed_out, "did not play to the end: {summary}");
    assert!(result.played_seconds >= 7.5, "played {} s: {summary}", result.played_seconds);
    assert_eq!(result.levels.len(), 3, "{summary}");
    let mut bitrates: Vec<u64> = result.levels.iter().map(|l| l.bitrate).collect();
    bitrates.sort_unstable();
    bitrates.dedup();
    assert_eq!(bitrates.len(), 3, "three distinct BANDWIDTHs: {summary}");
    assert!(
        result.levels.iter().all(|l| l.height.is_some() && l.codecs.contains("avc1")),
        "RESOLUTION and CODECS parsed: {summary}"
    );
    assert!(result.levels_requested.len() >= 2, "one rendition requested: {summary}");
    assert!(result.bitrate_switches >= 1, "no rendition switch: {summary}");
    // Every fragment came from its rendition's own playlist directory.
    for (level, urls) in &result.requested {
        let dir = format!("/v{level}/");
        assert!(urls.iter().all(|u| u.contains(&dir)), "level {level} fetched {urls:?}");
    }
    eprintln!(
        "browser playback: {} s wall, levels {:?}, switches {:?}",
        result.wall_seconds, result.levels_requested, result.switches
    );
}

#[tokio::test]
async fn missing_segments_are_a_fatal_error() {
    let url = upload(abr_hls(), "outputs/asset-404/hls", false).await;
    let options = PlayOptions { timeout: Duration::from_secs(30), ..PlayOptions::default() };
    let result = play(url, options).await;
    let summary = format!("{result:#?}");
    assert!(!result.ended, "ended without segments: {summary}");
    assert!(!result.timed_out, "no fatal error within the time limit: {summary}");
    let fatal = result.fatal_errors.first().unwrap_or_else(|| panic!("no fatal error: {summary}"));
    assert_eq!(fatal.kind, "networkError", "{summary}");
    assert_eq!(fatal.details, "fragLoadError", "{summary}");
    assert_eq!(fatal.status, Some(404), "{summary}");
    assert_eq!(result.levels.len(), 3, "the master playlist itself loaded: {summary}");
}
