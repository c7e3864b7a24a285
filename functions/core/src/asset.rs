//! VOD assets: one per uploaded source object version under `inputs/`, tracked from the
//! MediaConvert job's submission to its outputs (HLS ABR ladder, MP4, thumbnails).
//!
//! Status follows the MediaConvert job status names (`SUBMITTED`, `PROGRESSING`, `COMPLETE`,
//! `ERROR`, `CANCELED`, see the MediaConvert API `JobStatus`), preceded by `SUBMITTING` while
//! the trigger function holds the claim to create the job.

use crate::playback::Playback;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Prefix of source objects in the media bucket.
pub const INPUTS_PREFIX: &str = "inputs/";

/// Where MediaConvert writes an asset's outputs: `outputs/<asset-id>/<kind>/` (below
/// `signed/` for a signed asset, [`crate::playback::asset_prefix`]), `kind` being `hls`,
/// `mp4` or `thumbnails`.
pub fn output_prefix(asset_id: &str, playback: Playback, kind: &str) -> String {
    format!("{}/{kind}/", crate::playback::asset_prefix(asset_id, playback))
}

/// Processing status of an asset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssetStatus {
    /// Claimed by the trigger function; the MediaConvert job is being created.
    Submitting,
    /// The MediaConvert job exists and is queued.
    Submitted,
    /// MediaConvert is transcoding.
    Progressing,
    /// Every output is written (final).
    Complete,
    /// The job, or its submission, failed (final); see [`Asset::error`].
    Error,
    /// The job was canceled (final).
    Canceled,
}

impl AssetStatus {
    /// Every status, in rank order.
    pub const ALL: [AssetStatus; 6] = [
        Self::Submitting,
        Self::Submitted,
        Self::Progressing,
        Self::Complete,
        Self::Error,
        Self::Canceled,
    ];

    /// The wire/storage name, e.g. `COMPLETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitting => "SUBMITTING",
            Self::Submitted => "SUBMITTED",
            Self::Progressing => "PROGRESSING",
            Self::Complete => "COMPLETE",
            Self::Error => "ERROR",
            Self::Canceled => "CANCELED",
        }
    }

    /// Position in the life cycle: 0 submitting, 1 submitted, 2 progressing, 3 final. An asset
    /// never moves to a lower rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Submitting => 0,
            Self::Submitted => 1,
            Self::Progressing => 2,
            Self::Complete | Self::Error | Self::Canceled => 3,
        }
    }

    /// Whether no later event may change the asset (`COMPLETE`, `ERROR`, `CANCELED`).
    pub fn is_final(self) -> bool {
        self.rank() == 3
    }
}

/// The uploaded object an asset was made from, as named by its S3 event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded (e.g. `inputs/My Film.mov`).
    pub key: String,
    /// Object version, in a versioned bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The S3 event's `sequencer` (orders events of one key; identifies an upload in an
    /// unversioned bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    /// Object size, in bytes.
    pub size: u64,
}

impl SourceObject {
    /// The asset id of this object version: 32 lowercase hex characters, the first 128 bits of
    /// SHA-256 over bucket, key and the upload's identity: the version id in a versioned
    /// bucket, else the event's sequencer (S3 event notification structure,
    /// `s3.object.versionId` / `s3.object.sequencer`). Every redelivery of the same S3 event
    /// yields the same id, and so does another event of the same version (its sequencer is
    /// ignored); a new upload of the same key yields a new one.
    pub fn asset_id(&self) -> String {
        let identity = match &self.version_id {
            Some(version) => ["version", version.as_str()],
            None => ["sequencer", self.sequencer.as_deref().unwrap_or("")],
        };
        let mut h = Sha256::new();
        for part in [self.bucket.as_str(), self.key.as_str(), identity[0], identity[1]] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }

    /// `s3://<bucket>/<key>`, the form MediaConvert's `FileInput` takes.
    pub fn s3_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// Encoding choices of one asset (resolved from defaults, object metadata and sidecar).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeSettings {
    /// Name of the ABR ladder preset.
    pub ladder: String,
    /// Nominal HLS segment length, in seconds.
    pub segment_length: u32,
    /// One thumbnail every this many seconds.
    pub thumbnail_interval: u32,
    /// `public` or `signed`: where the outputs are written and how they are played; assets
    /// stored before playback authorization are public.
    #[serde(default = "public")]
    pub playback: Playback,
}

fn public() -> Playback {
    Playback::Public
}

/// One HLS rendition as MediaConvert reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Frame width, in pixels.
    pub width: u32,
    /// Frame height, in pixels.
    pub height: u32,
    /// Average video bitrate, in bits per second (when reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_bitrate: Option<u64>,
    /// Object key of the rendition's media playlist.
    pub playlist_key: String,
}

