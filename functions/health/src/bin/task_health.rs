//! Lambda entry point of the ECS task health handler (EventBridge "ECS Task State Change").

use health::task::{handle_event, TaskHealth, TaskHealthConfig};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamstack_core::telemetry::init();
    let config = TaskHealthConfig::from_env()?;
    let sdk = streamstack_core::aws::sdk_config(config.endpoint_url.as_deref()).await;
    let health = TaskHealth::new(&config, &sdk);
    let health = &health;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handle_event(health, event)
    }))
    .await
}
