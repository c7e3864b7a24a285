//! The media side of a job: ffprobe of inputs and outputs, and playlists rewritten for
//! object storage.

use crate::plan::Probe;
use serde_json::Value;
use std::path::Path;

/// A playlist with its URI lines percent-encoded (file names may hold spaces and non-ASCII).
pub fn encode_playlist_uris(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else {
            for b in line.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~/%".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Probes a media file: duration, first video stream's size, whether it has audio.
///
/// # Errors
/// ffprobe's message when the file cannot be opened, has no video or no duration.
pub async fn probe(path: &Path) -> Result<Probe, String> {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type,width,height",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .await
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        return Err(stderr.lines().last().unwrap_or("ffprobe failed").to_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or_else(|| "no video stream".to_owned())?;
    let duration_s = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| *d > 0.0)
        .ok_or_else(|| "no duration".to_owned())?;
    Ok(Probe {
        duration_s,
        width: video["width"].as_u64().unwrap_or(0) as u32,
        height: video["height"].as_u64().unwrap_or(0) as u32,
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn playlist_uris_are_encoded() {
        let p = "#EXTM3U\n#EXTINF:6.0,\nMy Film café_360p_00001.ts\n";
        assert_eq!(
            super::encode_playlist_uris(p),
            "#EXTM3U\n#EXTINF:6.0,\nMy%20Film%20caf%C3%A9_360p_00001.ts\n"
        );
    }
}
