//! VOD trigger: S3 event -> asset + MediaConvert job, against moto (S3, DynamoDB, SNS, SQS)
//! and the MediaConvert stand-in; the captured CreateJob body is checked against botocore's
//! MediaConvert model.

use serde_json::Value;
use std::process::Command;
use streamstack_core::asset::AssetStatus;
use streamstack_core::{AssetStore, Playback};
use streamstack_tests::vod::{Bench, STACK};
use vod::trigger::{handle_event, Outcome};

/// Runs `tests/mediaconvert_model_check.py` on `body`; returns (passed, report).
fn model_check(body: &Value) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("mc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("create-job.json");
    std::fs::write(&path, serde_json::to_vec(body).unwrap()).unwrap();
    let python = std::env::var("STREAMSTACK_PYTHON")
        .expect("STREAMSTACK_PYTHON is not set: run `make test` (scripts/with-moto.sh sets it)");
    let script = format!("{}/mediaconvert_model_check.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&python).arg(script).arg(&path).output().expect("run python");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), report)
}

fn submitted(outcome: &Outcome) -> (String, String) {
    match outcome {
        Outcome::Submitted { asset_id, job_id } => (asset_id.clone(), job_id.clone()),
        other => panic!("expected a submitted job, got {other:?}"),
    }
}

#[tokio::test]
async fn create_job_request_on_the_wire_matches_the_ladder_and_the_mediaconvert_model() {
    let bench = Bench::start(&[]).await;
    let key = "inputs/My Film café.mp4";
    let version = bench.upload(key, b"not really a movie", &[]).await;
    // As S3 encodes it: space as '+', UTF-8 bytes as %XX.
    let event = bench.s3_event("inputs/My+Film+caf%C3%A9.mp4", 18, &version, "0055AED6DCD90281E5");
    let outcomes = handle_event(&bench.deps, event).await.unwrap();
    let (asset_id, job_id) = submitted(&outcomes[0]);

    let requests = bench.mediaconvert.requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(body["clientRequestToken"], asset_id.as_str());
    assert_eq!(body["role"], "arn:aws:iam::123456789012:role/mc");
    assert_eq!(body["userMetadata"]["streamstack-asset-id"], asset_id.as_str());
    assert_eq!(body["userMetadata"]["streamstack-stack"], STACK);
    let settings = &body["settings"];
    assert_eq!(settings["inputs"][0]["fileInput"], format!("s3://{}/{key}", bench.bucket));
    let groups = settings["outputGroups"].as_array().unwrap();
    let dest = |g: &Value, kind: &str| -> String {
        let s = &g["outputGroupSettings"];
        s[kind]["destination"].as_str().unwrap().to_owned()
    };
    let prefix = format!("s3://{}/outputs/{asset_id}", bench.bucket);
    assert_eq!(dest(&groups[0], "hlsGroupSettings"), format!("{prefix}/hls/"));
    assert_eq!(dest(&groups[1], "fileGroupSettings"), format!("{prefix}/mp4/"));
    assert_eq!(dest(&groups[2], "fileGroupSettings"), format!("{prefix}/thumbnails/"));
    assert_eq!(groups[0]["outputGroupSettings"]["hlsGroupSettings"]["segmentLength"], 6);

    let ladder: Vec<(i64, i64, i64)> = groups[0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let v = &o["videoDescription"];
            let h264 = &v["codecSettings"]["h264Settings"];
            assert_eq!(h264["rateControlMode"], "QVBR");
            let aac = &o["audioDescriptions"][0]["codecSettings"]["aacSettings"];
            assert_eq!(aac["sampleRate"], 48000);
            (
                v["width"].as_i64().unwrap(),
                v["height"].as_i64().unwrap(),
                h264["maxBitrate"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ladder,
        [(640, 360, 400_000), (854, 480, 600_000), (1280, 720, 1_000_000), (1920, 1080, 2_000_000)]
    );
    let mp4 = &groups[1]["outputs"][0];
    assert_eq!(mp4["containerSettings"]["container"], "MP4");
    assert_eq!(mp4["videoDescription"]["height"], 720);
    let thumbs = &groups[2]["outputs"][0]["videoDescription"]["codecSettings"];
    assert_eq!(thumbs["codec"], "FRAME_CAPTURE");
    assert_eq!(thumbs["frameCaptureSettings"]["framerateDenominator"], 10);

    let (ok, report) = model_check(body);
    assert!(ok, "botocore refuses the captured CreateJob request:\n{report}");
    // The check can fail: a wrong type, an unknown member and a bad enum are each refused.
    for (pointer, value) in [
        ("/settings/outputGroups/0/outputGroupSettings/hlsGroupSettings/segmentLength", "6".into()),
        ("/settings/outputGroups/0/outputs/0/videoDescription/widthPx", 640.into()),
        ("/settings/outputGroups/1/outputs/0/containerSettings/container", "MP5".into()),
    ] {
        let mut bad = body.clone();
        let (parent, leaf) = pointer.rsplit_once('/').unwrap();
        bad.pointer_mut(parent).unwrap()[leaf] = value;
        let (ok, report) = model_check(&bad);
        assert!(!ok, "{pointer} should be refused:\n{report}");
    }

    let asset = bench.asset(&asset_id).await;
    assert_eq!(asset.status, AssetStatus::Submitted);
    assert_eq!(asset.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(asset.source.key, key);
    assert_eq!(asset.source.version_id.as_deref(), Some(version.as_str()));
    assert_eq!(asset.claim_until_ms, None);
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_event_make_one_asset_and_one_job() {
    let bench = Bench::start(&[]).await;
    let version = bench.upload("inputs/race.mov", b"movie", &[]).await;
    let event = bench.s3_event("inputs/race.mov", 5, &version, "0A");
    let runs = (0..50).map(|_| handle_event(&bench.deps, event.clone()));
    let outcomes: Vec<Outcome> = futures_flatten(futures::future::join_all(runs).await);
    let submitted = outcomes.iter().filter(|o| matches!(o, Outcome::Submitted { .. })).count();
    assert_eq!(submitted, 1, "{outcomes:?}");
    assert_eq!(bench.mediaconvert.requests().len(), 1, "only the claim holder calls CreateJob");
    assert_eq!(bench.mediaconvert.jobs(), 1);
    assert_eq!(bench.asset_count().await, 1);
    // A later redelivery finds the job recorded.
    let again = handle_event(&bench.deps, event).await.unwrap();
    assert!(
        matches!(again[0], Outcome::AlreadyHandled { status: AssetStatus::Submitted, .. }),
        "{again:?}"
    );
    assert_eq!(bench.mediaconvert.requests().len(), 1);
}

/// S3 may notify the same object version again with a new sequencer (a replayed or
/// duplicated notification): the asset is the version's, so no second job starts. In an
/// unversioned bucket each sequencer is an upload of its own.
#[tokio::test]
async fn a_renotified_version_is_the_same_asset_and_one_job() {
    let bench = Bench::start(&[]).await;
    let version = bench.upload("inputs/again.mov", b"movie", &[]).await;
    let first = handle_event(&bench.deps, bench.s3_event("inputs/again.mov", 5, &version, "0A"))
        .await
        .unwrap();
    let (asset_id, _) = submitted(&first[0]);
    let again = handle_event(&bench.deps, bench.s3_event("inputs/again.mov", 5, &version, "0B"))
        .await
        .unwrap();
    assert!(
        matches!(&again[0], Outcome::AlreadyHandled { asset_id: id, .. } if *id == asset_id),
        "{again:?}"
    );
    assert_eq!(bench.mediaconvert.jobs(), 1);
    assert_eq!(bench.asset_count().await, 1);
}

fn futures_flatten(results: Vec<Result<Vec<Outcome>, vod::trigger::TriggerError>>) -> Vec<Outcome> {
    results.into_iter().flat_map(|r| r.expect("no delivery fails")).collect()
}

#[tokio::test]
async fn throttling_is_retried_and_an_outage_leaves_the_asset_for_redelivery() {
    let bench = Bench::start(&[]).await;
    // Two 429s: the SDK's own retries absorb them.
    bench.mediaconvert.fail_next(2, 429, "TooManyRequestsException");
    let (asset_id, _) = submitted(&bench.upload_and_trigger("inputs/a.mp4", b"a").await);
    assert_eq!(bench.mediaconvert.requests().len(), 3);
    assert_eq!(bench.asset(&asset_id).await.status, AssetStatus::Submitted);

    // A longer outage (more 500s than the SDK's attempts): the invocation fails, the claim is
    // released, and the next delivery of the same event creates the job.
    bench.mediaconvert.fail_next(5, 500, "InternalServerErrorException");
    let version = bench.upload("inputs/b.mp4", b"b", &[]).await;
    let event = bench.s3_event("inputs/b.mp4", 1, &version, "0B");
    let err = handle_event(&bench.deps, event.clone()).await.unwrap_err();
    assert!(err.to_string().contains("retryable"), "{err}");
    let pending = bench.store.list(100, None).await.unwrap().items;
    let b = pending.iter().find(|a| a.source.key == "inputs/b.mp4").unwrap();
    assert_eq!(
        (b.status, b.claim_until_ms, b.job_id.as_deref()),
        (AssetStatus::Submitting, None, None)
    );
    let outcomes = handle_event(&bench.deps, event).await.unwrap();
    let (b_id, _) = submitted(&outcomes[0]);
    assert_eq!(b_id, b.id);
    assert_eq!(bench.mediaconvert.jobs(), 2);
}

#[tokio::test]
async fn a_refused_job_marks_the_asset_error_and_notifies() {
    let bench = Bench::start(&[]).await;
    bench.mediaconvert.fail_next(1, 400, "BadRequestException");
    let outcome = bench.upload_and_trigger("inputs/bad.mp4", b"x").await;
    let Outcome::Rejected { asset_id, error } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.code, "SubmitFailed");
    assert!(error.message.contains("BadRequestException"), "{}", error.message);
    assert_eq!(bench.mediaconvert.requests().len(), 1, "a 400 is not retried");
    let asset = bench.asset(&asset_id).await;
    assert_eq!(asset.status, AssetStatus::Error);
    assert_eq!(asset.settings.map(|s| s.ladder).as_deref(), Some("default"));
    let notes = bench.notifications().await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["asset_id"], asset_id.as_str());
    assert_eq!(notes[0]["status"], "ERROR");
}

#[tokio::test]
async fn non_media_records_are_skipped_without_assets_or_jobs() {
    let bench = Bench::start(&[]).await;
    let cases = [
        ("inputs/%ZZ.mp4", 10, "undecodable"),
        ("inputs/%FF%FE.mp4", 10, "undecodable"),
        ("inputs/show/", 0, "folder"),
        ("inputs/empty.mp4", 0, "empty"),
        ("inputs/notes.txt", 10, "not a media file"),
        ("inputs/ep1.json", 10, "not a media file"),
        ("outputs/x/hls/a.mp4", 10, "outside inputs/"),
    ];
    for (key, size, expect) in cases {
        let outcomes =
            handle_event(&bench.deps, bench.s3_event(key, size, "", "01")).await.unwrap();
        match &outcomes[0] {
            Outcome::Skipped(skip) => assert!(skip.to_string().contains(expect), "{key}: {skip}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert_eq!(bench.asset_count().await, 0);
    assert!(bench.mediaconvert.requests().is_empty());
}

#[tokio::test]
async fn sidecars_and_metadata_choose_settings_and_bad_ones_are_asset_errors() {
    let bench = Bench::start(&[]).await;
    // A valid sidecar: the "sd" ladder, 4 s segments, a thumbnail every 5 s.
    bench
        .upload(
            "inputs/ep1.json",
            br#"{"ladder":"sd","segment_length":4,"thumbnail_interval":5}"#,
            &[],
        )
        .await;
    let (id, _) = submitted(&bench.upload_and_trigger("inputs/ep1.mkv", b"m").await);
    let body = &bench.mediaconvert.requests()[0].body;
    let hls = &body["settings"]["outputGroups"][0];
    assert_eq!(hls["outputs"].as_array().unwrap().len(), 2);
    assert_eq!(hls["outputGroupSettings"]["hlsGroupSettings"]["segmentLength"], 4);
    let settings = bench.asset(&id).await.settings.unwrap();
    assert_eq!(
        (settings.ladder.as_str(), settings.segment_length, settings.thumbnail_interval),
        ("sd", 4, 5)
    );

    // Object metadata alone.
    let version = bench.upload("inputs/meta.mp4", b"m", &[("streamstack-ladder", "premium")]).await;
    let outcomes = handle_event(&bench.deps, bench.s3_event("inputs/meta.mp4", 1, &version, "02"))
        .await
        .unwrap();
    let (id, _) = submitted(&outcomes[0]);
    assert_eq!(bench.asset(&id).await.settings.unwrap().ladder, "premium");

    // Broken choices: each becomes an ERROR asset with a reason naming where it came from.
    // (name, sidecar body or empty for none, object metadata, expected message part)
    type Case<'a> = (&'a str, &'a [u8], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        ("bad1", b"{not json", &[], "sidecar inputs/bad1.json: (document)"),
        ("bad2", br#"{"ladder":"4k"}"#, &[], "unknown ladder \"4k\""),
        ("bad3", br#"{"segment_length":"six"}"#, &[], "sidecar inputs/bad3.json: segment_length"),
        ("bad4", b"", &[("streamstack-segment-length", "0")], "object metadata: segment_length"),
    ];
    let jobs_before = bench.mediaconvert.requests().len();
    for (name, sidecar, meta, expect) in cases {
        if !sidecar.is_empty() {
            bench.upload(&format!("inputs/{name}.json"), sidecar, &[]).await;
        }
        let key = format!("inputs/{name}.mp4");
        let version = bench.upload(&key, b"m", meta).await;
        let outcomes =
            handle_event(&bench.deps, bench.s3_event(&key, 1, &version, "03")).await.unwrap();
        let Outcome::Rejected { asset_id, error } = &outcomes[0] else {
            panic!("{name}: {outcomes:?}")
        };
        assert_eq!(error.code, "InvalidSettings");
        assert!(error.message.contains(expect), "{name}: {}", error.message);
        let asset = bench.asset(asset_id).await;
        assert_eq!(asset.status, AssetStatus::Error);
        assert_eq!(asset.error.as_ref(), Some(error));
    }
    assert_eq!(bench.mediaconvert.requests().len(), jobs_before, "no job for a bad upload");
    assert_eq!(bench.notifications().await.len(), 4);
}

#[tokio::test]
async fn a_deleted_source_is_an_asset_error_not_a_crash() {
    let bench = Bench::start(&[]).await;
    let version = bench.upload("inputs/gone.mp4", b"m", &[]).await;
    bench
        .aws
        .s3
        .delete_object()
        .bucket(&bench.bucket)
        .key("inputs/gone.mp4")
        .version_id(&version)
        .send()
        .await
        .unwrap();
    let outcomes = handle_event(&bench.deps, bench.s3_event("inputs/gone.mp4", 1, &version, "04"))
        .await
        .unwrap();
    let Outcome::Rejected { error, .. } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert_eq!(error.code, "SourceMissing");
}

/// Playback (issue 14): the stack default, or the upload's choice, decides where the outputs
/// go (`signed/outputs/<asset>/` for signed assets) and is recorded in the settings; a bad
/// choice is an asset error naming the metadata key.
#[tokio::test]
async fn playback_chooses_where_the_outputs_are_written() {
    let bench = Bench::start(&[("PLAYBACK_DEFAULT", "signed")]).await;
    let destinations = |request: usize| -> Vec<String> {
        let body = &bench.mediaconvert.requests()[request].body;
        body["settings"]["outputGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let s = &g["outputGroupSettings"];
                let d = s["hlsGroupSettings"]["destination"].as_str();
                d.or(s["fileGroupSettings"]["destination"].as_str()).unwrap().to_owned()
            })
            .collect()
    };
    // The default.
    let (id, _) = submitted(&bench.upload_and_trigger("inputs/default.mp4", b"m").await);
    assert_eq!(bench.asset(&id).await.settings.unwrap().playback, Playback::Signed);
    let signed = format!("s3://{}/signed/outputs/{id}/", bench.bucket);
    let d = destinations(0);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d.iter().all(|d| d.starts_with(&signed)), "{d:?}");
    // The upload's choice.
    let meta = [("streamstack-playback", "public")];
    let version = bench.upload("inputs/open.mp4", b"m", &meta).await;
    let outcomes = handle_event(&bench.deps, bench.s3_event("inputs/open.mp4", 1, &version, "04"))
        .await
        .unwrap();
    let (id, _) = submitted(&outcomes[0]);
    assert_eq!(bench.asset(&id).await.settings.unwrap().playback, Playback::Public);
    let public = format!("s3://{}/outputs/{id}/", bench.bucket);
    assert!(destinations(1).iter().all(|d| d.starts_with(&public)), "{:?}", destinations(1));
    // A bad one.
    let meta = [("streamstack-playback", "private")];
    let version = bench.upload("inputs/bad.mp4", b"m", &meta).await;
    let outcomes = handle_event(&bench.deps, bench.s3_event("inputs/bad.mp4", 1, &version, "05"))
        .await
        .unwrap();
    let Outcome::Rejected { error, .. } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.message.contains("x-amz-meta-streamstack-playback"), "{}", error.message);
}
