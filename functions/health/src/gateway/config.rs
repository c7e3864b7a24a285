//! The gateway function's settings, read once from the environment.

use super::plan::{HealthSettings, ImageSettings};
use std::time::Duration;
use streamstack_core::config::{flag_from, number_from, required_from, ConfigError};

/// Time a recovery keeps for its last steps (move the address, terminate, record, alarm):
/// with less of the invocation's budget left, no recovery starts and no wait begins (a
/// pending replacement is resumed by the next run).
pub const FINISH_RESERVE: Duration = Duration::from_secs(20);

/// Settings of `gateway-health`.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `GATEWAYS_TABLE` | gateway state table (partition key `gateway_id`) | required |
/// | `ALARM_TOPIC_ARN` | SNS topic of alarms | none: alarms are only logged |
/// | `GATEWAY_TAG_KEY`, `GATEWAY_TAG_VALUE` | the tag marking gateway instances | `streamstack:role`, `media-gateway` |
/// | `GATEWAY_HEALTH_URL` | health URL template, `{private_ip}` substituted (plain `http://`) | none: status checks only |
/// | `GATEWAY_HEALTH_TIMEOUT_MS` | per health request | 3000 |
/// | `GATEWAY_HEALTH_FAILURES` | consecutive failures that make a gateway sick | 3 |
/// | `GATEWAY_REBOOT_GRACE_SECS` | sick after a reboot for this long: recover | 900 |
/// | `GATEWAY_RUNNING_WAIT_SECS` | wait for a replacement to run within one invocation | 120 |
/// | `GATEWAY_POLL_MS` | between `DescribeInstances` polls while waiting | 5000 |
/// | `GATEWAY_LOCK_SECS` | recovery lock lifetime: keep it above the function timeout, so a lock outlives the invocation holding it | 600 |
/// | `GATEWAY_BUDGET_SECS` | time budget of an invocation when the Lambda context gives no deadline: no new recovery or wait starts with less than [`FINISH_RESERVE`] of it left | 240 |
/// | `GATEWAY_RPO_SECS` | one backup image per gateway per interval | 86400 |
/// | `GATEWAY_IMAGE_RETENTION` | backup images kept per gateway | 7 |
/// | `GATEWAY_DRY_RUN` | `true`: report the plan, change nothing | `false` |
/// | `AWS_ENDPOINT_URL` | endpoint override (moto) | none |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Gateway state table.
    pub table: String,
    /// Alarm topic.
    pub alarm_topic_arn: Option<String>,
    /// Tag key marking gateway instances.
    pub tag_key: String,
    /// Tag value marking gateway instances.
    pub tag_value: String,
    /// Health URL template (`{private_ip}`), overridable per instance by the
    /// [`super::model::HEALTH_URL_TAG`] tag.
    pub health_url: Option<String>,
    /// Timeout of one health request.
    pub health_timeout: Duration,
    /// Health rule knobs.
    pub health: HealthSettings,
    /// Backup schedule knobs.
    pub images: ImageSettings,
    /// Upper bound on waiting for a replacement to reach `running` in one invocation.
    pub running_wait: Duration,
    /// Interval between polls while waiting.
    pub poll: Duration,
    /// Recovery lock lifetime (longer than the Lambda timeout).
    pub lock_ttl: Duration,
    /// Time budget of one invocation without a Lambda deadline (below the Lambda timeout).
    pub budget: Duration,
    /// Report the plan, change nothing.
    pub dry_run: bool,
    /// Endpoint override (moto).
    pub endpoint_url: Option<String>,
}

