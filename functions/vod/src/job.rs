//! The MediaConvert job of an asset (MediaConvert API `CreateJob`, `JobSettings`): one HLS
//! ABR group, one MP4 file group and one frame-capture (thumbnail) group, all reading the
//! source object and writing under `outputs/<asset-id>/`.

use crate::presets::{AudioSpec, Presets, VideoRendition};
use aws_sdk_mediaconvert::error::{DisplayErrorContext, SdkError};
use aws_sdk_mediaconvert::operation::create_job::CreateJobError;
use aws_sdk_mediaconvert::types::*;
use std::collections::HashMap;
use streamstack_core::asset::{output_prefix, EncodeSettings, SourceObject};
use thiserror::Error;

/// `UserMetadata` key carrying the asset id (the job-state function reads it back).
pub const META_ASSET_ID: &str = "streamstack-asset-id";
/// `UserMetadata` key carrying the stack name (the EventBridge rule filters on it).
pub const META_STACK: &str = "streamstack-stack";
/// `UserMetadata` key carrying the asset's playback (`public` | `signed`): where its outputs go.
pub const META_PLAYBACK: &str = "streamstack-playback";
/// Name of the one audio selector of the input.
const AUDIO_SELECTOR: &str = "Audio Selector 1";

/// Everything of a `CreateJob` call except the role and queue, which come from config.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Idempotency token (the asset id): MediaConvert returns the existing job for a repeated
    /// token instead of creating a second one.
    pub client_request_token: String,
    /// `streamstack-asset-id` and `streamstack-stack`.
    pub user_metadata: HashMap<String, String>,
    /// Inputs and output groups.
    pub settings: JobSettings,
}

/// A `CreateJob` failure, classified.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// Throttling, a 5xx answer, or no answer at all: try again later.
    #[error("retryable CreateJob failure: {0}")]
    Retryable(String),
    /// MediaConvert refused the request (400/403/404/409): retrying cannot help.
    #[error("CreateJob refused: {0}")]
    Permanent(String),
}

impl From<SdkError<CreateJobError>> for SubmitError {
    fn from(e: SdkError<CreateJobError>) -> Self {
        let text = DisplayErrorContext(&e).to_string();
        match &e {
            SdkError::ServiceError(service) => match service.err() {
                CreateJobError::TooManyRequestsException(_)
                | CreateJobError::InternalServerErrorException(_) => Self::Retryable(text),
                _ if service.raw().status().is_server_error() => Self::Retryable(text),
                _ => Self::Permanent(text),
            },
            _ => Self::Retryable(text),
        }
    }
}

/// GOP length, in seconds, for `segment_length`: the longest GOP of at most 2 s (Apple HLS
/// authoring: keyframes at least every 2 s) that divides the segment evenly, so every
/// segment starts with an IDR frame.
pub fn gop_seconds(segment_length: u32) -> f64 {
    let gops = segment_length.div_ceil(2).max(1);
    f64::from(segment_length.max(1)) / f64::from(gops)
}

