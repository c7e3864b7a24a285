//! Lambda entry point of the device reconciler (EventBridge schedule + devices-table stream).

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamstack_core::telemetry::init();
    let deps = devices::Deps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        devices::handle(deps, event)
    }))
    .await
}
