//! Settings of the VOD functions, read once from the environment at start-up.

use crate::presets::Presets;
use crate::settings::{Defaults, SEGMENT_LENGTH_RANGE, THUMBNAIL_INTERVAL_RANGE};
use std::ops::RangeInclusive;
use streamstack_core::config::ConfigError;
use streamstack_core::playback::PlaybackSettings;

/// Settings of the trigger and job-state functions.
///
/// | variable | field | default |
/// |---|---|---|
/// | `ASSETS_TABLE` | [`VodConfig::assets_table`] | required |
/// | `STACK_NAME` | [`VodConfig::stack_name`] | required |
/// | `MEDIACONVERT_ROLE_ARN` | [`VodConfig::role_arn`] | required by the trigger |
/// | `MEDIACONVERT_QUEUE_ARN` | [`VodConfig::queue_arn`] | the account's default queue |
/// | `MEDIACONVERT_ENDPOINT` | [`VodConfig::mediaconvert_endpoint`] | regional endpoint |
/// | `ASSETS_TOPIC_ARN` | [`VodConfig::topic_arn`] | none (no notifications) |
/// | `VOD_PRESETS` | [`VodConfig::presets`] | built-in `presets.json` |
/// | `VOD_SEGMENT_LENGTH` | [`Defaults::segment_length`] | 6 s |
/// | `VOD_THUMBNAIL_INTERVAL` | [`Defaults::thumbnail_interval`] | 10 s |
/// | `AWS_ENDPOINT_URL` | [`VodConfig::endpoint_url`] | none (real AWS) |
#[derive(Debug, Clone)]
pub struct VodConfig {
    /// DynamoDB table of assets.
    pub assets_table: String,
    /// CloudFormation stack name; goes into each job's `UserMetadata` so that the stack's
    /// EventBridge rule only sees its own jobs.
    pub stack_name: String,
    /// IAM role MediaConvert assumes (reads `inputs/`, writes `outputs/`).
    pub role_arn: Option<String>,
    /// MediaConvert queue ARN.
    pub queue_arn: Option<String>,
    /// MediaConvert endpoint override (account endpoint or local stand-in).
    pub mediaconvert_endpoint: Option<String>,
    /// SNS topic that receives `COMPLETE` / `ERROR` notifications.
    pub topic_arn: Option<String>,
    /// Ladders and renditions.
    pub presets: Presets,
    /// Settings used when an upload chooses none.
    pub defaults: Defaults,
    /// Endpoint override of the other AWS clients (moto).
    pub endpoint_url: Option<String>,
}

impl VodConfig {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(streamstack_core::config::env_var)
    }

    /// Reads the settings through `get` (a variable name -> value lookup).
    ///
    /// # Errors
    /// As [`VodConfig::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let seconds = |name: &'static str, default: u32, range: RangeInclusive<u32>| match get(name)
        {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                ConfigError::Invalid {
                    name,
                    reason: format!("{v:?} is not {}..={} seconds", range.start(), range.end()),
                }
            }),
        };
        let presets = match get("VOD_PRESETS") {
            None => Presets::builtin(),
            Some(json) => Presets::from_json(&json)
                .map_err(|e| ConfigError::Invalid { name: "VOD_PRESETS", reason: e.to_string() })?,
        };
        Ok(Self {
            assets_table: get("ASSETS_TABLE").ok_or(ConfigError::Missing("ASSETS_TABLE"))?,
            stack_name: get("STACK_NAME").ok_or(ConfigError::Missing("STACK_NAME"))?,
            role_arn: get("MEDIACONVERT_ROLE_ARN"),
            queue_arn: get("MEDIACONVERT_QUEUE_ARN"),
            mediaconvert_endpoint: get("MEDIACONVERT_ENDPOINT"),
            topic_arn: get("ASSETS_TOPIC_ARN"),
            presets,
            defaults: Defaults {
                segment_length: seconds("VOD_SEGMENT_LENGTH", 6, SEGMENT_LENGTH_RANGE)?,
                thumbnail_interval: seconds(
                    "VOD_THUMBNAIL_INTERVAL",
                    10,
                    THUMBNAIL_INTERVAL_RANGE,
                )?,
                playback: PlaybackSettings::from_lookup(&get)?.default,
            },
            endpoint_url: get("AWS_ENDPOINT_URL"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<VodConfig, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        VodConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_errors() {
        assert!(matches!(cfg(&[("STACK_NAME", "s")]), Err(ConfigError::Missing("ASSETS_TABLE"))));
        let c = cfg(&[("ASSETS_TABLE", "t"), ("STACK_NAME", "s")]).unwrap();
        assert_eq!((c.defaults.segment_length, c.defaults.thumbnail_interval), (6, 10));
        assert_eq!(c.presets, Presets::builtin());
        let e = cfg(&[("ASSETS_TABLE", "t"), ("STACK_NAME", "s"), ("VOD_SEGMENT_LENGTH", "0")]);
        assert!(e.unwrap_err().to_string().contains("VOD_SEGMENT_LENGTH"));
        let e = cfg(&[("ASSETS_TABLE", "t"), ("STACK_NAME", "s"), ("VOD_PRESETS", "{}")]);
        assert!(e.unwrap_err().to_string().contains("VOD_PRESETS"));
    }
}
