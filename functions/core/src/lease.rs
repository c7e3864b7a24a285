//! Publish lease: which streamer process publishes into a channel, and until when.
//!
//! At most one publisher is live on a channel across every streamer task sharing the channel
//! table. The lease lives on the channel item itself (DynamoDB, one item per channel):
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `state` | S | `idle` or `live` |
//! | `lease_owner` | S | the streamer task/process holding the lease (for operators) |
//! | `lease_session` | S | unique per publish; every renew and release must name it |
//! | `lease_expires_at` | N | unix milliseconds after which the lease has lapsed |
//! | `last_session` | S | the latest session that claimed the channel (kept after release) |
//!
//! Protocol (each step one conditional `UpdateItem`, never a `PutItem`, so the streamer can
//! never overwrite a secret or a configuration change):
//! 1. **claim** when a publish is authorized: `SET state = live` + the lease attributes, if the
//!    item exists, its secret is still the one the push URL was verified with, and the channel
//!    is idle, its lease lapsed, or the lease is already this session's (an SDK retry of a
//!    claim whose answer was lost).
//! 2. **renew** every [`LEASE_RENEW_INTERVAL`]: `SET lease_expires_at` to now +
//!    [`LEASE_DURATION`] if `lease_session` is still ours; the returned item lets the streamer
//!    re-check the channel (deleted, expired, key rotated -> end the publish).
//! 3. **release** when the publish ends: `SET state = idle REMOVE` the lease attributes, if the
//!    lease is still ours.
//!
//! A process killed without releasing leaves `state = live` behind, but the channel reads as
//! `idle` once `lease_expires_at` has passed (at most [`LEASE_DURATION`] later) and the next
//! claim succeeds. Lease writes do not bump the channel's `version`, which counts
//! configuration changes only (see [`crate::Channel::version`]).

use crate::domain::Secret;
#[cfg(feature = "dynamodb")]
use aws_sdk_dynamodb::types::AttributeValue;
#[cfg(feature = "dynamodb")]
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Name of the channels table's keys-only index on `lease_owner` (sparse: only leased
/// channels carry the attribute): the health handler finds the channels a stopped streamer
/// task held without a scan ([`crate::DynamoChannelStore::leased_by`]).
pub const LEASE_OWNER_INDEX: &str = "lease-owner-index";

/// Recommended lease length: 30 s. A channel whose publisher process died reads `idle` (and
/// accepts a new publish) at most this long after the last renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(30);

/// Recommended renew interval: 10 s, so two consecutive renewals can fail (store slow or
/// briefly down) before a live publish loses its [`LEASE_DURATION`] lease.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// A request to become the channel's one live publisher
/// ([`crate::ChannelStore::claim_publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim {
    /// Streamer task/process id, stored as `lease_owner` (shown to operators, not checked).
    pub owner: String,
    /// Unique id of this publish, stored as `lease_session`; renew and release must name it.
    pub session: String,
    /// When the lease lapses unless renewed (stored as unix milliseconds).
    pub expires_at: OffsetDateTime,
    /// The caller's clock: a lease whose expiry is before this instant may be taken over.
    pub now: OffsetDateTime,
    /// The secret the push URL was verified with; the claim is refused with
    /// [`crate::StoreError::KeyRotated`] when the stored secret differs.
    pub secret: Secret,
}

impl LeaseClaim {
    /// A claim by `owner` for `session`, authorized with `secret`, lasting [`LEASE_DURATION`]
    /// from `now`.
    pub fn new(
        owner: impl Into<String>,
        session: impl Into<String>,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            owner: owner.into(),
            session: session.into(),
            expires_at: now + LEASE_DURATION,
            now,
            secret,
        }
    }
}

/// The lease of a live channel, as read from its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishLease {
    /// Streamer task/process holding it (`lease_owner`).
    pub owner: String,
    /// Publish session holding it (`lease_session`).
    pub session: String,
    /// When it lapses unless renewed (`lease_expires_at`, millisecond precision).
    pub expires_at: OffsetDateTime,
}

/// `t` as unix milliseconds, the unit of `lease_expires_at`.
pub fn unix_millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos().div_euclid(1_000_000)
}

/// The instant `ms` unix milliseconds denote; `None` when out of `time`'s range.
pub fn from_unix_millis(ms: i128) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ms.checked_mul(1_000_000)?).ok()
}

