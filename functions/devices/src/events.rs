//! What invoked the reconciler: an EventBridge schedule, or a batch of devices-table stream
//! records. A stream batch triggers a full reconcile only when one of its records changes
//! what is desired; the streamer's stream-state writes, heartbeats that change nothing but
//! the timestamp, and the reconciler's own `slot`/`task_arn` writes are skipped without any
//! AWS call.

use serde_json::Value;
use time::{Duration, OffsetDateTime};

/// Device attributes whose change can change the desired state.
const DESIRE_ATTRIBUTES: [&str; 6] =
    ["enabled", "status", "url_digest", "not_before", "failed_at", "gateway_id"];

/// The invocation's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A schedule (or any non-stream event, e.g. a manual invoke): reconcile.
    Schedule,
    /// A DynamoDB stream batch (`Records` with `eventSource` `aws:dynamodb`).
    Stream {
        /// Records in the batch.
        records: usize,
        /// Records that change what is desired.
        relevant: usize,
    },
}

impl Trigger {
    /// Whether to reconcile.
    pub fn should_reconcile(self) -> bool {
        match self {
            Self::Schedule => true,
            Self::Stream { relevant, .. } => relevant > 0,
        }
    }
}

/// Classifies `event` at `now` with the online `window`.
pub fn classify(event: &Value, now: OffsetDateTime, window: Duration) -> Trigger {
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        return Trigger::Schedule;
    };
    let relevant = records.iter().filter(|r| is_relevant(r, now, window)).count();
    Trigger::Stream { records: records.len(), relevant }
}

/// Whether a stream record (DynamoDB JSON images, `NEW_AND_OLD_IMAGES`) changes desire:
/// an insert or removal; a change of [`DESIRE_ATTRIBUTES`]; or a heartbeat that brings a
/// device back inside the online window. Unknown shapes count as relevant.
fn is_relevant(record: &Value, now: OffsetDateTime, window: Duration) -> bool {
    let name = record.get("eventName").and_then(Value::as_str).unwrap_or("");
    if name != "MODIFY" {
        return true;
    }
    let images = record.get("dynamodb");
    let (Some(old), Some(new)) =
        (images.and_then(|d| d.get("OldImage")), images.and_then(|d| d.get("NewImage")))
    else {
        return true;
    };
    DESIRE_ATTRIBUTES.iter().any(|a| old.get(a) != new.get(a))
        || recently_seen(old, now, window) != recently_seen(new, now, window)
}

fn recently_seen(image: &Value, now: OffsetDateTime, window: Duration) -> bool {
    let cutoff = (now - window).unix_timestamp_nanos() / 1_000_000;
    image
        .get("last_heartbeat")
        .and_then(|v| v.get("N"))
        .and_then(Value::as_str)
        .and_then(|n| n.parse::<i128>().ok())
        .is_some_and(|ms| ms >= cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn modify(old: Value, new: Value) -> Value {
        json!({"Records": [{"eventName": "MODIFY", "eventSource": "aws:dynamodb",
            "dynamodb": {"OldImage": old, "NewImage": new}}]})
    }

    #[test]
    fn only_desire_changes_trigger() {
        let now = OffsetDateTime::now_utc();
        let w = Duration::minutes(20);
        let ms =
            |t: OffsetDateTime| json!({"N": (t.unix_timestamp_nanos() / 1_000_000).to_string()});
        assert_eq!(classify(&json!({"source": "aws.events"}), now, w), Trigger::Schedule);
        let base = json!({"id": {"S": "a"}, "status": {"S": "online"}, "last_heartbeat": ms(now), "stream": {"M": {}}});
        let mut streamed = base.clone();
        streamed["stream"] = json!({"M": {"status": {"S": "receiving"}}});
        assert!(!classify(&modify(base.clone(), streamed), now, w).should_reconcile());
        let mut beat = base.clone();
        beat["last_heartbeat"] = ms(now + Duration::minutes(1));
        assert!(!classify(&modify(base.clone(), beat), now, w).should_reconcile());
        let mut stale = base.clone();
        stale["last_heartbeat"] = ms(now - Duration::hours(1));
        assert!(classify(&modify(stale, base.clone()), now, w).should_reconcile());
        let mut offline = base.clone();
        offline["status"] = json!({"S": "offline"});
        assert_eq!(
            classify(&modify(base.clone(), offline), now, w),
            Trigger::Stream { records: 1, relevant: 1 }
        );
        let insert = json!({"Records": [{"eventName": "INSERT"}]});
        assert!(classify(&insert, now, w).should_reconcile());
    }
}
