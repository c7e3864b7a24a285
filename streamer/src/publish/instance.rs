//! Which process this is: the owner id recorded in the publish leases it holds.

use std::time::Duration;

/// The lease owner id found by [`discover_instance_id`].
static INSTANCE_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How long [`discover_instance_id`] waits for the ECS task metadata endpoint: 2 s.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// This process's lease owner id: `STREAMER_INSTANCE_ID` if set; else the ECS task ARN when
/// [`discover_instance_id`] found one; else `<hostname>/<pid>`.
pub fn instance_id() -> String {
    if let Some(id) = streamstack_core::config::env_var("STREAMER_INSTANCE_ID") {
        return id;
    }
    if let Some(id) = INSTANCE_ID.get() {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "streamer".to_owned());
    format!("{host}/{}", std::process::id())
}

/// On ECS (`ECS_CONTAINER_METADATA_URI_V4` set): reads the task ARN from the task metadata
/// endpoint v4 (`GET ${ECS_CONTAINER_METADATA_URI_V4}/task`, field `TaskARN`) within
/// [`METADATA_TIMEOUT`] and makes it [`instance_id`], so the leases this task holds name it
/// and the health handler releases them when the task stops. Call once at start-up; a
/// failure is logged and leaves the `<hostname>/<pid>` fallback.
pub async fn discover_instance_id() {
    let Some(base) = streamstack_core::config::env_var("ECS_CONTAINER_METADATA_URI_V4") else {
        return;
    };
    #[derive(serde::Deserialize)]
    struct TaskMetadata {
        #[serde(rename = "TaskARN")]
        task_arn: String,
    }
    let fetch = || async {
        let client = reqwest::Client::builder().timeout(METADATA_TIMEOUT).build()?;
        client
            .get(format!("{base}/task"))
            .send()
            .await?
            .error_for_status()?
            .json::<TaskMetadata>()
            .await
    };
    for attempt in 1..=METADATA_ATTEMPTS {
        match fetch().await {
            Ok(meta) if !meta.task_arn.is_empty() => {
                tracing::info!(task = %meta.task_arn, "lease owner: ECS task");
                let _ = INSTANCE_ID.set(meta.task_arn);
                return;
            }
            Ok(_) => tracing::warn!(attempt, "ECS task metadata without a TaskARN"),
            Err(error) => tracing::warn!(attempt, %error, "ECS task metadata unavailable"),
        }
        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
    }
    tracing::error!(
        owner = %instance_id(),
        "no ECS task ARN after {METADATA_ATTEMPTS} attempts: this task's leases are not \
         released when it stops (they lapse after the lease duration)"
    );
}

/// Attempts of [`discover_instance_id`] (500 ms, 1 s, … apart).
pub const METADATA_ATTEMPTS: u32 = 3;