/// `(condition, update)` expressions of the claim `UpdateItem`.
///
/// Values: `:secret` (S, hex), `:idle`, `:live` (S), `:now`, `:expires` (N, unix ms),
/// `:owner`, `:session` (S).
pub fn claim_expressions() -> (&'static str, &'static str) {
    (
        "attribute_exists(#id) AND #secret = :secret AND (#state = :idle \
         OR attribute_not_exists(#lease_expires_at) OR #lease_expires_at < :now \
         OR #lease_session = :session)",
        "SET #state = :live, #lease_owner = :owner, #lease_session = :session, \
         #lease_expires_at = :expires, #last_session = :session REMOVE #relay_status",
    )
}

/// `(condition, update)` expressions of the renew `UpdateItem`.
///
/// Values: `:session` (S), `:expires` (N, unix ms).
pub fn renew_expressions() -> (&'static str, &'static str) {
    ("#lease_session = :session", "SET #lease_expires_at = :expires")
}

/// `(condition, update)` expressions of the release `UpdateItem`.
///
/// Values: `:session`, `:idle` (S).
pub fn release_expressions() -> (&'static str, &'static str) {
    (
        "#lease_session = :session",
        "SET #state = :idle REMOVE #lease_owner, #lease_session, #lease_expires_at, \
         #relay_status",
    )
}

/// `ExpressionAttributeNames` for `expressions`: every `#name` placeholder they use, mapped
/// to `name`. DynamoDB refuses both undefined and unused placeholders, so the map is derived
/// from the expressions rather than written next to them.
#[cfg(feature = "dynamodb")]
pub(crate) fn placeholder_names(expressions: &[&str]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for expression in expressions {
        let mut rest = *expression;
        while let Some(at) = rest.find('#') {
            let tail = &rest[at + 1..];
            let len =
                tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            names.insert(format!("#{}", &tail[..len]), tail[..len].to_owned());
            rest = &tail[len..];
        }
    }
    names
}

/// A unix-milliseconds `N` attribute.
#[cfg(feature = "dynamodb")]
pub(crate) fn millis_value(t: OffsetDateTime) -> AttributeValue {
    AttributeValue::N(unix_millis(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn claim_takes_idle_lapsed_leaseless_or_own_lease_only() {
        let (condition, update) = claim_expressions();
        assert_eq!(
            condition,
            "attribute_exists(#id) AND #secret = :secret AND (#state = :idle \
             OR attribute_not_exists(#lease_expires_at) OR #lease_expires_at < :now \
             OR #lease_session = :session)"
        );
        assert_eq!(
            update,
            "SET #state = :live, #lease_owner = :owner, #lease_session = :session, \
             #lease_expires_at = :expires, #last_session = :session REMOVE #relay_status"
        );
        assert!(!update.contains("version"), "lease writes must not bump version");
    }

    #[test]
    fn renew_and_release_only_by_the_holding_session() {
        assert_eq!(
            renew_expressions(),
            ("#lease_session = :session", "SET #lease_expires_at = :expires")
        );
        let (condition, update) = release_expressions();
        assert_eq!(condition, "#lease_session = :session");
        assert_eq!(
            update,
            "SET #state = :idle REMOVE #lease_owner, #lease_session, #lease_expires_at, \
             #relay_status"
        );
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn placeholders_are_exactly_those_used() {
        let (condition, update) = claim_expressions();
        let names = placeholder_names(&[condition, update]);
        let mut keys: Vec<_> = names.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "#id",
                "#last_session",
                "#lease_expires_at",
                "#lease_owner",
                "#lease_session",
                "#relay_status",
                "#secret",
                "#state"
            ]
        );
        assert_eq!(names["#lease_expires_at"], "lease_expires_at");
    }

    #[test]
    fn millis_round_trip_and_truncate() {
        let t = datetime!(2026-01-02 03:04:05.678_9 UTC);
        assert_eq!(unix_millis(t), 1_767_323_045_678);
        assert_eq!(from_unix_millis(unix_millis(t)), Some(datetime!(2026-01-02 03:04:05.678 UTC)));
        assert_eq!(unix_millis(datetime!(1969-12-31 23:59:59.999_5 UTC)), -1);
        assert_eq!(from_unix_millis(i128::MAX), None);
    }

    #[test]
    fn claim_lasts_the_recommended_lease() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let claim = LeaseClaim::new("task-1", "s1", Secret([7; 32]), now);
        assert_eq!(claim.expires_at - now, time::Duration::seconds(30));
        assert!(LEASE_RENEW_INTERVAL * 3 <= LEASE_DURATION);
    }
}
