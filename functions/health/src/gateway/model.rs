//! What the gateway function observes and records: instances, status checks, images,
//! Elastic IPs and the per-gateway state row, plus the tag names it reads and writes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Tag naming the gateway an instance (or image, or Elastic IP) belongs to; stable across
/// replacements because a replacement copies its predecessor's tags. An instance without it
/// is its own gateway (the gateway id is then the instance id).
pub const GATEWAY_ID_TAG: &str = "streamstack:gateway-id";

/// Tag overriding the health URL template for one instance (`{private_ip}` is substituted).
pub const HEALTH_URL_TAG: &str = "streamstack:health-url";

/// Tag put on a replacement instance: the id of the instance it replaces. Finds a replacement
/// whose id was not recorded (belt and braces next to `RunInstances`' `ClientToken`).
pub const REPLACES_TAG: &str = "streamstack:replaces";

/// Tag put on every image this function creates, with value [`CREATED_BY`].
pub const CREATED_BY_TAG: &str = "streamstack:created-by";

/// Value of [`CREATED_BY_TAG`].
pub const CREATED_BY: &str = "gateway-health";

/// Tag put on a backup image: the instance it was made from.
pub const SOURCE_INSTANCE_TAG: &str = "streamstack:source-instance";

/// An instance's lifecycle state (`Instance.State.Name` of `DescribeInstances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// `pending`: launching or starting.
    Pending,
    /// `running`.
    Running,
    /// `stopping`.
    Stopping,
    /// `stopped`.
    Stopped,
    /// `shutting-down`: terminating.
    ShuttingDown,
    /// `terminated`.
    Terminated,
    /// A state name this code does not know.
    Unknown,
}

impl Lifecycle {
    /// The state named `name` (`pending`, `running`, `stopping`, `stopped`, `shutting-down`,
    /// `terminated`); anything else is [`Lifecycle::Unknown`].
    pub fn parse(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            _ => Self::Unknown,
        }
    }

    /// Stopped or terminated: the gateway serves nothing until someone acts.
    pub fn is_down(self) -> bool {
        matches!(self, Self::Stopped | Self::Terminated)
    }
}

/// One EC2 status check's summary (`SystemStatus.Status` / `InstanceStatus.Status` of
/// `DescribeInstanceStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// `ok`.
    Ok,
    /// `impaired`: the check failed.
    Impaired,
    /// `initializing`: the instance just (re)started.
    Initializing,
    /// `insufficient-data`.
    InsufficientData,
    /// `not-applicable`: the instance is not running.
    NotApplicable,
    /// Anything else, or no status reported.
    Unknown,
}

impl CheckStatus {
    /// The summary named `name`.
    pub fn parse(name: &str) -> Self {
        match name {
            "ok" => Self::Ok,
            "impaired" => Self::Impaired,
            "initializing" => Self::Initializing,
            "insufficient-data" => Self::InsufficientData,
            "not-applicable" => Self::NotApplicable,
            _ => Self::Unknown,
        }
    }
}

/// Both EC2 status checks of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The system (host / AWS side) status check.
    pub system: CheckStatus,
    /// The instance (guest OS reachability) status check.
    pub instance: CheckStatus,
}

impl Status {
    /// Both checks `ok`.
    pub const OK: Status = Status { system: CheckStatus::Ok, instance: CheckStatus::Ok };

    /// Whether either check reports `impaired` (initializing and insufficient data are not
    /// counted as sick).
    pub fn impaired(&self) -> bool {
        self.system == CheckStatus::Impaired || self.instance == CheckStatus::Impaired
    }
}

/// A gateway instance as `DescribeInstances` describes it: what the checks and a replacement
/// launch need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Instance id (`i-…`).
    pub id: String,
    /// The [`GATEWAY_ID_TAG`] value, else the instance id.
    pub gateway_id: String,
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// The image it was launched from.
    pub image_id: Option<String>,
    /// Instance type (`c6i.large`, …).
    pub instance_type: Option<String>,
    /// Subnet (VPC instances).
    pub subnet_id: Option<String>,
    /// Security group ids.
    pub security_group_ids: Vec<String>,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Instance profile ARN.
    pub instance_profile_arn: Option<String>,
    /// Primary private IPv4 address.
    pub private_ip: Option<String>,
    /// Every tag, `aws:`-prefixed ones included.
    pub tags: BTreeMap<String, String>,
    /// Launch time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub launch_time: Option<OffsetDateTime>,
}

