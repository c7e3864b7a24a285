//! Publishers people use besides ffmpeg: GStreamer's rtmp2sink (its own RTMP stack) and
//! rtmpsink (librtmp), with and without audio.

use std::time::Duration;
use streamstack_core::HlsSettings;
use streamstack_tests::*;

/// Publishes 5 s of 25 fps H.264 (IDR every second) and optionally AAC with GStreamer.
async fn gst_publish(sink: &str, url: &str, audio: bool) -> bool {
    let mut pipeline = format!(
        "videotestsrc num-buffers=125 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc key-int-max=25 speed-preset=ultrafast tune=zerolatency ! h264parse \
         ! flvmux name=mux streamable=true ! {sink} location=\"{url}\""
    );
    if audio {
        pipeline.push_str(
            " audiotestsrc num-buffers=235 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
             ! voaacenc ! aacparse ! mux.",
        );
    }
    let args = shell_words(&pipeline);
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("gst-launch-1.0")
            .arg("-e")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status(),
    )
    .await;
    matches!(status, Ok(Ok(s)) if s.success())
}

/// Splits a gst-launch description into argv, honouring double quotes.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[tokio::test]
async fn gstreamer_rtmp2sink_and_librtmp_publishers() {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;
    for (sink, audio) in [("rtmp2sink", true), ("rtmp2sink", false), ("rtmpsink", true)] {
        let ch =
            channel(store.as_ref(), HlsSettings { segment_duration: 1, playlist_window: 10 }).await;
        assert!(
            gst_publish(sink, &streamer.push_url(&ch), audio).await,
            "{sink} (audio: {audio}) publish failed"
        );
        let pl = ended_playlist(&aws, &bucket, &ch).await;
        let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
        assert!((total - 5.0).abs() <= 0.5, "{sink} (audio: {audio}): {total} s");
        let url = format!("{}/{bucket}/live/{}/index.m3u8", endpoint(), ch.id);
        let errors = ffmpeg_decode_errors(&url);
        assert!(errors.is_empty(), "{sink}: {errors}");
    }
    streamer.stop().await;
}
