//! Per-upload encoding choices: defaults, overridden by S3 object metadata, overridden by a
//! sidecar `inputs/<name>.json` (uploaded before the media file).
//!
//! | sidecar field | object metadata | meaning |
//! |---|---|---|
//! | `ladder` | `x-amz-meta-streamstack-ladder` | name of a ladder in the presets |
//! | `segment_length` | `x-amz-meta-streamstack-segment-length` | HLS segment length, s, 1..=30 |
//! | `thumbnail_interval` | `x-amz-meta-streamstack-thumbnail-interval` | s between thumbnails, 1..=3600 |
//! | `playback` | `x-amz-meta-streamstack-playback` | `public` or `signed` ([`Playback`]) |

use crate::presets::Presets;
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use streamstack_core::asset::EncodeSettings;
use streamstack_core::Playback;
use thiserror::Error;

/// Allowed HLS segment length, in seconds (MediaConvert `HlsGroupSettings.SegmentLength`).
pub const SEGMENT_LENGTH_RANGE: RangeInclusive<u32> = 1..=30;
/// Allowed thumbnail interval, in seconds.
pub const THUMBNAIL_INTERVAL_RANGE: RangeInclusive<u32> = 1..=3600;
/// Object metadata key (without `x-amz-meta-`) naming the ladder.
pub const META_LADDER: &str = "streamstack-ladder";
/// Object metadata key (without `x-amz-meta-`) of the segment length, seconds.
pub const META_SEGMENT_LENGTH: &str = "streamstack-segment-length";
/// Object metadata key (without `x-amz-meta-`) of the thumbnail interval, seconds.
pub const META_THUMBNAIL_INTERVAL: &str = "streamstack-thumbnail-interval";
/// Object metadata key (without `x-amz-meta-`) of the playback: `public` or `signed`.
pub const META_PLAYBACK: &str = "streamstack-playback";

/// Settings that an upload asked for and that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{origin}: {field}: {message}")]
pub struct SettingsError {
    /// Where the bad value came from, e.g. `sidecar inputs/a.json` or `object metadata`.
    pub origin: String,
    /// Field or metadata key.
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

/// Optional choices from one origin (all `None` = use what is below).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Ladder name.
    pub ladder: Option<String>,
    /// HLS segment length, seconds.
    pub segment_length: Option<u32>,
    /// Thumbnail interval, seconds.
    pub thumbnail_interval: Option<u32>,
    /// `public` or `signed`.
    pub playback: Option<Playback>,
}

impl Overrides {
    /// Parses a sidecar document (`origin` names it in errors).
    ///
    /// # Errors
    /// [`SettingsError`] for invalid JSON, unknown fields or wrong types, with the JSON path.
    pub fn from_sidecar(origin: &str, body: &[u8]) -> Result<Self, SettingsError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| SettingsError {
            origin: origin.to_owned(),
            field: match e.path().to_string() {
                p if p == "." || p == "?" => "(document)".to_owned(),
                p => p,
            },
            message: e.inner().to_string(),
        })
    }

    /// Reads the `streamstack-*` entries of S3 user metadata (keys as S3 returns them:
    /// lowercase, without `x-amz-meta-`).
    ///
    /// # Errors
    /// [`SettingsError`] for a number that does not parse.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let number = |key: &str| -> Result<Option<u32>, SettingsError> {
            meta.get(key)
                .map(|v| {
                    v.trim().parse().map_err(|_| SettingsError {
                        origin: "object metadata".into(),
                        field: format!("x-amz-meta-{key}"),
                        message: format!("expected a whole number of seconds, got {v:?}"),
                    })
                })
                .transpose()
        };
        let playback = meta
            .get(META_PLAYBACK)
            .map(|v| {
                Playback::parse(v.trim()).ok_or_else(|| SettingsError {
                    origin: "object metadata".into(),
                    field: format!("x-amz-meta-{META_PLAYBACK}"),
                    message: format!("expected public or signed, got {v:?}"),
                })
            })
            .transpose()?;
        Ok(Self {
            ladder: meta.get(META_LADDER).map(|v| v.trim().to_owned()),
            segment_length: number(META_SEGMENT_LENGTH)?,
            thumbnail_interval: number(META_THUMBNAIL_INTERVAL)?,
            playback,
        })
    }

    /// `self`, with `over`'s values where it has them.
    pub fn then(self, over: Overrides) -> Self {
        Self {
            ladder: over.ladder.or(self.ladder),
            segment_length: over.segment_length.or(self.segment_length),
            thumbnail_interval: over.thumbnail_interval.or(self.thumbnail_interval),
            playback: over.playback.or(self.playback),
        }
    }
}

