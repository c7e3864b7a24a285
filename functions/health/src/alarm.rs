//! Alarms: operator notifications published to an SNS topic (`ALARM_TOPIC_ARN`).
//!
//! Every alarm is one SNS `Publish` with a subject (≤ 100 ASCII characters, SNS's limit) and a
//! JSON message `{"kind": …, …}` so subscribers (email, chat hooks, a queue) can route on
//! `kind`. Messages never carry media URLs or credentials.

use async_trait::async_trait;
use serde_json::Value;

/// An alarm could not be published (after the SDK's bounded retries).
#[derive(Debug, thiserror::Error)]
#[error("SNS Publish failed: {0}")]
pub struct AlarmError(pub String);

/// Where alarms go.
#[async_trait]
pub trait Alarms: Send + Sync {
    /// Publishes one alarm: `subject` (truncated to 100 characters) and `message` (JSON).
    ///
    /// # Errors
    /// [`AlarmError`] when the topic refused it or could not be reached.
    async fn publish(&self, subject: &str, message: &Value) -> Result<(), AlarmError>;
}

/// [`Alarms`] on an SNS topic; with no topic configured, alarms are only logged.
#[derive(Debug, Clone)]
pub struct SnsAlarms {
    client: aws_sdk_sns::Client,
    topic_arn: Option<String>,
}

impl SnsAlarms {
    /// Alarms to `topic_arn` through `client` (`None`: log only).
    pub fn new(client: aws_sdk_sns::Client, topic_arn: Option<String>) -> Self {
        Self { client, topic_arn }
    }
}

/// `subject` cut to SNS's 100 characters, control characters replaced by spaces.
pub fn sns_subject(subject: &str) -> String {
    subject.chars().map(|c| if c.is_control() { ' ' } else { c }).take(100).collect()
}

#[async_trait]
impl Alarms for SnsAlarms {
    async fn publish(&self, subject: &str, message: &Value) -> Result<(), AlarmError> {
        tracing::warn!(%subject, %message, "alarm");
        let Some(topic) = &self.topic_arn else { return Ok(()) };
        self.client
            .publish()
            .topic_arn(topic)
            .subject(sns_subject(subject))
            .message(message.to_string())
            .send()
            .await
            .map_err(|e| AlarmError(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_fit_sns() {
        let s = super::sns_subject(&format!("a\nb{}", "x".repeat(200)));
        assert_eq!(s.chars().count(), 100);
        assert!(s.starts_with("a b"));
    }
}