impl GatewayConfig {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(streamstack_core::config::env_var)
    }

    /// Reads the settings through `get` (empty values count as unset).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] without `GATEWAYS_TABLE`; [`ConfigError::Invalid`] for a
    /// number out of range, a flag other than `true`/`false`, or a health URL that is not
    /// `http://` (the function links no TLS: health URLs are private addresses in the VPC).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let health_url = get("GATEWAY_HEALTH_URL");
        if let Some(url) = &health_url {
            if !url.starts_with("http://") {
                return Err(ConfigError::Invalid {
                    name: "GATEWAY_HEALTH_URL",
                    reason: format!("{url:?}: only plain http:// URLs are supported"),
                });
            }
        }
        // Numbers and flags are read trimmed.
        let trimmed = |k: &str| get(k).map(|v| v.trim().to_owned());
        let number = |name, default, range| number_from(trimmed, name, default, range);
        let seconds = |name, default, range| {
            number_from::<i64>(trimmed, name, default, range).map(time::Duration::seconds)
        };
        const DAY: u64 = 86_400;
        const DAY_SECS: i64 = 86_400;
        Ok(Self {
            table: required_from(get, "GATEWAYS_TABLE")?,
            alarm_topic_arn: get("ALARM_TOPIC_ARN"),
            tag_key: get("GATEWAY_TAG_KEY").unwrap_or_else(|| "streamstack:role".into()),
            tag_value: get("GATEWAY_TAG_VALUE").unwrap_or_else(|| "media-gateway".into()),
            health_url,
            health_timeout: Duration::from_millis(number(
                "GATEWAY_HEALTH_TIMEOUT_MS",
                3000,
                50..=60_000,
            )?),
            health: HealthSettings {
                failure_threshold: number_from(trimmed, "GATEWAY_HEALTH_FAILURES", 3, 1..=100)?,
                reboot_grace: seconds("GATEWAY_REBOOT_GRACE_SECS", 900, 0..=DAY_SECS)?,
            },
            images: ImageSettings {
                rpo: seconds("GATEWAY_RPO_SECS", DAY_SECS, 60..=365 * DAY_SECS)?,
                retention: number_from(trimmed, "GATEWAY_IMAGE_RETENTION", 7, 1..=1000)?,
            },
            running_wait: Duration::from_secs(number("GATEWAY_RUNNING_WAIT_SECS", 120, 0..=840)?),
            poll: Duration::from_millis(number("GATEWAY_POLL_MS", 5000, 10..=60_000)?),
            lock_ttl: Duration::from_secs(number("GATEWAY_LOCK_SECS", 600, 1..=DAY)?),
            budget: Duration::from_secs(number("GATEWAY_BUDGET_SECS", 240, 1..=900)?),
            dry_run: flag_from(trimmed, "GATEWAY_DRY_RUN")?,
            endpoint_url: get("AWS_ENDPOINT_URL"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        GatewayConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[("GATEWAYS_TABLE", "gw")]).expect("config");
        assert_eq!(
            (c.tag_key.as_str(), c.tag_value.as_str()),
            ("streamstack:role", "media-gateway")
        );
        assert_eq!(c.health.failure_threshold, 3);
        assert_eq!(c.images.rpo, time::Duration::days(1));
        assert_eq!(c.images.retention, 7);
        assert!(!c.dry_run && c.health_url.is_none());
        assert_eq!((c.budget, c.lock_ttl), (Duration::from_secs(240), Duration::from_secs(600)));
    }

    #[test]
    fn refusals() {
        assert!(matches!(config(&[]), Err(ConfigError::Missing("GATEWAYS_TABLE"))));
        let bad = [
            ("GATEWAY_HEALTH_URL", "https://x/health"),
            ("GATEWAY_DRY_RUN", "yes"),
            ("GATEWAY_HEALTH_FAILURES", "0"),
            ("GATEWAY_RPO_SECS", "10"),
            ("GATEWAY_IMAGE_RETENTION", "-1"),
        ];
        for (k, v) in bad {
            let r = config(&[("GATEWAYS_TABLE", "gw"), (k, v)]);
            assert!(matches!(r, Err(ConfigError::Invalid { name, .. }) if name == k), "{k}={v}");
        }
    }
}