/// Deployment-wide defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// HLS segment length, seconds.
    pub segment_length: u32,
    /// Thumbnail interval, seconds.
    pub thumbnail_interval: u32,
    /// Playback of assets whose upload does not choose (`PLAYBACK_DEFAULT`).
    pub playback: Playback,
}

/// Resolves the final settings: `choices` over `defaults`, the ladder checked against
/// `presets`; `origin` names where `choices` came from in errors.
///
/// # Errors
/// [`SettingsError`] for an unknown ladder or an out-of-range number.
pub fn resolve(
    origin: &str,
    choices: &Overrides,
    defaults: &Defaults,
    presets: &Presets,
) -> Result<EncodeSettings, SettingsError> {
    let err = |field: &str, message: String| SettingsError {
        origin: origin.to_owned(),
        field: field.to_owned(),
        message,
    };
    let ladder = choices.ladder.clone().unwrap_or_else(|| presets.default_ladder.clone());
    if presets.ladder(&ladder).is_none() {
        let known: Vec<&str> = presets.ladders.keys().map(String::as_str).collect();
        return Err(err(
            "ladder",
            format!("unknown ladder {ladder:?} (known: {})", known.join(", ")),
        ));
    }
    let in_range = |field: &str, v: u32, range: RangeInclusive<u32>| {
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(err(field, format!("{v} is outside {}..={} seconds", range.start(), range.end())))
        }
    };
    Ok(EncodeSettings {
        ladder,
        segment_length: in_range(
            "segment_length",
            choices.segment_length.unwrap_or(defaults.segment_length),
            SEGMENT_LENGTH_RANGE,
        )?,
        thumbnail_interval: in_range(
            "thumbnail_interval",
            choices.thumbnail_interval.unwrap_or(defaults.thumbnail_interval),
            THUMBNAIL_INTERVAL_RANGE,
        )?,
        playback: choices.playback.unwrap_or(defaults.playback),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults =
        Defaults { segment_length: 6, thumbnail_interval: 10, playback: Playback::Public };

    #[test]
    fn sidecar_overrides_metadata_overrides_defaults() {
        let meta = HashMap::from([
            (META_LADDER.to_owned(), "sd".to_owned()),
            (META_SEGMENT_LENGTH.to_owned(), "4".to_owned()),
        ]);
        let sidecar =
            Overrides::from_sidecar("s", br#"{"segment_length": 2, "playback": "signed"}"#)
                .unwrap();
        let choices = Overrides::from_metadata(&meta).unwrap().then(sidecar);
        let s = resolve("x", &choices, &DEFAULTS, &Presets::builtin()).unwrap();
        assert_eq!((s.ladder.as_str(), s.segment_length, s.thumbnail_interval), ("sd", 2, 10));
        assert_eq!(s.playback, Playback::Signed);
        let meta = HashMap::from([(META_PLAYBACK.to_owned(), "signed".to_owned())]);
        assert_eq!(Overrides::from_metadata(&meta).unwrap().playback, Some(Playback::Signed));
        let meta = HashMap::from([(META_PLAYBACK.to_owned(), "private".to_owned())]);
        assert!(Overrides::from_metadata(&meta).unwrap_err().field.ends_with(META_PLAYBACK));
        let s = resolve("x", &Overrides::default(), &DEFAULTS, &Presets::builtin()).unwrap();
        assert_eq!((s.ladder.as_str(), s.segment_length), ("default", 6));
    }

    #[test]
    fn bad_choices_name_origin_and_field() {
        let e = Overrides::from_sidecar("sidecar inputs/a.json", b"{\"ladder\": 3}").unwrap_err();
        assert_eq!((e.origin.as_str(), e.field.as_str()), ("sidecar inputs/a.json", "ladder"));
        let e = Overrides::from_sidecar("s", b"{\"colour\": 1}").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e = Overrides::from_sidecar("s", b"not json").unwrap_err();
        assert_eq!(e.field, "(document)");
        let e = resolve(
            "s",
            &Overrides { ladder: Some("4k".into()), ..Default::default() },
            &DEFAULTS,
            &Presets::builtin(),
        )
        .unwrap_err();
        assert!(e.message.contains("unknown ladder \"4k\"") && e.message.contains("sd"), "{e}");
        let e = resolve(
            "s",
            &Overrides { segment_length: Some(0), ..Default::default() },
            &DEFAULTS,
            &Presets::builtin(),
        )
        .unwrap_err();
        assert_eq!(e.field, "segment_length");
        let meta = HashMap::from([(META_THUMBNAIL_INTERVAL.to_owned(), "ten".to_owned())]);
        let e = Overrides::from_metadata(&meta).unwrap_err();
        assert_eq!(e.field, "x-amz-meta-streamstack-thumbnail-interval");
    }
}
