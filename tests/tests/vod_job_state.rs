//! VOD job-state function and asset API: MediaConvert event fixtures applied to assets made by
//! the trigger, against moto (DynamoDB, S3, SNS -> SQS).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use streamstack_core::asset::AssetStatus;
use streamstack_core::Config;
use streamstack_tests::vod::{fixture, Bench};
use tower::ServiceExt;
use vod::job_state::{handle_event, Outcome};
use vod::trigger::Outcome as Trigger;

const T0: u64 = 1_763_805_600_000;

async fn submitted(bench: &Bench, key: &str) -> (String, String) {
    match bench.upload_and_trigger(key, b"movie").await {
        Trigger::Submitted { asset_id, job_id } => (asset_id, job_id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fixtures_deserialize_as_the_lambda_runtime_would() {
    let s3: aws_lambda_events::s3::S3Event =
        serde_json::from_str(&fixture("s3-object-created.json")).unwrap();
    let source = vod::source::media_source(&s3.records[0]).unwrap();
    assert_eq!(source.key, "inputs/My Film café.mp4");
    for name in ["complete", "progressing", "status-update", "error"] {
        let e: aws_lambda_events::eventbridge::EventBridgeEvent<vod::job_state::JobStateDetail> =
            serde_json::from_str(&fixture(&format!("mediaconvert-job-{name}.json"))).unwrap();
        assert_eq!(e.detail_type, vod::job_state::DETAIL_TYPE);
        assert!(e.detail.timestamp > 0 && !e.detail.job_id.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn complete_is_final_and_late_or_duplicate_events_never_move_it_back() {
    let bench = Bench::start(&[]).await;
    let (id, job) = submitted(&bench, "inputs/My Film café.mp4").await;
    // MediaConvert wrote three thumbnails; the COMPLETE event names only the last one.
    for n in 0..3 {
        let key = format!("outputs/{id}/thumbnails/My Film café_thumb.000000{n}.jpg");
        bench.upload(&key, b"jpeg", &[]).await;
    }

    let progressing = bench.job_event("progressing", &id, &job, T0 + 1_000);
    assert_eq!(
        handle_event(&bench.deps, progressing.clone()).await.unwrap(),
        Outcome::Applied(AssetStatus::Progressing)
    );
    let update = bench.job_event("status-update", &id, &job, T0 + 2_000);
    assert_eq!(
        handle_event(&bench.deps, update).await.unwrap(),
        Outcome::Applied(AssetStatus::Progressing)
    );
    assert_eq!(bench.asset(&id).await.progress_percent, Some(47));
    // An older PROGRESSING after a newer one changes nothing.
    assert_eq!(
        handle_event(&bench.deps, progressing).await.unwrap(),
        Outcome::Stale(AssetStatus::Progressing)
    );

    let complete = bench.job_event("complete", &id, &job, T0 + 9_000);
    assert_eq!(
        handle_event(&bench.deps, complete.clone()).await.unwrap(),
        Outcome::Applied(AssetStatus::Complete)
    );
    let asset = bench.asset(&id).await;
    let outputs = asset.outputs.clone().unwrap();
    let prefix = format!("outputs/{id}");
    assert_eq!(
        outputs.hls_master_key.as_deref(),
        Some(format!("{prefix}/hls/My Film café.m3u8").as_str())
    );
    assert_eq!(
        outputs.mp4_key.as_deref(),
        Some(format!("{prefix}/mp4/My Film café_720p.mp4").as_str())
    );
    let heights: Vec<u32> = outputs.renditions.iter().map(|r| r.height).collect();
    assert_eq!(heights, [360, 480, 720, 1080]);
    assert_eq!(outputs.thumbnail_keys.len(), 3, "listed from S3, not taken from the event");
    assert_eq!(outputs.duration_ms, Some(20_021));
    assert_eq!(asset.progress_percent, Some(100));

    // Late PROGRESSING / STATUS_UPDATE / ERROR (newer timestamps too) and a duplicate COMPLETE.
    for (name, t) in
        [("progressing", T0 + 3_000), ("status-update", T0 + 10_000), ("error", T0 + 11_000)]
    {
        let late = bench.job_event(name, &id, &job, t);
        assert_eq!(
            handle_event(&bench.deps, late).await.unwrap(),
            Outcome::Stale(AssetStatus::Complete),
            "{name}"
        );
    }
    assert_eq!(
        handle_event(&bench.deps, complete).await.unwrap(),
        Outcome::Stale(AssetStatus::Complete)
    );
    let after = bench.asset(&id).await;
    assert_eq!(
        (after.status, after.outputs, after.error),
        (AssetStatus::Complete, asset.outputs, None)
    );

    // COMPLETE was announced; its duplicate is announced again (at least once), nothing else.
    let notes = bench.notifications().await;
    let statuses: Vec<&str> = notes.iter().map(|n| n["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["COMPLETE", "COMPLETE"], "{notes:?}");
    assert_eq!(notes[0]["asset_id"], id.as_str());
    assert!(notes[0]["outputs"]["hls_master_key"].as_str().unwrap().ends_with(".m3u8"));
}

#[tokio::test]
async fn same_millisecond_events_resolve_by_rank() {
    let bench = Bench::start(&[]).await;
    let (id, job) = submitted(&bench, "inputs/tie.mp4").await;
    let complete = bench.job_event("complete", &id, &job, T0);
    assert_eq!(
        handle_event(&bench.deps, complete).await.unwrap(),
        Outcome::Applied(AssetStatus::Complete)
    );
    let progressing = bench.job_event("progressing", &id, &job, T0);
    assert_eq!(
        handle_event(&bench.deps, progressing).await.unwrap(),
        Outcome::Stale(AssetStatus::Complete)
    );

    let (id, job) = submitted(&bench, "inputs/tie2.mp4").await;
    let progressing = bench.job_event("progressing", &id, &job, T0);
    assert_eq!(
        handle_event(&bench.deps, progressing).await.unwrap(),
        Outcome::Applied(AssetStatus::Progressing)
    );
    let complete = bench.job_event("complete", &id, &job, T0);
    assert_eq!(
        handle_event(&bench.deps, complete).await.unwrap(),
        Outcome::Applied(AssetStatus::Complete)
    );
}

#[tokio::test]
async fn error_records_code_and_message_and_notifies() {
    let bench = Bench::start(&[]).await;
    let (id, job) = submitted(&bench, "inputs/indeo.avi").await;
    let error = bench.job_event("error", &id, &job, T0 + 5_000);
    assert_eq!(
        handle_event(&bench.deps, error).await.unwrap(),
        Outcome::Applied(AssetStatus::Error)
    );
    let asset = bench.asset(&id).await;
    let e = asset.error.unwrap();
    assert_eq!(e.code, "1030");
    assert!(e.message.contains("indeo4"), "{}", e.message);
    let late = bench.job_event("complete", &id, &job, T0 + 6_000);
    assert_eq!(handle_event(&bench.deps, late).await.unwrap(), Outcome::Stale(AssetStatus::Error));
    let notes = bench.notifications().await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["error"]["code"], "1030");
}

#[tokio::test]
async fn events_of_other_stacks_other_jobs_and_unknown_assets_change_nothing() {
    let bench = Bench::start(&[]).await;
    let (id, job) = submitted(&bench, "inputs/mine.mp4").await;
    let mut foreign = bench.job_event("complete", &id, &job, T0);
    foreign.detail.user_metadata.insert("streamstack-stack".into(), "other-stack".into());
    assert!(matches!(handle_event(&bench.deps, foreign).await.unwrap(), Outcome::Ignored(_)));
    let other_job = bench.job_event("complete", &id, "1763805600000-zzzzzz", T0);
    assert_eq!(
        handle_event(&bench.deps, other_job).await.unwrap(),
        Outcome::Stale(AssetStatus::Submitted)
    );
    let unknown = bench.job_event("complete", "ffffffffffffffffffffffffffffffff", &job, T0);
    assert!(matches!(handle_event(&bench.deps, unknown).await.unwrap(), Outcome::UnknownAsset(_)));
    let mut warning = bench.job_event("progressing", &id, &job, T0);
    warning.detail.status = "NEW_WARNING".into();
    assert!(matches!(handle_event(&bench.deps, warning).await.unwrap(), Outcome::Ignored(_)));
    assert_eq!(bench.asset(&id).await.status, AssetStatus::Submitted);
    assert!(bench.notifications().await.is_empty());
}

#[tokio::test]
async fn asset_api_lists_pages_and_shows_output_urls() {
    let bench = Bench::start(&[]).await;
    let (done, job) = submitted(&bench, "inputs/My Film café.mp4").await;
    bench
        .upload(&format!("outputs/{done}/thumbnails/My Film café_thumb.0000000.jpg"), b"j", &[])
        .await;
    handle_event(&bench.deps, bench.job_event("complete", &done, &job, T0)).await.unwrap();
    for n in 0..4 {
        submitted(&bench, &format!("inputs/more{n}.mp4")).await;
    }
    let aws = streamstack_tests::aws().await;
    let config = Config::from_lookup(|k| match k {
        "CHANNELS_TABLE" => Some("unused".into()),
        "PLAYBACK_BASE_URL" => Some("https://cdn.example".into()),
        _ => None,
    })
    .unwrap();
    let deps = channels_api::Deps::new(
        streamstack_tests::channel_store(&aws).await,
        Arc::new(bench.store.clone()),
        config,
    );
    let app = channels_api::router(Arc::new(deps));
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let res = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };

    let (status, asset) = get(format!("/assets/{done}")).await;
    assert_eq!(status, StatusCode::OK, "{asset}");
    assert_eq!(asset["status"], "COMPLETE");
    assert_eq!(asset["job_id"], job.as_str());
    assert_eq!(asset["source"]["key"], "inputs/My Film café.mp4");
    let base = format!("https://cdn.example/outputs/{done}");
    assert_eq!(asset["outputs"]["hls_url"], format!("{base}/hls/My%20Film%20caf%C3%A9.m3u8"));
    assert_eq!(asset["outputs"]["mp4_url"], format!("{base}/mp4/My%20Film%20caf%C3%A9_720p.mp4"));
    assert_eq!(asset["outputs"]["thumbnail_urls"].as_array().unwrap().len(), 1);
    assert_eq!(asset["outputs"]["renditions"][3]["height"], 1080);
    assert!(asset["created_at"].as_str().unwrap().ends_with('Z'));

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &next {
            None => "/assets?limit=2".to_owned(),
            Some(c) => format!("/assets?limit=2&next={c}"),
        };
        let (status, page) = get(uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(
            page["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    assert!(pages >= 3);

    for (uri, code) in [
        ("/assets/ffffffffffffffffffffffffffffffff".to_owned(), StatusCode::NOT_FOUND),
        ("/assets/not-an-id".to_owned(), StatusCode::NOT_FOUND),
        ("/assets?limit=0".to_owned(), StatusCode::BAD_REQUEST),
        ("/assets?next=garbage".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = get(uri.clone()).await;
        assert_eq!(status, code, "{uri}: {body}");
        assert!(body["error"]["code"].is_string(), "{uri}: {body}");
    }
}

/// A COMPLETE that arrives before the trigger recorded the asset's settings still lists a
/// signed asset's thumbnails where the job wrote them (`signed/outputs/<id>/thumbnails/`): the
/// job's UserMetadata says so.
#[tokio::test]
async fn a_signed_assets_thumbnails_are_listed_from_its_signed_prefix() {
    let bench = Bench::start(&[]).await;
    let source = streamstack_core::asset::SourceObject {
        bucket: bench.bucket.clone(),
        key: "inputs/early.mp4".into(),
        version_id: Some("v1".into()),
        sequencer: None,
        size: 5,
    };
    let asset = streamstack_core::Asset::submitting(source, time::OffsetDateTime::now_utc(), 1);
    let id = asset.id.clone();
    streamstack_core::AssetStore::claim(&bench.store, &asset, 0).await.expect("claim");
    for n in 0..2 {
        let key = format!("signed/outputs/{id}/thumbnails/early_thumb.000000{n}.jpg");
        bench.upload(&key, b"jpeg", &[]).await;
    }
    bench.upload(&format!("outputs/{id}/thumbnails/stray.0000000.jpg"), b"jpeg", &[]).await;
    let mut complete = bench.job_event("complete", &id, "job-early", T0);
    complete.detail.user_metadata.insert("streamstack-playback".into(), "signed".into());
    assert_eq!(
        handle_event(&bench.deps, complete).await.unwrap(),
        Outcome::Applied(AssetStatus::Complete)
    );
    let outputs = bench.asset(&id).await.outputs.expect("outputs");
    assert_eq!(outputs.thumbnail_keys.len(), 2, "{:?}", outputs.thumbnail_keys);
    assert!(outputs.thumbnail_keys.iter().all(|k| k.starts_with("signed/outputs/")));
}
