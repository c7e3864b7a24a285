//! VOD test bench: a versioned media bucket, an assets table, an SNS topic with an SQS queue
//! subscribed (all in moto), the MediaConvert stand-in, and the functions' [`vod::Deps`].

use crate::mediaconvert::MediaConvertStub;
use crate::topic::TopicQueue;
use crate::{aws, endpoint, unique};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::S3Event;
use serde_json::Value;
use std::collections::HashMap;
use streamstack_core::aws::AwsClients;
use streamstack_core::{Asset, AssetStore, DynamoAssetStore};
use vod::config::VodConfig;
use vod::job_state::JobStateDetail;

/// Stack name the bench's jobs carry.
pub const STACK: &str = "streamstack-test";
/// Asset id, bucket and stack written in the fixtures; [`Bench::job_event`] replaces them.
const FIXTURE_ASSET: &str = "0123456789abcdef0123456789abcdef";
const FIXTURE_BUCKET: &str = "streamstack-media";

/// A fixture file of `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Everything a VOD test needs.
pub struct Bench {
    /// Clients on moto.
    pub aws: AwsClients,
    /// The functions' dependencies (as the Lambda mains build them).
    pub deps: vod::Deps,
    /// MediaConvert stand-in.
    pub mediaconvert: MediaConvertStub,
    /// Versioned media bucket.
    pub bucket: String,
    /// Assets table name.
    pub table: String,
    /// The assets topic, with a queue subscribed.
    pub topic: TopicQueue,
    /// Direct store access for assertions.
    pub store: DynamoAssetStore,
}

impl Bench {
    /// Sets up a fresh bench with `extra` environment variables for [`VodConfig`].
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let aws = aws().await;
        let mediaconvert = MediaConvertStub::start("127.0.0.1:0".parse().unwrap()).await;
        let bucket = unique("vod");
        aws.s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
        aws.s3
            .put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
        let table = unique("assets");
        let store = DynamoAssetStore::new(aws.dynamodb.clone(), &table);
        store.create_table_if_missing().await.expect("table");
        let sdk = streamstack_core::aws::sdk_config(Some(&endpoint())).await;
        let topic = TopicQueue::create(&sdk, "assets").await;
        let mut vars: HashMap<String, String> = HashMap::from([
            ("ASSETS_TABLE".into(), table.clone()),
            ("STACK_NAME".into(), STACK.into()),
            ("MEDIACONVERT_ROLE_ARN".into(), "arn:aws:iam::123456789012:role/mc".into()),
            ("MEDIACONVERT_ENDPOINT".into(), mediaconvert.endpoint.clone()),
            ("ASSETS_TOPIC_ARN".into(), topic.topic_arn.clone()),
            ("AWS_ENDPOINT_URL".into(), endpoint()),
        ]);
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = VodConfig::from_lookup(|k| vars.get(k).cloned()).expect("config");
        let deps = vod::Deps::new(config).await;
        Self { aws, deps, mediaconvert, bucket, table, topic, store }
    }

    /// Uploads `body` to `key` with user `metadata`; returns the version id.
    pub async fn upload(&self, key: &str, body: &[u8], metadata: &[(&str, &str)]) -> String {
        let mut put =
            self.aws.s3.put_object().bucket(&self.bucket).key(key).body(body.to_vec().into());
        for (k, v) in metadata {
            put = put.metadata(*k, *v);
        }
        put.send().await.expect("put").version_id.unwrap_or_default()
    }

    /// The S3 event fixture, naming this bench's bucket and the given object (key exactly as
    /// S3 would encode it in the event).
    pub fn s3_event(
        &self,
        encoded_key: &str,
        size: i64,
        version: &str,
        sequencer: &str,
    ) -> S3Event {
        let mut event: Value = serde_json::from_str(&fixture("s3-object-created.json")).unwrap();
        let s3 = &mut event["Records"][0]["s3"];
        s3["bucket"]["name"] = self.bucket.clone().into();
        s3["bucket"]["arn"] = format!("arn:aws:s3:::{}", self.bucket).into();
        s3["object"]["key"] = encoded_key.into();
        s3["object"]["size"] = size.into();
        s3["object"]["versionId"] = version.into();
        s3["object"]["sequencer"] = sequencer.into();
        serde_json::from_value(event).expect("S3Event")
    }

    /// Uploads `body` to `key` (plain ASCII key, encoded as S3 would) and delivers its event.
    pub async fn upload_and_trigger(&self, key: &str, body: &[u8]) -> vod::trigger::Outcome {
        let version = self.upload(key, body, &[]).await;
        let event = self.s3_event(&key.replace(' ', "+"), body.len() as i64, &version, "00AA");
        let mut outcomes = vod::trigger::handle_event(&self.deps, event).await.expect("trigger");
        outcomes.pop().expect("one outcome")
    }

    /// A MediaConvert job event fixture (`complete`, `progressing`, `status-update`,
    /// `error`) for `asset_id` in this bench's bucket and stack, stamped `timestamp_ms`.
    pub fn job_event(
        &self,
        name: &str,
        asset_id: &str,
        job_id: &str,
        timestamp_ms: u64,
    ) -> EventBridgeEvent<JobStateDetail> {
        let text = fixture(&format!("mediaconvert-job-{name}.json"))
            .replace(FIXTURE_ASSET, asset_id)
            .replace(&format!("s3://{FIXTURE_BUCKET}/"), &format!("s3://{}/", self.bucket))
            .replace("\"streamstack\"", &format!("\"{STACK}\""))
            .replace("1763805600000-abc123", job_id);
        let mut event: EventBridgeEvent<JobStateDetail> = serde_json::from_str(&text).unwrap();
        event.detail.timestamp = timestamp_ms;
        event
    }

    /// The stored asset.
    pub async fn asset(&self, id: &str) -> Asset {
        self.store.get(id).await.expect("get").expect("asset exists")
    }

    /// Number of items in the assets table.
    pub async fn asset_count(&self) -> usize {
        self.store.list(100, None).await.expect("list").items.len()
    }

    /// Drains the notification queue: every message body so far, parsed.
    pub async fn notifications(&self) -> Vec<Value> {
        self.topic.drain().await
    }
}