impl Instance {
    /// What a replacement of this instance is launched with (kept in the gateway's row, so a
    /// replacement can be launched once EC2 no longer describes the instance).
    pub fn launch_template(&self) -> SavedLaunch {
        SavedLaunch {
            image_id: self.image_id.clone(),
            instance_type: self.instance_type.clone(),
            subnet_id: self.subnet_id.clone(),
            security_group_ids: self.security_group_ids.clone(),
            key_name: self.key_name.clone(),
            instance_profile_arn: self.instance_profile_arn.clone(),
            tags: self.copyable_tags().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// The tags a replacement gets: every tag but the `aws:` reserved ones and
    /// [`REPLACES_TAG`] (set anew).
    pub fn copyable_tags(&self) -> impl Iterator<Item = (&String, &String)> {
        self.tags.iter().filter(|(k, _)| !k.starts_with("aws:") && k.as_str() != REPLACES_TAG)
    }

    /// A test instance of gateway `gw`: `id` in state `lifecycle`, nothing else known.
    #[cfg(test)]
    pub(crate) fn bare(id: &str, lifecycle: Lifecycle) -> Self {
        Self {
            id: id.into(),
            gateway_id: "gw".into(),
            lifecycle,
            image_id: None,
            instance_type: None,
            subnet_id: None,
            security_group_ids: vec![],
            key_name: None,
            instance_profile_arn: None,
            private_ip: None,
            tags: BTreeMap::new(),
            launch_time: None,
        }
    }
}

/// The launch settings of a gateway's instance as last observed (adopted or healthy),
/// stored in its row (`launch` attribute, JSON): what a replacement is launched with when
/// EC2 no longer describes the failed instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLaunch {
    /// The image the instance was launched from (used without a backup image).
    pub image_id: Option<String>,
    /// Instance type.
    pub instance_type: Option<String>,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// Security group ids.
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Instance profile ARN.
    pub instance_profile_arn: Option<String>,
    /// Copyable tags (no `aws:` ones, no [`REPLACES_TAG`]).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A backup image of a gateway (`DescribeImages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Image id (`ami-…`).
    pub id: String,
    /// Image name (unique per account and Region).
    pub name: String,
    /// State name: `pending`, `available`, `failed`, `disabled`, …
    pub state: String,
    /// Creation time, when reported.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    /// EBS snapshots of its block device mappings (deleted with it).
    pub snapshot_ids: Vec<String>,
}

impl Image {
    /// `available`: launchable, a good backup.
    pub fn is_available(&self) -> bool {
        self.state == "available"
    }

    /// `pending`: still being created.
    pub fn is_pending(&self) -> bool {
        self.state == "pending"
    }
}

/// An Elastic IP (`DescribeAddresses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// Allocation id (`eipalloc-…`).
    pub allocation_id: String,
    /// The public address customers know.
    pub public_ip: Option<String>,
    /// The instance it is associated with, if any.
    pub instance_id: Option<String>,
    /// Its [`GATEWAY_ID_TAG`] value, if tagged.
    pub gateway_id: Option<String>,
}

/// Where a gateway is in its check / reboot / recovery cycle (the state row's `phase`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Serving, or sick fewer than the threshold times.
    Healthy,
    /// Rebooted once at `at` because it was sick.
    Rebooted {
        /// When the reboot was decided.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// `RebootInstances` succeeded (recorded after the call; `false`: the next run sends
        /// it again).
        sent: bool,
    },
    /// Being replaced.
    Recovering(Recovery),
}

/// An unfinished recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// The instance being replaced.
    pub failed_instance: String,
    /// The replacement, once `RunInstances` answered.
    pub replacement: Option<String>,
    /// Launch attempts that failed so far (a replacement that died before running); part of
    /// the `ClientToken`, so each attempt launches anew.
    pub attempt: u32,
    /// Why.
    pub reason: String,
    /// When the recovery began.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// A recovery lock: one invocation at a time works on a gateway's recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// Random id of the holding invocation.
    pub owner: String,
    /// The lock lapses at this instant.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// One gateway's state row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayRecord {
    /// The gateway id (partition key).
    pub gateway_id: String,
    /// The instance currently serving as the gateway.
    pub instance_id: String,
    /// Its Elastic IP allocation, as last seen associated (moved to a replacement).
    pub allocation_id: Option<String>,
    /// Check / reboot / recovery phase.
    pub phase: Phase,
    /// Consecutive failed health-URL checks.
    pub health_failures: u32,
    /// Recovery lock, if one was taken and not released.
    pub lock: Option<Lock>,
    /// The current instance's launch settings as last observed (adopted or healthy).
    pub launch: Option<SavedLaunch>,
    /// An alarm recorded with the end of a recovery and not yet confirmed published:
    /// published (again) by the next run, then cleared.
    pub alarm_pending: Option<PendingAlarm>,
}

/// An alarm to publish, kept in the row until published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAlarm {
    /// Subject.
    pub subject: String,
    /// Message (JSON).
    pub message: serde_json::Value,
}

impl GatewayRecord {
    /// A fresh row: `instance_id` healthy, no failures.
    pub fn new(gateway_id: &str, instance_id: &str, allocation_id: Option<String>) -> Self {
        Self {
            gateway_id: gateway_id.to_owned(),
            instance_id: instance_id.to_owned(),
            allocation_id,
            phase: Phase::Healthy,
            health_failures: 0,
            lock: None,
            launch: None,
            alarm_pending: None,
        }
    }

    /// The unfinished recovery, if any.
    pub fn recovery(&self) -> Option<&Recovery> {
        match &self.phase {
            Phase::Recovering(r) => Some(r),
            _ => None,
        }
    }
}