/// Builds the job of asset `asset_id` made from `source` with `settings`.
///
/// Returns `None` when `settings.ladder` is not one of `presets`' ladders (settings are
/// resolved against the same presets, so this does not happen in practice).
pub fn job_request(
    asset_id: &str,
    source: &SourceObject,
    settings: &EncodeSettings,
    presets: &Presets,
    stack: &str,
) -> Option<JobRequest> {
    let ladder = presets.ladder(&settings.ladder)?;
    let destination = |kind: &str| {
        format!("s3://{}/{}", source.bucket, output_prefix(asset_id, settings.playback, kind))
    };
    let gop = gop_seconds(settings.segment_length);

    let hls = OutputGroup::builder()
        .name("HLS")
        .output_group_settings(
            OutputGroupSettings::builder()
                .r#type(OutputGroupType::HlsGroupSettings)
                .hls_group_settings(
                    HlsGroupSettings::builder()
                        .destination(destination("hls"))
                        .segment_length(settings.segment_length as i32)
                        .segment_length_control(HlsSegmentLengthControl::GopMultiple)
                        .min_segment_length(0)
                        .segment_control(HlsSegmentControl::SegmentedFiles)
                        .output_selection(HlsOutputSelection::ManifestsAndSegments)
                        .directory_structure(HlsDirectoryStructure::SingleDirectory)
                        .manifest_duration_format(HlsManifestDurationFormat::FloatingPoint)
                        .codec_specification(HlsCodecSpecification::Rfc4281)
                        .stream_inf_resolution(HlsStreamInfResolution::Include)
                        .client_cache(HlsClientCache::Enabled)
                        .program_date_time(HlsProgramDateTime::Exclude)
                        .build(),
                )
                .build(),
        )
        .set_outputs(Some(
            ladder
                .iter()
                .map(|r| {
                    Output::builder()
                        .name_modifier(format!("_{}p", r.height))
                        .container_settings(
                            ContainerSettings::builder()
                                .container(ContainerType::M3U8)
                                .m3u8_settings(M3u8Settings::builder().build())
                                .build(),
                        )
                        .video_description(h264(r, gop))
                        .audio_descriptions(aac(&presets.audio))
                        .output_settings(
                            OutputSettings::builder()
                                .hls_settings(HlsSettings::builder().build())
                                .build(),
                        )
                        .build()
                })
                .collect(),
        ))
        .build();

    let mp4 = OutputGroup::builder()
        .name("MP4")
        .output_group_settings(file_group(destination("mp4")))
        .outputs(
            Output::builder()
                .name_modifier(format!("_{}p", presets.mp4.height))
                .container_settings(
                    ContainerSettings::builder()
                        .container(ContainerType::Mp4)
                        .mp4_settings(Mp4Settings::builder().build())
                        .build(),
                )
                .video_description(h264(&presets.mp4, gop))
                .audio_descriptions(aac(&presets.audio))
                .build(),
        )
        .build();

    let t = &presets.thumbnail;
    let thumbnails = OutputGroup::builder()
        .name("Thumbnails")
        .output_group_settings(file_group(destination("thumbnails")))
        .outputs(
            Output::builder()
                .name_modifier("_thumb")
                .container_settings(
                    ContainerSettings::builder().container(ContainerType::Raw).build(),
                )
                .video_description(
                    VideoDescription::builder()
                        .width(t.width as i32)
                        .height(t.height as i32)
                        .codec_settings(
                            VideoCodecSettings::builder()
                                .codec(VideoCodec::FrameCapture)
                                .frame_capture_settings(
                                    FrameCaptureSettings::builder()
                                        .framerate_numerator(1)
                                        .framerate_denominator(settings.thumbnail_interval as i32)
                                        .max_captures(10_000_000)
                                        .quality(t.quality as i32)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();

    let input = Input::builder()
        .file_input(source.s3_url())
        .timecode_source(InputTimecodeSource::Zerobased)
        .video_selector(VideoSelector::builder().build())
        .audio_selectors(
            AUDIO_SELECTOR,
            AudioSelector::builder().default_selection(AudioDefaultSelection::Default).build(),
        )
        .build();

    Some(JobRequest {
        client_request_token: asset_id.to_owned(),
        user_metadata: HashMap::from([
            (META_ASSET_ID.to_owned(), asset_id.to_owned()),
            (META_STACK.to_owned(), stack.to_owned()),
            (META_PLAYBACK.to_owned(), settings.playback.as_str().to_owned()),
        ]),
        settings: JobSettings::builder()
            .timecode_config(TimecodeConfig::builder().source(TimecodeSource::Zerobased).build())
            .inputs(input)
            .output_groups(hls)
            .output_groups(mp4)
            .output_groups(thumbnails)
            .build(),
    })
}

fn file_group(destination: String) -> OutputGroupSettings {
    OutputGroupSettings::builder()
        .r#type(OutputGroupType::FileGroupSettings)
        .file_group_settings(FileGroupSettings::builder().destination(destination).build())
        .build()
}

fn h264(r: &VideoRendition, gop_seconds: f64) -> VideoDescription {
    VideoDescription::builder()
        .width(r.width as i32)
        .height(r.height as i32)
        .codec_settings(
            VideoCodecSettings::builder()
                .codec(VideoCodec::H264)
                .h264_settings(
                    H264Settings::builder()
                        .rate_control_mode(H264RateControlMode::Qvbr)
                        .qvbr_settings(
                            H264QvbrSettings::builder()
                                .qvbr_quality_level(r.qvbr_quality_level as i32)
                                .build(),
                        )
                        .max_bitrate(r.max_bitrate as i32)
                        .codec_profile(H264CodecProfile::High)
                        .codec_level(H264CodecLevel::Auto)
                        .gop_size(gop_seconds)
                        .gop_size_units(H264GopSizeUnits::Seconds)
                        .scene_change_detect(H264SceneChangeDetect::TransitionDetection)
                        .framerate_control(H264FramerateControl::InitializeFromSource)
                        .par_control(H264ParControl::InitializeFromSource)
                        .build(),
                )
                .build(),
        )
        .build()
}

fn aac(a: &AudioSpec) -> AudioDescription {
    AudioDescription::builder()
        .audio_source_name(AUDIO_SELECTOR)
        .codec_settings(
            AudioCodecSettings::builder()
                .codec(AudioCodec::Aac)
                .aac_settings(
                    AacSettings::builder()
                        .bitrate(a.bitrate as i32)
                        .coding_mode(AacCodingMode::CodingMode20)
                        .sample_rate(a.sample_rate as i32)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// Sends `request` as `CreateJob` with the service `role` (ARN MediaConvert assumes to read
/// inputs and write outputs) on `queue` (default queue when `None`); returns the job id.
///
/// The client retries throttling and 5xx answers itself
/// ([`streamstack_core::aws::MEDIACONVERT_MAX_ATTEMPTS`]); what remains is classified.
///
/// # Errors
/// [`SubmitError::Retryable`] or [`SubmitError::Permanent`].
pub async fn submit(
    client: &aws_sdk_mediaconvert::Client,
    role: &str,
    queue: Option<&str>,
    request: JobRequest,
) -> Result<String, SubmitError> {
    let out = client
        .create_job()
        .role(role)
        .set_queue(queue.map(str::to_owned))
        .client_request_token(request.client_request_token)
        .set_user_metadata(Some(request.user_metadata))
        .settings(request.settings)
        .status_update_interval(StatusUpdateInterval::Seconds60)
        .send()
        .await?;
    out.job
        .and_then(|j| j.id)
        .ok_or_else(|| SubmitError::Retryable("CreateJob answered without a job id".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gops_divide_segments_and_stay_within_two_seconds() {
        for seg in 1..=30u32 {
            let gop = gop_seconds(seg);
            let n = f64::from(seg) / gop;
            assert!((1.0..=2.0).contains(&gop), "{seg}: {gop}");
            assert!((n - n.round()).abs() < 1e-9, "{seg}: {n}");
        }
        assert_eq!(gop_seconds(6), 2.0);
    }
}
