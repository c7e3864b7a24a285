//! The SRT stream id of a publish: which channel, with which signed credential.
//!
//! A caller puts the channel's signed stream name (the RTMP stream key,
//! `<channel-id>?exp=<unix seconds>&sig=<hex>`, see [`streamstack_core::signing`]) in the SRT
//! `streamid` (SRTO_STREAMID, at most 512 bytes; carried in the handshake's SID extension,
//! draft-sharabayko-srt-01 §3.2.1.3). Accepted forms:
//!
//! - the bare name, `<id>?exp=..&sig=..`, optionally behind `live/` (or `/live/`) as in the
//!   RTMP URL path;
//! - the SRT Access Control form (Haivision "SRT Access Control Guidelines"):
//!   `#!::r=live/<id>?exp=..&sig=..,m=publish` — `r` is the resource, `m` must be `publish`
//!   when present, `t` must be `stream` when present, other keys (`u`, `h`, `s`) are ignored;
//! - either of those percent-encoded (RFC 3986 §2.1). ffmpeg's `srt://` URL splits its own
//!   options on `&` and passes `streamid` on as written, so a caller writes
//!   `srt://host:9000?streamid=<id>%3Fexp%3D..%26sig%3D..`; the streamer decodes it.

use thiserror::Error;

/// Why a stream id does not name a publish. The messages never quote the stream id (it
/// carries the signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamIdError {
    /// The caller sent no stream id.
    #[error("no stream id")]
    Missing,
    /// A `#!::` stream id without an `r=` resource, or a malformed entry.
    #[error("access control stream id without a resource")]
    NoResource,
    /// `m=` other than `publish` (e.g. `request`: this server does not serve playback), or
    /// `t=` other than `stream`.
    #[error("only m=publish, t=stream is served")]
    BadMode,
    /// Percent-decoding did not give UTF-8.
    #[error("stream id is not UTF-8 after percent-decoding")]
    Encoding,
}

/// The stream name (`<channel-id>?exp=..&sig=..`, for [`crate::publish::Ingest::authorize`]
/// with application `live`) that an SRT stream id carries.
///
/// # Errors
/// [`StreamIdError`] when the id is missing or not one of the forms of this module.
pub fn stream_name(stream_id: Option<&str>) -> Result<String, StreamIdError> {
    let raw = stream_id.filter(|s| !s.is_empty()).ok_or(StreamIdError::Missing)?;
    let decoded = percent_decode(raw)?;
    let resource = match decoded.strip_prefix("#!::") {
        Some(entries) => access_control_resource(entries)?,
        None => decoded.as_str(),
    };
    let resource = resource.trim_start_matches('/');
    let name = resource.strip_prefix("live/").unwrap_or(resource);
    Ok(name.to_owned())
}

/// The `r` value of Access Control entries `k=v,k=v`, checking `m` and `t`.
fn access_control_resource(entries: &str) -> Result<&str, StreamIdError> {
    let mut resource = None;
    for entry in entries.split(',') {
        let (key, value) = entry.split_once('=').ok_or(StreamIdError::NoResource)?;
        match key {
            "r" => resource = Some(value),
            "m" if value != "publish" => return Err(StreamIdError::BadMode),
            "t" if value != "stream" => return Err(StreamIdError::BadMode),
            _ => {}
        }
    }
    resource.filter(|r| !r.is_empty()).ok_or(StreamIdError::NoResource)
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); a `%` not followed by two hex digits stays as is.
fn percent_decode(s: &str) -> Result<String, StreamIdError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| StreamIdError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "0123456789abcdef0123456789abcdef?exp=1800000000&sig=ab12";

    #[test]
    fn accepts_the_bare_name_a_live_prefix_and_access_control() {
        for id in [
            NAME.to_owned(),
            format!("live/{NAME}"),
            format!("/live/{NAME}"),
            format!("#!::r=live/{NAME},m=publish"),
            format!("#!::u=encoder1,r={NAME}"),
            format!("#!::t=stream,m=publish,r=live/{NAME}"),
        ] {
            assert_eq!(stream_name(Some(&id)).as_deref(), Ok(NAME), "{id}");
        }
    }

    #[test]
    fn decodes_percent_encoding() {
        let encoded = NAME.replace('?', "%3F").replace('=', "%3D").replace('&', "%26");
        assert_eq!(stream_name(Some(&encoded)).as_deref(), Ok(NAME));
        let ac = format!("%23!%3A%3Ar%3Dlive%2F{encoded}%2Cm%3Dpublish");
        assert_eq!(stream_name(Some(&ac)).as_deref(), Ok(NAME));
        assert_eq!(stream_name(Some("a%zz%4")).as_deref(), Ok("a%zz%4"));
        assert_eq!(stream_name(Some("%ff%fe")), Err(StreamIdError::Encoding));
    }

    #[test]
    fn refuses_missing_ids_playback_and_resource_less_access_control() {
        assert_eq!(stream_name(None), Err(StreamIdError::Missing));
        assert_eq!(stream_name(Some("")), Err(StreamIdError::Missing));
        let play = format!("#!::r=live/{NAME},m=request");
        assert_eq!(stream_name(Some(&play)), Err(StreamIdError::BadMode));
        let file = format!("#!::r={NAME},t=file");
        assert_eq!(stream_name(Some(&file)), Err(StreamIdError::BadMode));
        assert_eq!(stream_name(Some("#!::m=publish")), Err(StreamIdError::NoResource));
        assert_eq!(stream_name(Some("#!::garbage")), Err(StreamIdError::NoResource));
    }
}
