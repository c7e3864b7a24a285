//! Lambda entry point of the VOD job-state function (EventBridge "MediaConvert Job State
//! Change" events of this stack's jobs).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use vod::job_state::{handle_event, JobStateDetail};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    streamstack_core::telemetry::init();
    let deps = &vod::Deps::job_state_from_env().await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<EventBridgeEvent<JobStateDetail>>| async move {
            handle_event(deps, event.payload)
                .await
                .map(|outcome| format!("{outcome:?}"))
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
