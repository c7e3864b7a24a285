//! RTSP pull (IP cameras, media gateways) through the `retina` client: RTSP/1.0
//! (RFC 2326) with basic or digest authentication, RTP (RFC 3550) interleaved on the RTSP
//! TCP connection (§10.12, the default) or over UDP.
//!
//! What is recorded: the first H.264 stream (RFC 6184; parameter sets from the SDP's
//! `sprop-parameter-sets` or in-band) and the first AAC stream (RFC 3640 `mpeg4-generic`,
//! AudioSpecificConfig from the SDP `config`). Other audio (G.711 PCMU/PCMA, which most
//! cameras send, G.726, …) is not set up, with one warning naming the codec; a source
//! without H.264 video (H.265 cameras) is refused with [`SourceError::Unsupported`].
//!
//! Frames come out as the [`MediaSource`] contract wants them: video as Annex B access units
//! starting with an AUD, SPS/PPS in front of every IDR (framed by
//! `crate::flv::annex_b`, as RTMP's are), audio as ADTS frames, both on 90 kHz ticks of
//! the source's own clock (RTP timestamps since the session start, see `timing`). RTP carries
//! no decode time: `timing::DecodeTimes` derives a monotonic one for B-frames.
//!
//! Credentials come from the URL's userinfo, else from [`RtspOptions::credentials`];
//! the URL passed to retina has none, and no log line or error text holds them
//! ([`crate::ingest::redact_url`]).
//!
//! `rtsps://` (RTSP over TLS, RFC 7826 §19.2, default port 322) goes through a local TLS
//! tunnel per connection, retina 0.4 having no TLS transport: RTP interleaved on the TCP
//! connection only, certificates verified as [`RtspOptions::tls`] says (see [`RtspTls`]).

mod session;
mod target;
mod timing;
mod tls;

use super::{redact_url, MediaSource, SourceError};
use crate::flv::config::{ADTS_HEADER_LEN, START_CODE};
use crate::flv::{adts_header, annex_b};
use crate::media::{AudioConfig, Frame, MediaEvent, MediaLimits, Track, Tracks, VideoConfig};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use retina::codec::{AudioFrame, CodecItem, ParametersRef, VideoFrame, VideoParametersCodec};
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;
use timing::{frame_ticks, reorder_frames, ticks, DecodeTimes};
use tokio::time::Instant;

pub use tls::{RtspTls, RTSPS_PORT};

/// How RTP reaches us (RFC 2326 §12.39 `Transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RtspTransport {
    /// RTP/AVP/TCP interleaved on the RTSP connection: one TCP connection, through NAT and
    /// firewalls, no loss.
    #[default]
    Tcp,
    /// RTP/AVP over UDP (retina: no reorder buffer, LAN use).
    Udp,
}

/// A user name and password for RTSP basic or digest authentication (RFC 2617).
/// `Debug` does not show them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// How to pull an RTSP source.
#[derive(Debug, Clone)]
pub struct RtspOptions {
    /// RTP transport; TCP interleaved by default.
    pub transport: RtspTransport,
    /// Credentials for URLs without userinfo (from env or Secrets Manager, resolved by the
    /// caller); a URL's own credentials win.
    pub credentials: Option<Credentials>,
    /// Longest wait for the connection and DESCRIBE/SETUP/PLAY together; default 10 s.
    pub connect_timeout: Duration,
    /// Longest wait for a frame once playing, else [`SourceError::Timeout`]; default 10 s.
    pub receive_timeout: Duration,
    /// Bounds on the media (`max_parameter_set_bytes` is enforced here).
    pub limits: MediaLimits,
    /// Certificate checks of `rtsps://` sources; verified against the system's roots by
    /// default.
    pub tls: RtspTls,
}

impl Default for RtspOptions {
    /// TCP, URL credentials, 10 s connect and receive timeouts, default limits, TLS
    /// certificates verified against the system's roots.
    fn default() -> Self {
        Self {
            transport: RtspTransport::Tcp,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            receive_timeout: Duration::from_secs(10),
            limits: MediaLimits::default(),
            tls: RtspTls::default(),
        }
    }
}

