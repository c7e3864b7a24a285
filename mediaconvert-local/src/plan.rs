//! Job settings -> one ffmpeg invocation and the files it writes, with MediaConvert's names
//! (`<input base name><nameModifier>.m3u8`, `…_00001.ts`, `<base><nameModifier>.mp4`,
//! `<base><nameModifier>.0000000.jpg`, and the HLS master playlist `<base>.m3u8`). Pure.
//!
//! Approximations of MediaConvert's encoder: QVBR is libx264's CRF (`51 - 4 × quality
//! level`: level 7 -> CRF 23) capped at `maxBitrate` with a one-second VBV buffer; GOPs are
//! forced key frames every `gopSize` seconds (or `-g` frames); audio is AAC-LC stereo.

use crate::model::{split_s3, JobSettings, Output};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What the source is, from ffprobe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Seconds.
    pub duration_s: f64,
    /// Source frame width, pixels.
    pub width: u32,
    /// Source frame height, pixels.
    pub height: u32,
    /// Whether the source has an audio stream.
    pub has_audio: bool,
}

/// Settings this service cannot render.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// The kind of an output group, as `outputGroupDetails[].type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// `HLS_GROUP`.
    Hls,
    /// `FILE_GROUP`.
    File,
}

impl GroupKind {
    /// The event's name of the group type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hls => "HLS_GROUP",
            Self::File => "FILE_GROUP",
        }
    }
}

/// One output of a group and its main file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// Main file name: the variant playlist, the MP4, or the frame captures' pattern
    /// (`…%07d.jpg`).
    pub file: String,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// A frame-capture output (JPEG sequence).
    pub frame_capture: bool,
}

/// One output group: where its files are rendered and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Group type.
    pub kind: GroupKind,
    /// Local directory ffmpeg writes the group's files into.
    pub dir: PathBuf,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key prefix (ends in `/` or is empty).
    pub prefix: String,
    /// HLS master playlist file name.
    pub master: Option<String>,
    /// Outputs, in the job's order.
    pub outputs: Vec<OutputPlan>,
}

/// The whole rendering of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// ffmpeg's arguments (without the program), `-progress pipe:1` included.
    pub args: Vec<String>,
    /// Groups, in the job's order.
    pub groups: Vec<GroupPlan>,
}

/// The base name MediaConvert gives outputs: the input file name without its extension.
pub fn base_name(file_input: &str) -> String {
    let name = file_input.rsplit('/').next().unwrap_or(file_input);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name.to_owned(),
    }
}

/// CRF standing in for QVBR quality `level` (1..=10).
pub fn crf_for_qvbr(level: u32) -> u32 {
    51u32.saturating_sub(4 * level.clamp(1, 10))
}

/// ffmpeg's JPEG `-q:v` (2 best ..= 31) for MediaConvert's quality 1..=100.
pub fn jpeg_qscale(quality: u32) -> u32 {
    2 + (100 - quality.clamp(1, 100)) * 29 / 99
}

/// Seconds between frame captures: `framerateDenominator / framerateNumerator`.
fn capture_interval(o: &Output) -> f64 {
    let fc =
        o.video_description.as_ref().and_then(|v| v.codec_settings.frame_capture_settings.as_ref());
    let num = fc.and_then(|f| f.framerate_numerator).unwrap_or(1).max(1);
    let den = fc.and_then(|f| f.framerate_denominator).unwrap_or(1).max(1);
    f64::from(den) / f64::from(num)
}

fn escape_pattern(s: &str) -> String {
    s.replace('%', "%%")
}

fn size(o: &Output, probe: &Probe) -> (u32, u32) {
    let v = o.video_description.as_ref();
    let w = v.and_then(|v| v.width).unwrap_or(probe.width);
    let h = v.and_then(|v| v.height).unwrap_or(probe.height);
    (w, h)
}

