//! mediaconvert-local against moto: the VOD functions' jobs rendered with ffmpeg (trigger ->
//! CreateJob -> ffmpeg -> job state events -> job-state function -> asset + SNS), the HLS,
//! MP4 and thumbnail outputs checked with ffprobe, MediaConvert's error codes, idempotent
//! CreateJob, and the rest of the API through the real aws-sdk-mediaconvert client.

use aws_sdk_mediaconvert::error::ProvideErrorMetadata;
use mediaconvert_local::{Config, Service};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use streamstack_core::asset::AssetStatus;
use streamstack_tests::browser;
use streamstack_tests::vod::Bench;
use tokio::sync::mpsc;
use vod::trigger::Outcome;

/// The default ladder: (width, height, max bitrate b/s).
const LADDER: [(u32, u32, u64); 4] =
    [(640, 360, 400_000), (854, 480, 600_000), (1280, 720, 1_000_000), (1920, 1080, 2_000_000)];
/// AAC bitrate of the presets, b/s.
const AUDIO: u64 = 96_000;
const CLIP_S: u32 = 6;

struct Local {
    service: Service,
    events: mpsc::UnboundedReceiver<Value>,
    bench: Bench,
    work: PathBuf,
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcl-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bench whose functions call a mediaconvert-local (model check on) on moto's S3.
async fn start(concurrency: usize) -> Local {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let bench = Bench::start(&[("MEDIACONVERT_ENDPOINT", &endpoint)]).await;
    let (tx, events) = mpsc::unbounded_channel();
    let python = std::env::var("STREAMSTACK_PYTHON")
        .expect("STREAMSTACK_PYTHON: run under scripts/with-moto.sh");
    let work = tmp("work");
    let service = Service::new(Config {
        s3: bench.aws.s3.clone(),
        concurrency,
        work_dir: work.clone(),
        on_event: Vec::new(),
        events_dir: None,
        events_tx: Some(tx),
        model_check: vec![
            python,
            format!("{}/mediaconvert_model_check.py", env!("CARGO_MANIFEST_DIR")),
        ],
        progress: false,
    });
    let s = service.clone();
    tokio::spawn(async move { mediaconvert_local::serve(listener, s).await });
    Local { service, events, bench, work }
}

impl Local {
    /// Delivers events to the job-state function until job `job_id` ends; returns them.
    async fn run_to_end(&mut self, job_id: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event =
                tokio::time::timeout(std::time::Duration::from_secs(120), self.events.recv())
                    .await
                    .expect("job ends within 120 s")
                    .expect("events");
            let status = event["detail"]["status"].as_str().unwrap().to_owned();
            let parsed = serde_json::from_value(event.clone()).expect("job-state event");
            vod::job_state::handle_event(&self.bench.deps, parsed).await.expect("job-state");
            let mine = event["detail"]["jobId"] == job_id;
            seen.push(event);
            if mine && matches!(status.as_str(), "COMPLETE" | "ERROR" | "CANCELED") {
                return seen;
            }
        }
    }

    async fn get(&self, key: &str, dir: &Path) -> PathBuf {
        let o = self.bench.aws.s3.get_object().bucket(&self.bench.bucket).key(key).send().await;
        let body = o.unwrap_or_else(|e| panic!("{key}: {e:?}")).body.collect().await.unwrap();
        let path = dir.join(key.rsplit('/').next().unwrap());
        std::fs::write(&path, body.into_bytes()).unwrap();
        path
    }