/// Connects to `url` (`rtsp://[user[:password]@]host[:port]/path`, or `rtsps://…` through
/// a TLS tunnel) and starts playing.
///
/// # Errors
/// [`SourceError::InvalidUrl`] (not an `rtsp://` or `rtsps://` URL),
/// [`SourceError::Unsupported`] (no H.264 video; `rtsps://` with UDP transport),
/// [`SourceError::Unauthorized`] (401), [`SourceError::Connect`] (refused, a TLS
/// certificate that does not verify, no answer within `connect_timeout`, RTSP errors).
pub async fn connect(url: &str, options: &RtspOptions) -> Result<RtspSource, SourceError> {
    let target = target::parse(url, options.credentials.as_ref())?;
    let redacted = redact_url(target.url.as_str());
    if target.url.scheme() == "rtsps" && options.transport == RtspTransport::Udp {
        return Err(SourceError::Unsupported(
            "rtsps:// takes RTP interleaved on the TLS connection only: use TCP transport \
             (UDP would carry the media in the clear)"
                .into(),
        ));
    }
    let (demuxed, chosen, tunnel) =
        match tokio::time::timeout(options.connect_timeout, open(target, options, &redacted)).await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(SourceError::Connect(format!(
                    "no RTSP answer within {:?}",
                    options.connect_timeout
                )))
            }
        };
    tracing::info!(url = %redacted, audio = chosen.audio.is_some(), "RTSP source playing");
    let mut source = RtspSource {
        demuxed: Box::pin(demuxed),
        _tunnel: tunnel,
        video_stream: chosen.video,
        audio_stream: chosen.audio.map(|(i, _)| i),
        audio: chosen.audio.map(|(_, config)| config),
        video: None,
        tracks: None,
        pending: VecDeque::with_capacity(2),
        decode_times: DecodeTimes::new(timing::REORDER_FRAMES),
        frame_ticks: timing::DEFAULT_FRAME_TICKS,
        limits: options.limits,
        receive_timeout: options.receive_timeout,
        credentials: options.credentials.clone(),
        bytes_in: 0,
        byes: [false; 2],
        warned_no_config: false,
    };
    source.refresh_video()?;
    Ok(source)
}

/// Opens the TLS tunnel of an `rtsps://` target (retina is given its local URL), then
/// plays through retina.
async fn open(
    mut target: target::Target,
    options: &RtspOptions,
    redacted: &str,
) -> Result<(retina::client::Demuxed, session::Chosen, Option<tls::Tunnel>), SourceError> {
    let tunnel = match target.url.scheme() {
        "rtsps" => {
            let tunnel = tls::Tunnel::open(&target.url, &options.tls, redacted).await?;
            target.url = tunnel.local_url.clone();
            Some(tunnel)
        }
        _ => None,
    };
    let (demuxed, chosen) = session::play(target, options).await?;
    Ok((demuxed, chosen, tunnel))
}

/// The video configuration in use: Annex B parameter sets and the SPS bytes in them.
struct Video {
    parameter_sets: Bytes,
    sps_len: usize,
}

/// A playing RTSP session: a [`MediaSource`]. Dropping it closes the connection (retina
/// sends TEARDOWN where a server needs one) and an `rtsps://` source's TLS tunnel.
pub struct RtspSource {
    demuxed: Pin<Box<retina::client::Demuxed>>,
    /// The TLS tunnel of an `rtsps://` source, closed after retina's session.
    _tunnel: Option<tls::Tunnel>,
    video_stream: usize,
    audio_stream: Option<usize>,
    audio: Option<AudioConfig>,
    video: Option<Video>,
    /// The tracks last declared; `None` until the video configuration is known.
    tracks: Option<Tracks>,
    pending: VecDeque<MediaEvent>,
    decode_times: DecodeTimes,
    frame_ticks: u64,
    limits: MediaLimits,
    receive_timeout: Duration,
    credentials: Option<Credentials>,
    bytes_in: u64,
    /// RTCP BYE seen on the video / audio stream.
    byes: [bool; 2],
    warned_no_config: bool,
}

#[async_trait::async_trait]
impl MediaSource for RtspSource {
    /// Tracks, then frames; `Ok(None)` once every stream set up said RTCP BYE (RFC 3550
    /// §6.6: the server ended the stream).
    ///
    /// # Errors
    /// [`SourceError::Timeout`] after `receive_timeout` without a frame,
    /// [`SourceError::Protocol`] when the connection drops or RTP cannot be depacketized,
    /// or for parameter sets over `max_parameter_set_bytes`.
    async fn next_event(&mut self) -> Result<Option<MediaEvent>, SourceError> {
        let deadline = Instant::now() + self.receive_timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let item = match tokio::time::timeout_at(deadline, self.demuxed.next()).await {
                Err(_) => return Err(SourceError::Timeout(self.receive_timeout)),
                Ok(None) => {
                    return Err(SourceError::Protocol("RTSP connection closed".into()));
                }
                Ok(Some(Err(e))) => {
                    let text = session::scrub(&e.to_string(), self.credentials.as_ref());
                    return Err(SourceError::Protocol(text));
                }
                Ok(Some(Ok(item))) => item,
            };
            match item {
                CodecItem::VideoFrame(frame) => self.video_frame(frame)?,
                CodecItem::AudioFrame(frame) => self.audio_frame(frame),
                CodecItem::Rtcp(rtcp) => {
                    self.bytes_in += rtcp.raw().len() as u64;
                    if self.bye(&rtcp) {
                        tracing::info!("RTSP source ended the stream (RTCP BYE)");
                        return Ok(None);
                    }
                }
                _ => {}
            }
        }
    }

    fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