/// H.264 and AAC options of the `index`th video/audio stream of an output file.
fn av_args(args: &mut Vec<String>, o: &Output, index: usize, has_audio: bool) {
    let mut push = |k: String, v: String| {
        args.push(k);
        args.push(v);
    };
    let h = o.video_description.as_ref().and_then(|v| v.codec_settings.h264_settings.clone());
    let h = h.unwrap_or_default();
    let level = h.qvbr_settings.as_ref().and_then(|q| q.qvbr_quality_level).unwrap_or(7);
    match (h.rate_control_mode.as_deref(), h.bitrate, h.max_bitrate) {
        (Some("CBR"), Some(rate), _) => {
            push(format!("-b:v:{index}"), rate.to_string());
            push(format!("-maxrate:v:{index}"), rate.to_string());
            push(format!("-bufsize:v:{index}"), rate.to_string());
        }
        (_, _, max) => {
            push(format!("-crf:v:{index}"), crf_for_qvbr(level).to_string());
            if let Some(max) = max {
                push(format!("-maxrate:v:{index}"), max.to_string());
                push(format!("-bufsize:v:{index}"), max.to_string());
            }
        }
    }
    match (h.gop_size, h.gop_size_units.as_deref()) {
        (Some(g), Some("SECONDS")) if g > 0.0 => {
            push(format!("-force_key_frames:v:{index}"), format!("expr:gte(t,n_forced*{g})"));
        }
        (Some(g), _) if g >= 1.0 => push(format!("-g:v:{index}"), format!("{}", g.round())),
        _ => {}
    }
    if has_audio {
        let aac = o.audio_descriptions.first().and_then(|a| a.codec_settings.aac_settings.clone());
        let aac = aac.unwrap_or_default();
        push(format!("-b:a:{index}"), aac.bitrate.unwrap_or(96_000).to_string());
        push(format!("-ar:a:{index}"), aac.sample_rate.unwrap_or(48_000).to_string());
        push(format!("-ac:a:{index}"), "2".into());
    }
}

fn destination(group_dest: &str, base: &str) -> Result<(String, String, String), PlanError> {
    let (bucket, key) = split_s3(group_dest)
        .ok_or_else(|| PlanError(format!("destination {group_dest:?} is not an s3:// URL")))?;
    // MediaConvert: a destination not ending in '/' names the base of the outputs' files.
    match key.rsplit_once('/') {
        _ if key.ends_with('/') || key.is_empty() => {
            Ok((bucket.to_owned(), key.to_owned(), base.to_owned()))
        }
        Some((prefix, name)) => Ok((bucket.to_owned(), format!("{prefix}/"), name.to_owned())),
        None => Ok((bucket.to_owned(), String::new(), key.to_owned())),
    }
}

