//! Runs the VOD functions locally against a local stack (moto + MediaConvert stand-in):
//! `vod-local upload-event --bucket B --key K` delivers the S3 event of an uploaded object to
//! the trigger; `vod-local job-event --file F` delivers a MediaConvert job state event.

use aws_lambda_events::s3::S3Event;
use clap::{Parser, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the `ObjectCreated:Put` event of an existing object and run the trigger on it.
    UploadEvent {
        /// Bucket name.
        #[arg(long)]
        bucket: String,
        /// Object key (plain, e.g. `inputs/My Film.mp4`).
        #[arg(long)]
        key: String,
    },
    /// Run the job-state function on an EventBridge event JSON file.
    JobEvent {
        /// Path of the event.
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

/// A key encoded the way S3 event notifications encode it (form encoding, `/` kept).
fn event_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'*').remove(b' ');
    key.split('/')
        .map(|seg| utf8_percent_encode(seg, KEEP).to_string().replace(' ', "+"))
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamstack_core::telemetry::init();
    let deps = vod::Deps::from_env().await?;
    match Args::parse().command {
        Command::UploadEvent { bucket, key } => {
            let head = deps.s3.head_object().bucket(&bucket).key(&key).send().await?;
            let event: S3Event = serde_json::from_value(json!({ "Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)?,
                "eventName": "ObjectCreated:Put",
                "userIdentity": { "principalId": "local" },
                "requestParameters": { "sourceIPAddress": "127.0.0.1" },
                "responseElements": {},
                "s3": {
                    "s3SchemaVersion": "1.0", "configurationId": "streamstack-inputs",
                    "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
                    "object": {
                        "key": event_key(&key), "size": head.content_length.unwrap_or(0),
                        "eTag": head.e_tag.unwrap_or_default(), "versionId": head.version_id,
                        "sequencer": format!("{:016X}", time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64),
                    }
                }
            }]}))?;
            let outcomes = vod::trigger::handle_event(&deps, event).await?;
            println!("{outcomes:?}");
        }
        Command::JobEvent { file } => {
            let event = serde_json::from_slice(&std::fs::read(file)?)?;
            println!("{:?}", vod::job_state::handle_event(&deps, event).await?);
        }
    }
    Ok(())
}
