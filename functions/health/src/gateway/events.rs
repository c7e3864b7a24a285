//! The EventBridge events that invoke the gateway function, as AWS sends them.
//!
//! Every EventBridge event has the same envelope (`version`, `id`, `detail-type`, `source`,
//! `account`, `time`, `region`, `resources`, `detail`). Two kinds reach this function:
//!
//! - the schedule (`"detail-type": "Scheduled Event"`, `"source": "aws.events"`,
//!   `"resources": [<rule ARN>]`, `"detail": {}`);
//! - `"detail-type": "EC2 Instance State-change Notification"`, `"source": "aws.ec2"`,
//!   `"resources": ["arn:aws:ec2:<region>:<account>:instance/<id>"]`,
//!   `"detail": {"instance-id": "i-…", "state": "stopped"}` (states `pending`, `running`,
//!   `stopping`, `stopped`, `shutting-down`, `terminated`).

use serde::Deserialize;
use serde_json::Value;

/// `detail-type` of the EventBridge schedule.
pub const SCHEDULED: &str = "Scheduled Event";

/// `detail-type` of EC2 instance state changes.
pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";

/// The EventBridge envelope, with the fields this function reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// Event kind (`Scheduled Event`, `EC2 Instance State-change Notification`).
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// Emitting service (`aws.events`, `aws.ec2`).
    #[serde(default)]
    pub source: String,
    /// Event id (for the logs).
    #[serde(default)]
    pub id: String,
    /// The kind-specific body.
    #[serde(default)]
    pub detail: Value,
}

/// `detail` of an EC2 instance state-change notification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StateChangeDetail {
    /// The instance (`i-…`).
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// Its new state.
    pub state: String,
}

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A scheduled check of every gateway.
    Schedule,
    /// An instance changed state.
    StateChange(StateChangeDetail),
    /// An EventBridge event of another kind (a rule matching more than it should): ignored,
    /// not failed (a failed asynchronous invocation would be retried for nothing).
    Other {
        /// Its `detail-type`.
        detail_type: String,
    },
}

/// The event is none this function handles.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not an EventBridge event, or a state change without its instance id and state.
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Classifies an invocation payload.
///
/// # Errors
/// [`EventError`] for a payload that is no EventBridge event, or a malformed state change
/// (another `detail-type` is [`Event::Other`]).
pub fn parse(payload: &Value) -> Result<Event, EventError> {
    let envelope = Envelope::deserialize(payload)?;
    match envelope.detail_type.as_str() {
        SCHEDULED => Ok(Event::Schedule),
        STATE_CHANGE => Ok(Event::StateChange(StateChangeDetail::deserialize(&envelope.detail)?)),
        other => Ok(Event::Other { detail_type: other.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_the_two_kinds() {
        let schedule = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event",
            "source": "aws.events", "resources": [], "detail": {}});
        assert_eq!(parse(&schedule).expect("schedule"), Event::Schedule);
        let change = json!({"version": "0", "id": "x",
            "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
            "detail": {"instance-id": "i-1", "state": "stopped"}});
        assert_eq!(
            parse(&change).expect("change"),
            Event::StateChange(StateChangeDetail {
                instance_id: "i-1".into(),
                state: "stopped".into()
            })
        );
    }

    #[test]
    fn other_kinds_are_classified_and_malformed_ones_refused() {
        let other = parse(&json!({"detail-type": "AWS API Call via CloudTrail"})).expect("other");
        assert_eq!(other, Event::Other { detail_type: "AWS API Call via CloudTrail".into() });
        assert!(matches!(parse(&json!({"foo": 1})), Err(EventError::Malformed(_))));
        let no_id = json!({"detail-type": STATE_CHANGE, "detail": {"state": "stopped"}});
        assert!(matches!(parse(&no_id), Err(EventError::Malformed(_))));
    }
}
