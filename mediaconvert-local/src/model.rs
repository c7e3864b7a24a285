//! The subset of MediaConvert `JobSettings` this local service reads (MediaConvert API
//! reference, `JobSettings`, wire names in camelCase). Unknown members are ignored: the full
//! request is checked, when asked, by the model check (`--model-check`).

use serde::Deserialize;

/// `JobSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSettings {
    /// Inputs; only the first is rendered.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// Output groups.
    #[serde(default)]
    pub output_groups: Vec<OutputGroup>,
}

/// `Input`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// `s3://bucket/key` of the source.
    #[serde(default)]
    pub file_input: String,
}

/// `OutputGroup`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputGroup {
    /// Custom name.
    #[serde(default)]
    pub name: Option<String>,
    /// Group type and destination.
    #[serde(default)]
    pub output_group_settings: OutputGroupSettings,
    /// Outputs.
    #[serde(default)]
    pub outputs: Vec<Output>,
}

/// `OutputGroupSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputGroupSettings {
    /// `HLS_GROUP_SETTINGS`, `FILE_GROUP_SETTINGS`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// HLS group.
    #[serde(default)]
    pub hls_group_settings: Option<HlsGroupSettings>,
    /// File group.
    #[serde(default)]
    pub file_group_settings: Option<FileGroupSettings>,
}

/// `HlsGroupSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HlsGroupSettings {
    /// `s3://bucket/prefix/` (a trailing name part is the base name, as in MediaConvert).
    #[serde(default)]
    pub destination: String,
    /// Segment length, seconds (MediaConvert default 10).
    #[serde(default)]
    pub segment_length: Option<u32>,
}

/// `FileGroupSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileGroupSettings {
    /// `s3://bucket/prefix/`.
    #[serde(default)]
    pub destination: String,
}

/// `Output`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Appended to the input's base name in every file of the output.
    #[serde(default)]
    pub name_modifier: Option<String>,
    /// Container.
    #[serde(default)]
    pub container_settings: Option<ContainerSettings>,
    /// Video.
    #[serde(default)]
    pub video_description: Option<VideoDescription>,
    /// Audio tracks; only the first is rendered.
    #[serde(default)]
    pub audio_descriptions: Vec<AudioDescription>,
}

/// `ContainerSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSettings {
    /// `M3U8`, `MP4`, `RAW`, ...
    #[serde(default)]
    pub container: String,
}

/// `VideoDescription`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoDescription {
    /// Width, pixels (source width when absent).
    #[serde(default)]
    pub width: Option<u32>,
    /// Height, pixels (source height when absent).
    #[serde(default)]
    pub height: Option<u32>,
    /// Codec.
    #[serde(default)]
    pub codec_settings: VideoCodecSettings,
}

/// `VideoCodecSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoCodecSettings {
    /// `H_264`, `FRAME_CAPTURE`, ...
    #[serde(default)]
    pub codec: String,
    /// H.264.
    #[serde(default)]
    pub h264_settings: Option<H264Settings>,
    /// Frame capture.
    #[serde(default)]
    pub frame_capture_settings: Option<FrameCaptureSettings>,
}

/// `H264Settings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct H264Settings {
    /// `QVBR`, `CBR`, `VBR`.
    #[serde(default)]
    pub rate_control_mode: Option<String>,
    /// Peak bitrate, bits per second (QVBR, VBR).
    #[serde(default)]
    pub max_bitrate: Option<u32>,
    /// Average bitrate, bits per second (CBR, VBR).
    #[serde(default)]
    pub bitrate: Option<u32>,
    /// QVBR quality.
    #[serde(default)]
    pub qvbr_settings: Option<QvbrSettings>,
    /// GOP length in `gopSizeUnits`.
    #[serde(default)]
    pub gop_size: Option<f64>,
    /// `FRAMES` (default), `SECONDS`, `AUTO`.
    #[serde(default)]
    pub gop_size_units: Option<String>,
}

/// `H264QvbrSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QvbrSettings {
    /// 1..=10.
    #[serde(default)]
    pub qvbr_quality_level: Option<u32>,
}

/// `FrameCaptureSettings`: `framerateNumerator / framerateDenominator` captures per second.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameCaptureSettings {
    /// Captures per `framerateDenominator` seconds.
    #[serde(default)]
    pub framerate_numerator: Option<u32>,
    /// Seconds.
    #[serde(default)]
    pub framerate_denominator: Option<u32>,
    /// Most captures written.
    #[serde(default)]
    pub max_captures: Option<u32>,
    /// JPEG quality 1..=100.
    #[serde(default)]
    pub quality: Option<u32>,
}

/// `AudioDescription`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioDescription {
    /// Codec.
    #[serde(default)]
    pub codec_settings: AudioCodecSettings,
}

/// `AudioCodecSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioCodecSettings {
    /// AAC.
    #[serde(default)]
    pub aac_settings: Option<AacSettings>,
}

/// `AacSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AacSettings {
    /// Bits per second.
    #[serde(default)]
    pub bitrate: Option<u32>,
    /// Hz.
    #[serde(default)]
    pub sample_rate: Option<u32>,
}

/// Splits `s3://bucket/key` into bucket and key.
pub fn split_s3(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("s3://")?.split_once('/')
}
