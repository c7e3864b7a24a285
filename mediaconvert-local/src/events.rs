//! EventBridge "MediaConvert Job State Change" events, in the shape MediaConvert sends them
//! (MediaConvert User Guide, "EventBridge events for MediaConvert"; `tests/fixtures/
//! mediaconvert-job-*.json` are real ones).

use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Account id of every ARN and event.
pub const ACCOUNT: &str = "123456789012";
/// Region of every ARN and event.
pub const REGION: &str = "us-east-1";

/// The ARN of job `id`.
pub fn job_arn(id: &str) -> String {
    format!("arn:aws:mediaconvert:{REGION}:{ACCOUNT}:jobs/{id}")
}

/// The ARN of the default queue.
pub fn default_queue() -> String {
    format!("arn:aws:mediaconvert:{REGION}:{ACCOUNT}:queues/Default")
}

/// What changed: the status and its status-specific members of `detail`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The job started.
    Progressing,
    /// Progress, 0..=100 percent, in `phase` (`PROBING`, `TRANSCODING`, `UPLOADING`).
    StatusUpdate {
        /// Percent of the whole job.
        percent: u8,
        /// Current phase.
        phase: &'static str,
    },
    /// Finished; `outputGroupDetails` as MediaConvert writes them.
    Complete(Value),
    /// Failed with MediaConvert's numeric `code` and its message.
    Error {
        /// e.g. 1010 (input cannot be opened).
        code: i64,
        /// Text.
        message: String,
    },
    /// Cancelled by `CancelJob`.
    Canceled,
}

impl Change {
    /// `detail.status`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Progressing => "PROGRESSING",
            Self::StatusUpdate { .. } => "STATUS_UPDATE",
            Self::Complete(_) => "COMPLETE",
            Self::Error { .. } => "ERROR",
            Self::Canceled => "CANCELED",
        }
    }
}

/// The event of `change` of job `job_id` carrying the job's `user_metadata`, at `now_ms`
/// (Unix milliseconds).
pub fn event(
    job_id: &str,
    user_metadata: &HashMap<String, String>,
    change: &Change,
    now_ms: i64,
) -> Value {
    let mut detail = Map::new();
    detail.insert("timestamp".into(), now_ms.into());
    detail.insert("accountId".into(), ACCOUNT.into());
    detail.insert("queue".into(), default_queue().into());
    detail.insert("jobId".into(), job_id.into());
    detail.insert("status".into(), change.status().into());
    detail.insert("userMetadata".into(), json!(user_metadata));
    match change {
        Change::Progressing => {}
        Change::StatusUpdate { percent, phase } => {
            let phase_status = |p: &str| {
                let order = ["PROBING", "TRANSCODING", "UPLOADING"];
                let (i, cur) =
                    (order.iter().position(|x| *x == p), order.iter().position(|x| x == phase));
                match (i, cur) {
                    (Some(i), Some(c)) if i < c => {
                        json!({"status": "COMPLETE", "percentComplete": 100})
                    }
                    (Some(i), Some(c)) if i == c => {
                        json!({"status": "PROGRESSING", "percentComplete": percent})
                    }
                    _ => json!({"status": "PENDING", "percentComplete": 0}),
                }
            };
            detail.insert(
                "jobProgress".into(),
                json!({
                    "phaseProgress": {
                        "PROBING": phase_status("PROBING"),
                        "TRANSCODING": phase_status("TRANSCODING"),
                        "UPLOADING": phase_status("UPLOADING"),
                    },
                    "jobPercentComplete": percent,
                    "currentPhase": phase,
                    "retryCount": 0
                }),
            );
        }
        Change::Complete(groups) => {
            detail.insert("outputGroupDetails".into(), groups.clone());
        }
        Change::Error { code, message } => {
            detail.insert("errorCode".into(), (*code).into());
            detail.insert("errorMessage".into(), message.clone().into());
        }
        Change::Canceled => {}
    }
    // As in real events: no payment type or interval in status updates, no interval in errors.
    if !matches!(change, Change::StatusUpdate { .. }) {
        detail.insert("paymentType".into(), "ON_DEMAND".into());
    }
    if !matches!(change, Change::StatusUpdate { .. } | Change::Error { .. }) {
        detail.insert("statusUpdateInterval".into(), "SECONDS_60".into());
    }
    let time = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "MediaConvert Job State Change",
        "source": "aws.mediaconvert",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [job_arn(job_id)],
        "detail": Value::Object(detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/mediaconvert-job-{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Same keys at every level of objects (values and array lengths may differ).
    fn same_shape(a: &Value, b: &Value, at: &str) {
        if let (Value::Object(a), Value::Object(b)) = (a, b) {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            let (mut ka, mut kb) = (ka, kb);
            ka.sort();
            kb.sort();
            assert_eq!(ka, kb, "keys at {at}");
            for (k, v) in a {
                if k != "userMetadata" {
                    same_shape(v, &b[k], &format!("{at}.{k}"));
                }
            }
        }
    }

    #[test]
    fn events_have_the_fixtures_shape() {
        let meta = HashMap::from([("streamstack-stack".to_owned(), "s".to_owned())]);
        let progressing = event("j", &meta, &Change::Progressing, 1_763_805_610_000);
        same_shape(&progressing, &fixture("progressing"), "");
        assert_eq!(progressing["time"], "2025-11-22T10:00:10Z");
        let update =
            event("j", &meta, &Change::StatusUpdate { percent: 47, phase: "TRANSCODING" }, 0);
        let mut want = fixture("status-update");
        want["detail"].as_object_mut().unwrap().remove("framesDecoded");
        same_shape(&update, &want, "");
        assert_eq!(
            update["detail"]["jobProgress"]["phaseProgress"]["PROBING"]["status"],
            "COMPLETE"
        );
        let error = event("j", &meta, &Change::Error { code: 1010, message: "m".into() }, 0);
        same_shape(&error, &fixture("error"), "");
        let complete = fixture("complete");
        let groups = complete["detail"]["outputGroupDetails"].clone();
        same_shape(&event("j", &meta, &Change::Complete(groups), 0), &complete, "");
    }
}
