//! Lambda entry point of the gateway health function (EventBridge schedule + EC2 instance
//! state-change events).

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamstack_core::telemetry::init();
    let deps = health::gateway::Deps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        health::gateway::handle(deps, event)
    }))
    .await
}
