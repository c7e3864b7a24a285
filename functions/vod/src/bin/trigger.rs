//! Lambda entry point of the VOD trigger (S3 `ObjectCreated:*` notifications for `inputs/`).

use aws_lambda_events::s3::S3Event;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamstack_core::telemetry::init();
    let deps = &vod::Deps::from_env().await?;
    vod::trigger::check_config(&deps.config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| async move {
        vod::trigger::handle_event(deps, event.payload)
            .await
            .map(|outcomes| format!("{outcomes:?}"))
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
