//! The RTSP handshake through retina: DESCRIBE (with basic or digest authentication), the
//! choice of streams, SETUP of each, PLAY (RFC 2326 §10.2, §10.4, §10.5).

use super::target::Target;
use super::{Credentials, RtspOptions, RtspTransport};
use crate::flv::parse_audio_specific_config;
use crate::ingest::SourceError;
use crate::media::AudioConfig;
use retina::client::{
    Described, InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions, Stream,
    Transport,
};
use retina::codec::{FrameFormat, ParametersRef};

/// `User-Agent` of our requests.
const USER_AGENT: &str = concat!("streamstack/", env!("CARGO_PKG_VERSION"));

/// The streams set up, indexes into the session's streams.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chosen {
    /// The first H.264 video stream.
    pub video: usize,
    /// The first AAC (RFC 3640 `mpeg4-generic`) audio stream with a usable
    /// AudioSpecificConfig, and that configuration.
    pub audio: Option<(usize, AudioConfig)>,
}

/// Connects, authenticates, sets up the streams [`choose`] picks and plays them.
///
/// # Errors
/// [`SourceError::Unauthorized`] on a 401 (after retina answered the challenge with the
/// credentials, or without any), [`SourceError::Unsupported`] when there is no H.264 video,
/// [`SourceError::Connect`] for anything else on the way (messages without credentials).
pub(super) async fn play(
    target: Target,
    options: &RtspOptions,
) -> Result<(retina::client::Demuxed, Chosen), SourceError> {
    let creds = target.credentials.clone();
    let scrub = |e: retina::Error| connect_error(&e, creds.as_ref());
    let session_options =
        SessionOptions::default()
            .creds(creds.clone().map(|c| retina::client::Credentials {
                username: c.username,
                password: c.password,
            }))
            .user_agent(USER_AGENT.to_owned());
    let mut session = Session::describe(target.url, session_options).await.map_err(scrub)?;
    let chosen = choose(&session)?;
    let transport = match options.transport {
        RtspTransport::Tcp => Transport::Tcp(Default::default()),
        RtspTransport::Udp => Transport::Udp(Default::default()),
    };
    let setup =
        || SetupOptions::default().transport(transport.clone()).frame_format(FrameFormat::MP4);
    session.setup(chosen.video, setup()).await.map_err(scrub)?;
    if let Some((audio, _)) = chosen.audio {
        session.setup(audio, setup()).await.map_err(scrub)?;
    }
    let playing = session
        .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
        .await
        .map_err(scrub)?;
    let demuxed = playing.demuxed().map_err(scrub)?;
    Ok((demuxed, chosen))
}

/// Picks the first H.264 stream and the first usable AAC stream of the SDP; warns once
/// about audio it leaves out.
///
/// # Errors
/// [`SourceError::Unsupported`] when no stream is H.264 (H.265 named as such).
fn choose(session: &Session<Described>) -> Result<Chosen, SourceError> {
    let streams = session.streams();
    let is = |s: &Stream, media: &str, encoding: &str| {
        s.media().eq_ignore_ascii_case(media) && s.encoding_name().eq_ignore_ascii_case(encoding)
    };
    let Some(video) = streams.iter().position(|s| is(s, "video", "h264")) else {
        if streams.iter().any(|s| is(s, "video", "h265")) {
            return Err(SourceError::Unsupported(
                "H.265 video: HLS/TS players do not take HEVC in MPEG-TS; configure the \
                 camera's stream as H.264"
                    .into(),
            ));
        }
        let found: Vec<String> =
            streams.iter().map(|s| format!("{}/{}", s.media(), s.encoding_name())).collect();
        return Err(SourceError::Unsupported(format!(
            "no H.264 video stream (the source offers: {})",
            if found.is_empty() { "nothing".to_owned() } else { found.join(", ") }
        )));
    };
    let mut audio = None;
    let mut left_out = None;
    for (i, s) in streams.iter().enumerate().filter(|(_, s)| s.media() == "audio") {
        if audio.is_some() {
            break;
        }
        if !is(s, "audio", "mpeg4-generic") {
            left_out.get_or_insert_with(|| s.encoding_name().to_owned());
            continue;
        }
        match s.parameters() {
            Some(ParametersRef::Audio(p)) => match parse_audio_specific_config(p.extra_data()) {
                Ok(config) => audio = Some((i, config)),
                Err(e) => {
                    tracing::warn!(error = %e, "AAC audio stream left out: unusable AudioSpecificConfig");
                }
            },
            _ => tracing::warn!("AAC audio stream left out: no AudioSpecificConfig in the SDP"),
        }
    }
    if let (None, Some(codec)) = (audio, left_out) {
        tracing::warn!(
            codec = %codec,
            "audio not recorded: only AAC is (HLS/TS players take no G.711); video only"
        );
    }
    Ok(Chosen { video, audio })
}

/// A retina error on the way to PLAY as a [`SourceError`]: 401 is
/// [`SourceError::Unauthorized`], the rest [`SourceError::Connect`] with retina's text (one
/// line, the password, if any, blanked out).
pub(super) fn connect_error(e: &retina::Error, creds: Option<&Credentials>) -> SourceError {
    if e.status_code() == Some(401) {
        return SourceError::Unauthorized;
    }
    SourceError::Connect(scrub(&e.to_string(), creds))
}

/// `text` on one line, with `creds`' password (if not empty) replaced by `***`.
pub(super) fn scrub(text: &str, creds: Option<&Credentials>) -> String {
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(password) = creds.map(|c| c.password.as_str()).filter(|p| !p.is_empty()) {
        text = text.replace(password, "***");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_blanks_the_password_and_joins_lines() {
        let creds = Credentials { username: "admin".into(), password: "hunter2".into() };
        assert_eq!(
            scrub("401 response\n\nconn: x hunter2x", Some(&creds)),
            "401 response conn: x ***x"
        );
        let empty = Credentials { username: "admin".into(), password: String::new() };
        assert_eq!(scrub("a  b", Some(&empty)), "a b");
        assert_eq!(scrub("a\tb", None), "a b");
    }
}