/// Outputs of a `COMPLETE` asset, as object keys in the media bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetOutputs {
    /// Key of the HLS master (multivariant) playlist (RFC 8216 §4.3.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_master_key: Option<String>,
    /// HLS renditions, lowest height first.
    #[serde(default)]
    pub renditions: Vec<Rendition>,
    /// Key of the MP4 file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mp4_key: Option<String>,
    /// Keys of the thumbnail JPEGs, in capture order.
    #[serde(default)]
    pub thumbnail_keys: Vec<String>,
    /// Duration, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Why an asset is in `ERROR`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetError {
    /// MediaConvert's numeric `errorCode` as text, or one of ours: `InvalidSettings`,
    /// `SubmitFailed`, `SourceMissing`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// A VOD asset as stored (DynamoDB item, partition key `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// [`SourceObject::asset_id`] of the source.
    pub id: String,
    /// Processing status.
    pub status: AssetStatus,
    /// The uploaded object.
    pub source: SourceObject,
    /// Encoding choices, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<EncodeSettings>,
    /// MediaConvert job id, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `jobPercentComplete` of the last status update, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_percent: Option<u8>,
    /// Outputs, when `COMPLETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<AssetOutputs>,
    /// Failure reason, when `ERROR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AssetError>,
    /// When the asset was first claimed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// `detail.timestamp` (Unix milliseconds) of the last applied MediaConvert event; later
    /// events with an older timestamp are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_event_ms: Option<u64>,
    /// Unix milliseconds until which a trigger invocation holds the submission claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_until_ms: Option<u64>,
}

impl Asset {
    /// A new `SUBMITTING` asset for `source`, claimed until `claim_until_ms`.
    pub fn submitting(source: SourceObject, now: OffsetDateTime, claim_until_ms: u64) -> Self {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self {
            id: source.asset_id(),
            status: AssetStatus::Submitting,
            source,
            settings: None,
            job_id: None,
            progress_percent: None,
            outputs: None,
            error: None,
            created_at: now,
            updated_at: now,
            job_event_ms: None,
            claim_until_ms: Some(claim_until_ms),
        }
    }
}

/// Whether `id` can be an asset id (32 lowercase hex characters); anything else is rejected
/// before it reaches DynamoDB.
pub fn is_valid_asset_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_stored_before_playback_authorization_are_public() {
        let old = r#"{"ladder":"default","segment_length":6,"thumbnail_interval":10}"#;
        let s: EncodeSettings = serde_json::from_str(old).unwrap();
        assert_eq!(s.playback, Playback::Public);
        assert_eq!(output_prefix("a", Playback::Signed, "hls"), "signed/outputs/a/hls/");
    }

    fn src(version: Option<&str>, sequencer: Option<&str>) -> SourceObject {
        SourceObject {
            bucket: "b".into(),
            key: "inputs/a.mp4".into(),
            version_id: version.map(Into::into),
            sequencer: sequencer.map(Into::into),
            size: 1,
        }
    }

    #[test]
    fn asset_id_is_stable_per_version_and_valid() {
        let a = src(Some("v1"), Some("s1")).asset_id();
        assert_eq!(a, src(Some("v1"), Some("s1")).asset_id());
        assert!(is_valid_asset_id(&a), "{a}");
        assert_ne!(a, src(Some("v2"), Some("s1")).asset_id());
        // Another event of the same version (a new sequencer) is the same asset ...
        assert_eq!(a, src(Some("v1"), Some("s2")).asset_id());
        assert_eq!(a, src(Some("v1"), None).asset_id());
        // ... while without versions each upload (sequencer) is its own.
        assert_ne!(src(None, Some("s1")).asset_id(), src(None, Some("s2")).asset_id());
        // A version id never collides with a sequencer of the same text.
        assert_ne!(src(Some("s1"), None).asset_id(), src(None, Some("s1")).asset_id());
        // Field boundaries are length-prefixed: ("ab","c") and ("a","bc") differ.
        let mut x = src(None, None);
        x.bucket = "ab".into();
        x.key = "c".into();
        let mut y = x.clone();
        y.bucket = "a".into();
        y.key = "bc".into();
        assert_ne!(x.asset_id(), y.asset_id());
    }

    #[test]
    fn ranks_never_go_back_from_final() {
        assert!(AssetStatus::Complete.is_final() && AssetStatus::Error.is_final());
        assert!(AssetStatus::Progressing.rank() > AssetStatus::Submitted.rank());
        for s in AssetStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json.trim_matches('"'), s.as_str());
        }
    }
}