/// RTCP packet type of a BYE (RFC 3550 §6.6).
const RTCP_BYE: u8 = 203;
/// Largest raw AAC frame an ADTS header can carry: 13-bit frame length minus the header.
const MAX_AAC_FRAME: usize = 0x1FFF - ADTS_HEADER_LEN;

impl RtspSource {
    /// Reads the video stream's parameters (SDP or in-band) and, if they differ from those
    /// in use, takes them and queues a [`MediaEvent::Tracks`].
    fn refresh_video(&mut self) -> Result<(), SourceError> {
        let stream = &self.demuxed.streams()[self.video_stream];
        let Some(ParametersRef::Video(params)) = stream.parameters() else {
            return Ok(());
        };
        let VideoParametersCodec::H264 { sps, pps } = params.codec_params() else {
            return Ok(());
        };
        let total = 2 * START_CODE.len() + sps.len() + pps.len();
        if total > self.limits.max_parameter_set_bytes {
            return Err(SourceError::Protocol(format!(
                "H.264 parameter sets of {total} bytes exceed the limit of {} bytes",
                self.limits.max_parameter_set_bytes
            )));
        }
        let mut sets = BytesMut::with_capacity(total);
        for unit in [sps, pps] {
            sets.put_slice(&START_CODE);
            sets.put_slice(unit);
        }
        let parameter_sets = sets.freeze();
        if self.video.as_ref().is_some_and(|v| v.parameter_sets == parameter_sets) {
            return Ok(());
        }
        let reorder = reorder_frames(sps);
        if reorder != self.decode_times.reorder() {
            self.decode_times = DecodeTimes::new(reorder);
        }
        self.frame_ticks = frame_ticks(params.frame_rate());
        let (width, height) = params.pixel_dimensions();
        tracing::info!(codec = params.rfc6381_codec(), width, height, "RTSP H.264 parameters");
        self.video = Some(Video {
            sps_len: START_CODE.len() + sps.len(),
            parameter_sets: parameter_sets.clone(),
        });
        let tracks = Tracks { video: Some(VideoConfig { parameter_sets }), audio: self.audio };
        self.tracks = Some(tracks.clone());
        self.pending.push_back(MediaEvent::Tracks(tracks));
        Ok(())
    }

    fn video_frame(&mut self, frame: VideoFrame) -> Result<(), SourceError> {
        self.bytes_in += frame.data().len() as u64;
        if frame.stream_id() != self.video_stream {
            return Ok(());
        }
        if frame.has_new_parameters() || self.video.is_none() {
            self.refresh_video()?;
        }
        let Some(video) = &self.video else {
            if !std::mem::replace(&mut self.warned_no_config, true) {
                tracing::warn!("dropping H.264 frames before the first SPS/PPS");
            }
            return Ok(());
        };
        let au = annex_b(frame.data(), 4, &video.parameter_sets, video.sps_len)
            .map_err(|e| SourceError::Protocol(format!("H.264 frame: {e}")))?;
        let Some(data) = au.data else {
            return Ok(());
        };
        let ts = frame.timestamp();
        let pts = ticks(ts.elapsed(), ts.clock_rate().get());
        let dts = self.decode_times.next(pts, self.frame_ticks);
        self.pending.push_back(MediaEvent::Frame(Frame {
            track: Track::Video,
            dts,
            pts,
            idr: au.idr,
            discontinuity: false,
            data,
        }));
        Ok(())
    }

    fn audio_frame(&mut self, frame: AudioFrame) {
        let raw = frame.data();
        self.bytes_in += raw.len() as u64;
        let (Some(config), true) = (self.audio, self.audio_stream == Some(frame.stream_id()))
        else {
            return;
        };
        // Audio before the first video configuration has no track declaration to go with.
        if self.tracks.is_none() || raw.is_empty() || raw.len() > MAX_AAC_FRAME {
            return;
        }
        let ts = frame.timestamp();
        let pts = ticks(ts.elapsed(), ts.clock_rate().get());
        let mut data = BytesMut::with_capacity(ADTS_HEADER_LEN + raw.len());
        data.put_slice(&adts_header(config, raw.len()));
        data.put_slice(raw);
        self.pending.push_back(MediaEvent::Frame(Frame {
            track: Track::Audio,
            dts: pts,
            pts,
            idr: false,
            discontinuity: false,
            data: data.freeze(),
        }));
    }

    /// Records an RTCP BYE; true once every stream set up has said it.
    fn bye(&mut self, rtcp: &retina::rtcp::ReceivedCompoundPacket) -> bool {
        if !rtcp.pkts().any(|p| p.payload_type() == RTCP_BYE) {
            return false;
        }
        let id = rtcp.stream_id();
        if id == self.video_stream {
            self.byes[0] = true;
        } else if Some(id) == self.audio_stream {
            self.byes[1] = true;
        }
        self.byes[0] && (self.byes[1] || self.audio_stream.is_none())
    }
}