/// Plans the rendering of `settings` from the local copy `input` of the job's input, into
/// `work` (one subdirectory per group).
///
/// # Errors
/// [`PlanError`] for settings outside what this service renders (no inputs, a group type
/// other than HLS or file, a codec other than H.264 or frame capture, a bad destination).
pub fn plan(
    settings: &JobSettings,
    input: &Path,
    probe: &Probe,
    work: &Path,
) -> Result<Plan, PlanError> {
    let file_input = &settings
        .inputs
        .first()
        .ok_or_else(|| PlanError("the job has no inputs".into()))?
        .file_input;
    let base = base_name(file_input);
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-y",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
        "-nostats",
        "-i",
    ]
    .map(String::from)
    .into();
    args.push(input.display().to_string());

    let mut filters = Vec::new();
    let mut outputs_args: Vec<String> = Vec::new();
    let mut groups = Vec::new();
    let mut label = 0usize;
    let mut scaled = |filters: &mut Vec<String>, extra: &str, w: u32, h: u32| {
        let name = format!("o{label}");
        filters.push(format!("[v{label}]{extra}scale={w}:{h},setsar=1[{name}]"));
        label += 1;
        format!("[{name}]")
    };
    let common_video =
        ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p"];

    for (gi, group) in settings.output_groups.iter().enumerate() {
        let s = &group.output_group_settings;
        let dir = work.join(format!("group{gi}"));
        let dir_s = dir.display().to_string();
        match (s.hls_group_settings.as_ref(), s.file_group_settings.as_ref()) {
            (Some(hls), _) if s.kind == "HLS_GROUP_SETTINGS" => {
                let (bucket, prefix, base) = destination(&hls.destination, &base)?;
                let mut outs = Vec::new();
                let mut map = Vec::new();
                for (i, o) in group.outputs.iter().enumerate() {
                    let (w, h) = size(o, probe);
                    let modifier = o.name_modifier.clone().unwrap_or_else(|| format!("_{i}"));
                    let stream = scaled(&mut filters, "", w, h);
                    outputs_args.extend(["-map".into(), stream]);
                    if probe.has_audio {
                        outputs_args.extend(["-map".into(), "0:a:0".into()]);
                    }
                    av_args(&mut outputs_args, o, i, probe.has_audio);
                    let audio = if probe.has_audio { format!("a:{i},") } else { String::new() };
                    map.push(format!("v:{i},{audio}name:{modifier}"));
                    outs.push(OutputPlan {
                        file: format!("{base}{modifier}.m3u8"),
                        width: w,
                        height: h,
                        frame_capture: false,
                    });
                }
                outputs_args.extend(common_video.map(String::from));
                if probe.has_audio {
                    outputs_args.extend(["-c:a".into(), "aac".into()]);
                }
                let seg = hls.segment_length.unwrap_or(10).max(1).to_string();
                let b = escape_pattern(&base);
                outputs_args.extend([
                    "-f".into(),
                    "hls".into(),
                    "-hls_time".into(),
                    seg,
                    "-hls_playlist_type".into(),
                    "vod".into(),
                    "-hls_flags".into(),
                    "independent_segments".into(),
                    "-start_number".into(),
                    "1".into(),
                    "-hls_segment_filename".into(),
                    format!("{dir_s}/{b}%v_%05d.ts"),
                    "-master_pl_name".into(),
                    format!("{base}.m3u8"),
                    "-var_stream_map".into(),
                    map.join(" "),
                    format!("{dir_s}/{b}%v.m3u8"),
                ]);
                groups.push(GroupPlan {
                    kind: GroupKind::Hls,
                    dir,
                    bucket,
                    prefix,
                    master: Some(format!("{base}.m3u8")),
                    outputs: outs,
                });
            }
            (_, Some(file)) if s.kind == "FILE_GROUP_SETTINGS" => {
                let (bucket, prefix, base) = destination(&file.destination, &base)?;
                let mut outs = Vec::new();
                for o in &group.outputs {
                    let (w, h) = size(o, probe);
                    let modifier = o.name_modifier.clone().unwrap_or_default();
                    let v = o.video_description.as_ref().map(|v| &v.codec_settings);
                    let container = o.container_settings.as_ref().map(|c| c.container.as_str());
                    match (v.map(|v| v.codec.as_str()), container) {
                        (Some("FRAME_CAPTURE"), _) => {
                            let fc = v.and_then(|v| v.frame_capture_settings.clone());
                            let fc = fc.unwrap_or_default();
                            let every = capture_interval(o);
                            let stream = scaled(
                                &mut filters,
                                &format!("select='gte(t,selected_n*{every}-0.001)',"),
                                w,
                                h,
                            );
                            let file = format!("{}{modifier}.%07d.jpg", escape_pattern(&base));
                            outputs_args.extend([
                                "-map".into(),
                                stream,
                                "-fps_mode".into(),
                                "vfr".into(),
                                "-frames:v".into(),
                                fc.max_captures.unwrap_or(10_000_000).to_string(),
                                "-q:v".into(),
                                jpeg_qscale(fc.quality.unwrap_or(80)).to_string(),
                                "-start_number".into(),
                                "0".into(),
                                format!("{dir_s}/{file}"),
                            ]);
                            outs.push(OutputPlan { file, width: w, height: h, frame_capture: true });
                        }
                        (Some("H_264"), Some("MP4")) => {
                            let stream = scaled(&mut filters, "", w, h);
                            outputs_args.extend(["-map".into(), stream]);
                            if probe.has_audio {
                                outputs_args.extend(["-map".into(), "0:a:0".into()]);
                            }
                            av_args(&mut outputs_args, o, 0, probe.has_audio);
                            outputs_args.extend(common_video.map(String::from));
                            if probe.has_audio {
                                outputs_args.extend(["-c:a".into(), "aac".into()]);
                            }
                            let file = format!("{base}{modifier}.mp4");
                            outputs_args.extend([
                                "-movflags".into(),
                                "+faststart".into(),
                                format!("{dir_s}/{file}"),
                            ]);
                            outs.push(OutputPlan { file, width: w, height: h, frame_capture: false });
                        }
                        (codec, container) => {
                            return Err(PlanError(format!(
                                "output group {gi}: codec {codec:?} in container {container:?} is not rendered locally"
                            )))
                        }
                    }
                }
                groups.push(GroupPlan {
                    kind: GroupKind::File,
                    dir,
                    bucket,
                    prefix,
                    master: None,
                    outputs: outs,
                });
            }
            _ => {
                return Err(PlanError(format!(
                    "output group {gi}: type {:?} is not rendered locally",
                    s.kind
                )))
            }
        }
    }
    if label == 0 {
        return Err(PlanError("the job has no outputs".into()));
    }
    let split: String = (0..label).map(|i| format!("[v{i}]")).collect();
    filters.insert(0, format!("[0:v:0]split={label}{split}"));
    args.extend(["-filter_complex".into(), filters.join(";")]);
    args.extend(outputs_args);
    Ok(Plan { args, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> JobSettings {
        let h264 = |w: u32, h: u32, max: u32| {
            json!({"width": w, "height": h, "codecSettings": {"codec": "H_264", "h264Settings": {
                "rateControlMode": "QVBR", "maxBitrate": max, "qvbrSettings": {"qvbrQualityLevel": 7},
                "gopSize": 2.0, "gopSizeUnits": "SECONDS"}}})
        };
        let aac = json!([{"codecSettings": {"codec": "AAC", "aacSettings": {"bitrate": 96000, "sampleRate": 48000}}}]);
        serde_json::from_value(json!({
            "inputs": [{"fileInput": "s3://b/inputs/My Film.mp4"}],
            "outputGroups": [
                {"outputGroupSettings": {"type": "HLS_GROUP_SETTINGS", "hlsGroupSettings": {"destination": "s3://b/outputs/a/hls/", "segmentLength": 6}},
                 "outputs": [
                    {"nameModifier": "_360p", "containerSettings": {"container": "M3U8"}, "videoDescription": h264(640, 360, 400000), "audioDescriptions": aac},
                    {"nameModifier": "_720p", "containerSettings": {"container": "M3U8"}, "videoDescription": h264(1280, 720, 1000000), "audioDescriptions": aac}]},
                {"outputGroupSettings": {"type": "FILE_GROUP_SETTINGS", "fileGroupSettings": {"destination": "s3://b/outputs/a/mp4/"}},
                 "outputs": [{"nameModifier": "_720p", "containerSettings": {"container": "MP4"}, "videoDescription": h264(1280, 720, 3000000), "audioDescriptions": aac}]},
                {"outputGroupSettings": {"type": "FILE_GROUP_SETTINGS", "fileGroupSettings": {"destination": "s3://b/outputs/a/thumbnails/"}},
                 "outputs": [{"nameModifier": "_thumb", "containerSettings": {"container": "RAW"}, "videoDescription": {"width": 640, "height": 360,
                    "codecSettings": {"codec": "FRAME_CAPTURE", "frameCaptureSettings": {"framerateNumerator": 1, "framerateDenominator": 10, "quality": 80}}}}]}
            ]
        }))
        .unwrap()
    }

    const PROBE: Probe = Probe { duration_s: 20.0, width: 1280, height: 720, has_audio: true };

    #[test]
    fn names_follow_mediaconvert() {
        let p = plan(&settings(), Path::new("/in/My Film.mp4"), &PROBE, Path::new("/w")).unwrap();
        let hls = &p.groups[0];
        assert_eq!((hls.bucket.as_str(), hls.prefix.as_str()), ("b", "outputs/a/hls/"));
        assert_eq!(hls.master.as_deref(), Some("My Film.m3u8"));
        let files: Vec<&str> =
            p.groups.iter().flat_map(|g| &g.outputs).map(|o| o.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "My Film_360p.m3u8",
                "My Film_720p.m3u8",
                "My Film_720p.mp4",
                "My Film_thumb.%07d.jpg"
            ]
        );
        assert_eq!(p.groups[2].kind, GroupKind::File);
    }

    #[test]
    fn args_carry_sizes_caps_gops_and_segments() {
        let p = plan(&settings(), Path::new("/in/x.mp4"), &PROBE, Path::new("/w")).unwrap();
        let a = p.args.join(" ");
        assert!(a.contains("[0:v:0]split=4[v0][v1][v2][v3]"), "{a}");
        assert!(a.contains("[v1]scale=1280:720,setsar=1[o1]"), "{a}");
        assert!(a.contains("-maxrate:v:0 400000 -bufsize:v:0 400000"), "{a}");
        assert!(a.contains("-crf:v:1 23"), "{a}");
        assert!(a.contains("-force_key_frames:v:0 expr:gte(t,n_forced*2)"), "{a}");
        assert!(a.contains("-hls_time 6"), "{a}");
        assert!(a.contains("-var_stream_map v:0,a:0,name:_360p v:1,a:1,name:_720p"), "{a}");
        assert!(a.contains("-ar:a:0 48000"), "{a}");
        assert!(a.contains("select='gte(t,selected_n*10-0.001)'"), "{a}");
        let silent = Probe { has_audio: false, ..PROBE };
        let a = plan(&settings(), Path::new("/in/x.mp4"), &silent, Path::new("/w")).unwrap().args;
        assert!(!a.iter().any(|x| x == "0:a:0"));
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        let mut s = settings();
        s.output_groups[0].output_group_settings.kind = "DASH_ISO_GROUP_SETTINGS".into();
        assert!(plan(&s, Path::new("/x"), &PROBE, Path::new("/w")).is_err());
        assert!(plan(&JobSettings::default(), Path::new("/x"), &PROBE, Path::new("/w")).is_err());
        assert_eq!(base_name("s3://b/inputs/a.b.mp4"), "a.b");
        assert_eq!((crf_for_qvbr(7), jpeg_qscale(100), jpeg_qscale(1)), (23, 2, 31));
    }
}
