//! The reconciler's settings, read once from the environment.

use crate::ecs::EcsSettings;
use crate::plan::PlanSettings;
use streamstack_core::config::{env_var, flag, number, required, ConfigError};
use streamstack_core::device::DeviceSettings;

/// Settings of the reconciler Lambda (and of `devices-local`, which needs no ECS part).
///
/// | variable | default |
/// |---|---|
/// | `DEVICES_TABLE`, `SLOTS_TABLE` | required |
/// | `DEVICES_PER_TASK` | 1 (1..=100) |
/// | `DEVICE_ONLINE_WINDOW_SECS`, `DEVICE_AGE_OUT_SECS` | 1200, 604800 |
/// | `MAX_TASK_STARTS_PER_RUN` | 500 |
/// | `RECONCILER_DRY_RUN` | false |
/// | `ECS_CLUSTER`, `STREAMER_TASK_DEFINITION`, `TASK_SUBNETS`, `TASK_SECURITY_GROUPS` | required for ECS |
/// | `STREAMER_CONTAINER` | `streamer` |
/// | `TASK_ASSIGN_PUBLIC_IP` | `DISABLED` |
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Devices table.
    pub devices_table: String,
    /// Slots table.
    pub slots_table: String,
    /// Plan knobs.
    pub plan: PlanSettings,
    /// Log the plan, change nothing.
    pub dry_run: bool,
    /// Endpoint override (moto).
    pub endpoint_url: Option<String>,
}

fn list(name: &'static str) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = required(name)?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err(ConfigError::Missing(name));
    }
    Ok(items)
}

impl ReconcilerConfig {
    /// Reads the table, plan and dry-run settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            devices_table: required("DEVICES_TABLE")?,
            slots_table: required("SLOTS_TABLE")?,
            plan: PlanSettings {
                devices_per_task: number("DEVICES_PER_TASK", 1, 1..=100)?,
                device: DeviceSettings::from_lookup(env_var)?,
                max_starts: number("MAX_TASK_STARTS_PER_RUN", 500, 1..=100_000)?,
            },
            dry_run: flag("RECONCILER_DRY_RUN")?,
            endpoint_url: env_var("AWS_ENDPOINT_URL"),
        })
    }
}

/// Reads the ECS settings.
///
/// # Errors
/// [`ConfigError`] naming the missing or malformed variable.
pub fn ecs_from_env() -> Result<EcsSettings, ConfigError> {
    let assign_public_ip = match env_var("TASK_ASSIGN_PUBLIC_IP").as_deref() {
        None | Some("DISABLED") => false,
        Some("ENABLED") => true,
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "TASK_ASSIGN_PUBLIC_IP",
                reason: format!("{other:?}: expected ENABLED or DISABLED"),
            })
        }
    };
    Ok(EcsSettings {
        cluster: required("ECS_CLUSTER")?,
        task_definition: required("STREAMER_TASK_DEFINITION")?,
        container: env_var("STREAMER_CONTAINER").unwrap_or_else(|| "streamer".to_owned()),
        subnets: list("TASK_SUBNETS")?,
        security_groups: list("TASK_SECURITY_GROUPS")?,
        assign_public_ip,
    })
}