    async fn upload_and_trigger(
        &self,
        key: &str,
        body: &[u8],
        meta: &[(&str, &str)],
    ) -> (String, String) {
        let version = self.bench.upload(key, body, meta).await;
        let event =
            self.bench.s3_event(&key.replace(' ', "+"), body.len() as i64, &version, "00AA");
        match vod::trigger::handle_event(&self.bench.deps, event).await.unwrap().pop() {
            Some(Outcome::Submitted { asset_id, job_id }) => (asset_id, job_id),
            other => panic!("expected a job, got {other:?}"),
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A `CLIP_S` s 1280x720 30 fps H.264/AAC clip.
fn clip() -> Vec<u8> {
    let path = tmp("clip").join("clip.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            &CLIP_S.to_string(),
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg made the clip");
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    bytes
}

/// ffprobe: (width, height, duration s) of the first video stream of `path`.
fn probe(path: &Path) -> (u32, u32, f64, Value) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height,sample_rate",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let video = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap()
        .clone();
    let duration = v["format"]["duration"].as_str().map(|d| d.parse().unwrap()).unwrap_or(0.0);
    (video["width"].as_u64().unwrap() as u32, video["height"].as_u64().unwrap() as u32, duration, v)
}

fn key_of(s3: &str) -> String {
    s3.strip_prefix("s3://").unwrap().split_once('/').unwrap().1.to_owned()
}

fn decode(uri: &str) -> String {
    let bytes = uri.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&uri[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn an_uploaded_clip_becomes_a_complete_asset_with_the_ladder_mp4_and_thumbnails() {
    let mut local = start(2).await;
    let meta = [("streamstack-thumbnail-interval", "2"), ("streamstack-segment-length", "2")];
    let (asset_id, job_id) =
        local.upload_and_trigger("inputs/My Film café.mp4", &clip(), &meta).await;
    let events = local.run_to_end(&job_id).await;
    let statuses: Vec<&str> =
        events.iter().map(|e| e["detail"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.first(), Some(&"PROGRESSING"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"COMPLETE"), "{statuses:?}");
    assert!(
        events.iter().any(|e| e["detail"]["jobProgress"]["jobPercentComplete"].as_u64().is_some()),
        "{statuses:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["detail"]["userMetadata"]["streamstack-asset-id"] == asset_id.as_str()));

    let asset = local.bench.asset(&asset_id).await;
    assert_eq!(asset.status, AssetStatus::Complete, "{asset:?}");
    let outputs = asset.outputs.clone().unwrap();
    let prefix = format!("outputs/{asset_id}");
    assert_eq!(
        outputs.hls_master_key.as_deref(),
        Some(format!("{prefix}/hls/My Film café.m3u8").as_str())
    );
    assert_eq!(
        outputs.mp4_key.as_deref(),
        Some(format!("{prefix}/mp4/My Film café_720p.mp4").as_str())
    );
    let thumbs: Vec<String> = (0..CLIP_S / 2)
        .map(|i| format!("{prefix}/thumbnails/My Film café_thumb.{i:07}.jpg"))
        .collect();
    assert_eq!(outputs.thumbnail_keys, thumbs);

    // The master playlist: the four renditions with BANDWIDTH, RESOLUTION and CODECS.
    let dir = tmp("out");
    let master = local.get(outputs.hls_master_key.as_ref().unwrap(), &dir).await;
    let text = std::fs::read(&master).unwrap();
    let m3u8_rs::Playlist::MasterPlaylist(master) = m3u8_rs::parse_playlist_res(&text).unwrap()
    else {
        panic!("not a master playlist")
    };
    assert_eq!(master.variants.len(), 4);
    for ((w, h, max), v) in LADDER.iter().zip(&master.variants) {
        let res = v.resolution.unwrap();
        assert_eq!((res.width, res.height), (*w as u64, *h as u64));
        assert!(
            v.codecs.as_deref().unwrap().contains("avc1.")
                && v.codecs.as_deref().unwrap().contains("mp4a.40.2"),
            "{v:?}"
        );
        assert!(v.bandwidth >= *max && v.bandwidth <= (max + AUDIO) * 13 / 10, "{v:?}");
        // The rendition: its size, its segments' peak bitrate under the ladder's maximum.
        let key = format!("{prefix}/hls/{}", decode(&v.uri));
        let playlist = local.get(&key, &dir).await;
        let m3u8_rs::Playlist::MediaPlaylist(media) =
            m3u8_rs::parse_playlist_res(&std::fs::read(&playlist).unwrap()).unwrap()
        else {
            panic!("not a media playlist")
        };
        assert_eq!(media.segments.len() as u32, CLIP_S / 2, "2 s segments");
        let mut peak = 0.0f64;
        for seg in &media.segments {
            let file = local.get(&format!("{prefix}/hls/{}", decode(&seg.uri)), &dir).await;
            let (sw, sh, _, streams) = probe(&file);
            assert_eq!((sw, sh), (*w, *h), "{}", seg.uri);
            assert!(
                streams.to_string().contains("\"sample_rate\":\"48000\""),
                "AAC 48 kHz: {streams}"
            );
            peak = peak.max(
                std::fs::metadata(&file).unwrap().len() as f64 * 8.0 / f64::from(seg.duration),
            );
        }
        // Video capped at max_bitrate; AAC and MPEG-TS overhead on top.
        assert!(peak <= (*max + AUDIO) as f64 * 1.25, "{h}p peak {peak} b/s over {max}");
    }

    let mp4 = local.get(outputs.mp4_key.as_ref().unwrap(), &dir).await;
    let (w, h, d, _) = probe(&mp4);
    assert_eq!((w, h), (1280, 720));
    assert!((d - f64::from(CLIP_S)).abs() < 0.5, "{d}");
    for t in &outputs.thumbnail_keys {
        assert_eq!(probe(&local.get(t, &dir).await).0, 640);
    }

    // outputGroupDetails name existing files with their real sizes and durations.
    let complete = events.last().unwrap();
    let groups = complete["detail"]["outputGroupDetails"].as_array().unwrap();
    assert_eq!(
        groups.iter().map(|g| g["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["HLS_GROUP", "FILE_GROUP", "FILE_GROUP"]
    );
    assert_eq!(
        key_of(groups[0]["playlistFilePaths"][0].as_str().unwrap()),
        outputs.hls_master_key.clone().unwrap()
    );
    for g in groups {
        for o in g["outputDetails"].as_array().unwrap() {
            let key = key_of(o["outputFilePaths"][0].as_str().unwrap());
            let file = local.get(&key, &dir).await;
            let file = if key.ends_with(".m3u8") {
                // ffprobe the rendition through its first segment.
                let text = std::fs::read_to_string(&file).unwrap();
                let seg = text.lines().find(|l| !l.starts_with('#')).unwrap();
                local
                    .get(&format!("{}/{}", key.rsplit_once('/').unwrap().0, decode(seg)), &dir)
                    .await
            } else {
                file
            };
            let (w, h, _, _) = probe(&file);
            assert_eq!(
                (
                    o["videoDetails"]["widthInPx"].as_u64().unwrap(),
                    o["videoDetails"]["heightInPx"].as_u64().unwrap()
                ),
                (w as u64, h as u64),
                "{key}"
            );
            let ms = o["durationInMs"].as_u64().unwrap();
            assert!(ms.abs_diff(u64::from(CLIP_S) * 1000) <= 300, "{key}: {ms} ms");
        }
    }
    assert_eq!(outputs.renditions.len(), 4);
    assert_eq!(outputs.duration_ms.map(|d| d.abs_diff(6000) <= 300), Some(true));

    let notes = local.bench.notifications().await;
    let complete: Vec<&Value> = notes.iter().filter(|n| n["status"] == "COMPLETE").collect();
    assert_eq!(complete.len(), 1, "{notes:?}");
    assert_eq!(complete[0]["asset_id"], asset_id.as_str());
    assert_eq!(local.service.transcodes(), 1);

    // The same asset in a real browser: hls.js in headless Chromium plays the master playlist
    // from the S3 endpoint to the end; capped at 700 kb/s from an estimate above it, it starts
    // on a higher rendition and switches down, so at least two renditions are requested.
    // Anonymous reads of outputs/ (in AWS CloudFront reads them through origin access).
    streamstack_tests::allow_public_read(&local.bench.aws.s3, &local.bench.bucket, "outputs/")
        .await;
    let master = outputs.hls_master_key.clone().unwrap();
    // Path segments percent-encoded, RFC 3986 unreserved characters kept (§2.3).
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let path: Vec<String> = master
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    let url =
        format!("{}/{}/{}", streamstack_tests::endpoint(), local.bench.bucket, path.join("/"));
    let options = browser::PlayOptions {
        max_bandwidth: Some(700_000),
        rate: 2.0,
        timeout: std::time::Duration::from_secs(60),
        ..browser::PlayOptions::default()
    };
    let played =
        tokio::task::spawn_blocking(move || browser::play(&url, &options)).await.expect("play");
    let summary = format!("{played:#?}");
    assert!(played.fatal_errors.is_empty(), "fatal error: {summary}");
    assert!(played.ended && !played.timed_out, "did not play to the end: {summary}");
    assert_eq!(played.levels.len(), 4, "{summary}");
    assert!(played.levels_requested.len() >= 2, "one rendition requested: {summary}");
    eprintln!(
        "browser playback of the asset: {} s wall, renditions requested {:?}",
        played.wall_seconds, played.levels_requested
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_undecodable_input_ends_in_error_1010_on_the_asset_and_on_sns() {
    let mut local = start(2).await;
    let (asset_id, job_id) =
        local.upload_and_trigger("inputs/broken.mp4", b"not really a movie, only bytes", &[]).await;
    let events = local.run_to_end(&job_id).await;
    let last = &events.last().unwrap()["detail"];
    assert_eq!(last["status"], "ERROR");
    assert_eq!(last["errorCode"], 1010);
    let message = last["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("Unable to open input file [s3://") && message.contains("broken.mp4"),
        "{message}"
    );
    let asset = local.bench.asset(&asset_id).await;
    assert_eq!(asset.status, AssetStatus::Error);
    let error = asset.error.unwrap();
    assert_eq!((error.code.as_str(), error.message.as_str()), ("1010", message));
    let notes = local.bench.notifications().await;
    let errors: Vec<&Value> = notes.iter().filter(|n| n["status"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "{notes:?}");
    assert_eq!(errors[0]["error"]["code"], "1010");
    assert_eq!(errors[0]["error"]["message"], message);
    assert_eq!(local.service.transcodes(), 0);
}

#[tokio::test]
async fn create_job_is_idempotent_and_the_api_answers_like_mediaconvert() {
    // One job at a time: the second job is still queued when it is cancelled.
    let mut local = start(1).await;
    let (asset_id, job_id) = local
        .upload_and_trigger("inputs/short.mp4", &clip(), &[("streamstack-ladder", "sd")])
        .await;
    let client = local.bench.deps.mediaconvert.clone().unwrap();
    // The same token again: the same job, no second transcode.
    let asset = local.bench.asset(&asset_id).await;
    let request = vod::job::job_request(
        &asset_id,
        &asset.source,
        asset.settings.as_ref().unwrap(),
        &vod::presets::Presets::builtin(),
        streamstack_tests::vod::STACK,
    )
    .unwrap();
    let again =
        vod::job::submit(&client, "arn:aws:iam::123456789012:role/mc", None, request.clone())
            .await
            .unwrap();
    assert_eq!(again, job_id);

    // DescribeEndpoints, GetJob, ListJobs through the SDK.
    // Deprecated in the SDK (regional endpoints suffice) but still answered, as by MediaConvert.
    #[allow(deprecated)]
    let endpoints = client.describe_endpoints().send().await.unwrap();
    assert!(endpoints
        .endpoints()
        .first()
        .and_then(|e| e.url())
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    let job = client.get_job().id(&job_id).send().await.unwrap().job.unwrap();
    assert_eq!(job.id(), Some(job_id.as_str()));
    assert_eq!(job.user_metadata().unwrap()["streamstack-asset-id"], asset_id);
    assert!(job.settings().is_some() && job.created_at().is_some());

    // A second job (another token), cancelled before or while it runs.
    let mut other = request;
    other.client_request_token = "another-token".into();
    let second =
        vod::job::submit(&client, "arn:aws:iam::123456789012:role/mc", None, other).await.unwrap();
    assert_ne!(second, job_id);
    client.cancel_job().id(&second).send().await.unwrap();
    let listed = client.list_jobs().send().await.unwrap();
    let ids: Vec<&str> = listed.jobs().iter().filter_map(|j| j.id()).collect();
    assert_eq!(ids, [second.as_str(), job_id.as_str()], "newest first");
    let statuses: Vec<String> = local
        .run_to_end(&job_id)
        .await
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["detail"]["jobId"].as_str().unwrap(),
                e["detail"]["status"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        statuses.iter().any(|s| s.contains(&second) && s.ends_with("CANCELED")),
        "{statuses:?}"
    );
    let job = client.get_job().id(&job_id).send().await.unwrap().job.unwrap();
    assert_eq!(job.status().map(|s| s.as_str()), Some("COMPLETE"));
    assert_eq!(job.output_group_details().len(), 3);
    assert_eq!(
        local.service.transcodes(),
        1,
        "one transcode for the repeated token, none for the cancelled job"
    );
    assert_eq!(local.bench.asset(&asset_id).await.status, AssetStatus::Complete);

    // Errors in MediaConvert's shapes.
    let e = client.get_job().id("nope").send().await.unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert_eq!(e.code(), Some("NotFoundException"));
    let e = client.cancel_job().id(&job_id).send().await.unwrap_err();
    assert_eq!(
        (e.raw_response().map(|r| r.status().as_u16()), e.code()),
        (Some(409), Some("ConflictException"))
    );
    let e = client.list_jobs().max_results(50).send().await.unwrap_err();
    assert_eq!(e.code(), Some("BadRequestException"));
    // A body the model refuses: 400 BadRequestException with the model check's report.
    let invalid = serde_json::json!({"role": "r", "settings": {"outputGroups": [{"outputs": [{"nameModifer": "_x"}]}]}});
    let endpoint = local.bench.deps.config.mediaconvert_endpoint.clone().unwrap();
    let res = reqwest::Client::new()
        .post(format!("{endpoint}/2017-08-29/jobs"))
        .json(&invalid)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(res.headers()["x-amzn-ErrorType"], "BadRequestException");
    let body: Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("nameModifer: not a member"), "{body}");
}
