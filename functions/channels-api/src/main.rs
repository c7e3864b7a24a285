//! Lambda entry point of the channel API (API Gateway HTTP API, payload v2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    streamstack_core::telemetry::init();
    let deps = channels_api::Deps::from_env().await?;
    lambda_http::run(channels_api::router(deps)).await
}
