//! An SNS topic in moto with an SQS queue subscribed (raw delivery), to read what was
//! published.

use crate::unique;
use serde_json::Value;

/// A topic and the queue receiving its messages.
pub struct TopicQueue {
    /// The topic's ARN.
    pub topic_arn: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl TopicQueue {
    /// Creates topic `<name>-<unique>` and a subscribed queue.
    pub async fn create(sdk: &aws_config::SdkConfig, name: &str) -> Self {
        let sns = streamstack_core::aws::sns(sdk);
        let topic = sns.create_topic().name(unique(name)).send().await.expect("topic");
        let topic_arn = topic.topic_arn.expect("topic arn");
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queue = sqs.create_queue().queue_name(unique(name)).send().await.expect("queue");
        let queue_url = queue.queue_url.expect("queue url");
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attrs")
            .attributes
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("queue arn");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .expect("subscribe");
        Self { topic_arn, queue_url, sqs }
    }

    /// Drains the queue: every message body so far, parsed as JSON.
    pub async fn drain(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).expect("JSON body"));
                if let Some(handle) = m.receipt_handle {
                    let _ = self
                        .sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
        }
    }
}
