//! Encoding presets as data: named ABR ladders, the MP4 rendition, thumbnails and audio.
//!
//! The built-in presets are `functions/vod/presets.json`; a deployer replaces them without a
//! code change through the `VOD_PRESETS` environment variable (the template's `VodPresets`
//! parameter), which holds a JSON document of the same shape.

use serde::Deserialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// The presets compiled into the binary (`functions/vod/presets.json`).
pub const BUILTIN_PRESETS_JSON: &str = include_str!("../presets.json");

/// A preset document that does not parse or breaks a rule.
#[derive(Debug, Error)]
#[error("invalid presets: {0}")]
pub struct PresetError(pub String);

/// One H.264 rendition: frame size and QVBR ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRendition {
    /// Frame width, in pixels (even, 32..=4096).
    pub width: u32,
    /// Frame height, in pixels (even, 32..=2304); names the rendition (`_<height>p`).
    pub height: u32,
    /// QVBR maximum bitrate, in bits per second (1000..=50_000_000).
    pub max_bitrate: u32,
    /// QVBR quality level 1..=10 (MediaConvert `QvbrQualityLevel`); default 7.
    #[serde(default = "default_qvbr")]
    pub qvbr_quality_level: u32,
}

fn default_qvbr() -> u32 {
    7
}

/// Frame-capture (thumbnail) output: JPEG size and quality.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailSpec {
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
    /// JPEG quality 1..=100.
    pub quality: u32,
}

/// AAC audio of every output with sound.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSpec {
    /// Bitrate, in bits per second (AAC-LC stereo: 64_000..=320_000).
    pub bitrate: u32,
    /// Sample rate, in Hz (e.g. 48_000).
    pub sample_rate: u32,
}

/// The whole preset document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    /// Ladder used when an upload names none.
    pub default_ladder: String,
    /// Named HLS ABR ladders, renditions lowest first.
    pub ladders: BTreeMap<String, Vec<VideoRendition>>,
    /// The MP4 file rendition.
    pub mp4: VideoRendition,
    /// Thumbnail output.
    pub thumbnail: ThumbnailSpec,
    /// Audio of the HLS and MP4 outputs.
    pub audio: AudioSpec,
}

impl Presets {
    /// The built-in presets.
    ///
    /// # Panics
    /// Never in a built binary: `presets.json` is checked by this crate's unit tests.
    pub fn builtin() -> Self {
        Self::from_json(BUILTIN_PRESETS_JSON).expect("built-in presets.json is valid")
    }

    /// Parses and validates a preset document.
    ///
    /// # Errors
    /// [`PresetError`] naming the JSON path and the broken rule.
    pub fn from_json(text: &str) -> Result<Self, PresetError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let presets: Presets = serde_path_to_error::deserialize(de)
            .map_err(|e| PresetError(format!("{}: {}", e.path(), e.inner())))?;
        presets.validate()?;
        Ok(presets)
    }

    /// The renditions of ladder `name`, if it exists.
    pub fn ladder(&self, name: &str) -> Option<&[VideoRendition]> {
        self.ladders.get(name).map(Vec::as_slice)
    }

    fn validate(&self) -> Result<(), PresetError> {
        if self.ladder(&self.default_ladder).is_none() {
            return Err(PresetError(format!(
                "default_ladder: {:?} is not one of the ladders",
                self.default_ladder
            )));
        }
        for (name, ladder) in &self.ladders {
            if ladder.is_empty() {
                return Err(PresetError(format!("ladders.{name}: needs at least one rendition")));
            }
            let mut heights = std::collections::BTreeSet::new();
            for (i, r) in ladder.iter().enumerate() {
                check_video(&format!("ladders.{name}[{i}]"), r)?;
                if !heights.insert(r.height) {
                    return Err(PresetError(format!(
                        "ladders.{name}[{i}].height: {} appears twice (it names the rendition)",
                        r.height
                    )));
                }
            }
        }
        check_video("mp4", &self.mp4)?;
        let t = &self.thumbnail;
        if !(16..=4096).contains(&t.width) || !(16..=4096).contains(&t.height) {
            return Err(PresetError("thumbnail: width/height must be 16..=4096".into()));
        }
        if !(1..=100).contains(&t.quality) {
            return Err(PresetError("thumbnail.quality: must be 1..=100".into()));
        }
        if !(64_000..=320_000).contains(&self.audio.bitrate) {
            return Err(PresetError("audio.bitrate: must be 64000..=320000".into()));
        }
        if ![22_050, 32_000, 44_100, 48_000].contains(&self.audio.sample_rate) {
            return Err(PresetError(
                "audio.sample_rate: must be 22050, 32000, 44100 or 48000".into(),
            ));
        }
        Ok(())
    }
}

fn check_video(path: &str, r: &VideoRendition) -> Result<(), PresetError> {
    let even = |v: u32, lo: u32, hi: u32| v.is_multiple_of(2) && (lo..=hi).contains(&v);
    if !even(r.width, 32, 4096) || !even(r.height, 32, 2304) {
        return Err(PresetError(format!(
            "{path}: {}x{} must be even, 32..=4096 wide and 32..=2304 high",
            r.width, r.height
        )));
    }
    if !(1000..=50_000_000).contains(&r.max_bitrate) {
        return Err(PresetError(format!("{path}.max_bitrate: must be 1000..=50000000 b/s")));
    }
    if !(1..=10).contains(&r.qvbr_quality_level) {
        return Err(PresetError(format!("{path}.qvbr_quality_level: must be 1..=10")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_is_the_documented_ladder() {
        let p = Presets::builtin();
        let ladder: Vec<_> = p
            .ladder("default")
            .unwrap()
            .iter()
            .map(|r| (r.width, r.height, r.max_bitrate))
            .collect();
        assert_eq!(
            ladder,
            [
                (640, 360, 400_000),
                (854, 480, 600_000),
                (1280, 720, 1_000_000),
                (1920, 1080, 2_000_000)
            ]
        );
        assert_eq!((p.mp4.width, p.mp4.height), (1280, 720));
        assert_eq!(p.audio.sample_rate, 48_000);
    }

    #[test]
    fn rejects_broken_documents_with_a_path() {
        let base: serde_json::Value = serde_json::from_str(BUILTIN_PRESETS_JSON).unwrap();
        let cases = [
            ("/default_ladder", serde_json::json!("nope"), "default_ladder"),
            ("/ladders/sd/0/width", serde_json::json!(641), "ladders.sd[0]"),
            ("/ladders/sd/1/height", serde_json::json!(360), "appears twice"),
            ("/mp4/max_bitrate", serde_json::json!(5), "mp4.max_bitrate"),
            ("/ladders/sd", serde_json::json!([]), "at least one"),
            ("/ladders/sd/0/width", serde_json::json!("wide"), "ladders.sd[0].width"),
        ];
        for (pointer, value, expect) in cases {
            let mut doc = base.clone();
            *doc.pointer_mut(pointer).unwrap() = value;
            let err = Presets::from_json(&doc.to_string()).unwrap_err().to_string();
            assert!(err.contains(expect), "{pointer}: {err}");
        }
    }
}
