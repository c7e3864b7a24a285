//! RTMP(S) publishing over `rml_rtmp`'s client session: handshake, `connect`, `createStream`
//! and `publish` (live), `@setDataFrame onMetaData`, then FLV tags from [`FlvMuxer`] until
//! the queue ends (`deleteStream`, close) or the connection fails.
//!
//! Not sent: `releaseStream` / `FCPublish` (OBS sends them; YouTube, Twitch, nginx-rtmp and
//! ffmpeg do not need them).

use super::{RelayError, RelaySettings, Shared};
use crate::flv::mux::{FlvMuxer, Tag};
use crate::flv::TAG_VIDEO;
use crate::media::{MediaEvent, Tracks};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use streamstack_core::relay::Endpoint;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Bytes of media muxed before they are written in one go.
const BATCH_BYTES: usize = 256 << 10;

/// A byte stream to the server: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection whose publish request was accepted.
pub(super) struct Publisher {
    io: Box<dyn Io>,
    session: ClientSession,
}

fn protocol(e: impl std::fmt::Debug) -> RelayError {
    RelayError::Protocol(format!("{e:?}"))
}

/// The sampling frequency of an AAC `sampling_frequency_index`, Hz.
fn sample_rate(index: u8) -> Option<u32> {
    const RATES: [u32; 13] =
        [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    RATES.get(usize::from(index)).copied()
}

/// The system's root certificates, read once per process.
fn roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

async fn tls(host: &str, tcp: TcpStream) -> Result<Box<dyn Io>, RelayError> {
    let tls = |e: &dyn std::fmt::Display| RelayError::Tls(e.to_string());
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(roots().iter().cloned());
    if store.is_empty() {
        return Err(RelayError::Tls("no trusted root certificates on the system".into()));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(store)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| tls(&e))?;
    let stream =
        TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| tls(&e))?;
    Ok(Box::new(stream))
}

impl Publisher {
    /// Connects and asks to publish; the caller bounds the time taken.
    ///
    /// # Errors
    /// Any [`RelayError`] of TCP, TLS, the handshake, or a refused connect or publish.
    pub(super) async fn connect(endpoint: &Endpoint) -> Result<Self, RelayError> {
        let Endpoint::Rtmp { tls: secure, host, port, app, key, tc_url } = endpoint else {
            return Err(RelayError::Protocol("not an rtmp endpoint".into()));
        };
        let addrs = super::dial::resolve(host, *port).await?;
        let tcp = TcpStream::connect(&addrs[..]).await.map_err(RelayError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let mut io: Box<dyn Io> = if *secure { tls(host, tcp).await? } else { Box::new(tcp) };
        let remaining = handshake(&mut io).await?;
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(tc_url.clone());
        config.flash_version = "FMLE/3.0 (compatible; streamstack)".into();
        let (session, results) = ClientSession::new(config).map_err(protocol)?;
        let mut p = Self { io, session };
        let mut out = Vec::new();
        p.collect(results, &mut out)?;
        let request = p.session.request_connection(app.clone()).map_err(protocol)?;
        p.collect(vec![request], &mut out)?;
        let input = p.session.handle_input(&remaining).map_err(protocol)?;
        let mut done = p.collect(input, &mut out)?;
        p.wait_for(ClientSessionEvent::ConnectionRequestAccepted, &mut out, done).await?;
        let request = p
            .session
            .request_publishing(key.clone(), PublishRequestType::Live)
            .map_err(protocol)?;
        done = p.collect(vec![request], &mut out)?;
        p.wait_for(ClientSessionEvent::PublishRequestAccepted, &mut out, done).await?;
        Ok(p)
    }

    /// Appends the packets of `results` to `out`; returns the events raised. Refusals are
    /// errors.
    fn collect(
        &mut self,
        results: Vec<ClientSessionResult>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<ClientSessionEvent>, RelayError> {
        let mut events = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    out.extend_from_slice(&packet.bytes)
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => return Err(RelayError::ConnectRefused(description)),
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::UnhandleableOnStatusCode { code },
                ) if is_refusal(&code) => return Err(RelayError::PublishRefused(code)),
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::UnknownTransactionResultReceived {
                        additional_values, ..
                    },
                ) => {
                    // A refused publish answered with `_error` on transaction 0 (rml_rtmp
                    // servers, our own ingest) rather than `onStatus`.
                    if let Some(code) = error_code(&additional_values) {
                        return Err(RelayError::PublishRefused(code));
                    }
                }
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    /// Writes `out`, then reads until `want` is raised (it may already be in `seen`).
    async fn wait_for(
        &mut self,
        want: ClientSessionEvent,
        out: &mut Vec<u8>,
        mut seen: Vec<ClientSessionEvent>,
    ) -> Result<(), RelayError> {
        let mut buf = vec![0u8; 8192];
        loop {
            if !out.is_empty() {
                self.io.write_all(out).await.map_err(|e| RelayError::Io("write", e))?;
                out.clear();
            }
            if seen.contains(&want) {
                return Ok(());
            }
            let n = self.io.read(&mut buf).await.map_err(|e| RelayError::Io("read", e))?;
            if n == 0 {
                return Err(RelayError::Closed("before publishing"));
            }
            let results = self.session.handle_input(&buf[..n]).map_err(protocol)?;
            seen = self.collect(results, out)?;
        }
    }

    /// Publishes the queue of `shared` until it ends (then deleteStream and close: `Ok`) or
    /// the connection fails.
    pub(super) async fn run(
        self,
        shared: &Shared,
        settings: &RelaySettings,
    ) -> Result<(), RelayError> {
        let Self { io, mut session } = self;
        let (mut reader, mut writer) = tokio::io::split(io);
        let mut live = Live { mux: FlvMuxer::new(), tags: Vec::new(), tracks: None, warned: false };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            tokio::select! {
                biased;
                n = reader.read(&mut buf) => {
                    let n = n.map_err(|e| RelayError::Io("read", e))?;
                    if n == 0 {
                        return Err(RelayError::Closed("while publishing"));
                    }
                    let results = session.handle_input(&buf[..n]).map_err(protocol)?;
                    collect_live(results, &mut out)?;
                }
                event = shared.queue.pop() => {
                    let Some(event) = event else {
                        return close(&mut session, &mut writer, settings.write_timeout).await;
                    };
                    live.event(&mut session, &event, &mut out, shared)?;
                    while out.len() < BATCH_BYTES {
                        let Some(event) = shared.queue.try_pop() else { break };
                        live.event(&mut session, &event, &mut out, shared)?;
                    }
                }
            }
            if !out.is_empty() {
                write(&mut writer, &out, settings.write_timeout).await?;
                shared.add_sent(out.len());
                out.clear();
            }
        }
    }
}

/// The RTMP handshake (client side); returns the bytes received after it.
async fn handshake(io: &mut Box<dyn Io>) -> Result<Vec<u8>, RelayError> {
    let mut handshake = Handshake::new(PeerType::Client);
    let p0p1 = handshake.generate_outbound_p0_and_p1().map_err(protocol)?;
    io.write_all(&p0p1).await.map_err(|e| RelayError::Io("write", e))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = io.read(&mut buf).await.map_err(|e| RelayError::Io("read", e))?;
        if n == 0 {
            return Err(RelayError::Closed("during the handshake"));
        }
        match handshake.process_bytes(&buf[..n]).map_err(protocol)? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                io.write_all(&response_bytes).await.map_err(|e| RelayError::Io("write", e))?;
            }
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                io.write_all(&response_bytes).await.map_err(|e| RelayError::Io("write", e))?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// onStatus codes that end a publish: `NetStream.Publish.BadName`, `…Denied`, `…Failed`,
/// `NetConnection.Connect.Rejected`, `NetStream.Unpublish…`.
fn is_refusal(code: &str) -> bool {
    ["BadName", "Denied", "Failed", "Rejected", "Unauthorized", "Unpublish", "Error"]
        .iter()
        .any(|w| code.contains(w))
}

/// The `code` of a status object that reports an error (`level` `error`, or a refusal
/// code), among command arguments.
fn error_code(values: &[Amf0Value]) -> Option<String> {
    values.iter().find_map(|v| {
        let Amf0Value::Object(props) = v else { return None };
        let text = |k: &str| match props.get(k) {
            Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
            _ => None,
        };
        let code = text("code")?;
        // rml_rtmp servers say `_error`.
        let error = text("level").is_some_and(|l| l.trim_start_matches('_') == "error");
        (error || is_refusal(&code)).then_some(code)
    })
}

/// Packets to `out` while live; refusals are errors, events are ignored.
fn collect_live(results: Vec<ClientSessionResult>, out: &mut Vec<u8>) -> Result<(), RelayError> {
    for result in results {
        match result {
            ClientSessionResult::OutboundResponse(packet) => out.extend_from_slice(&packet.bytes),
            ClientSessionResult::RaisedEvent(ClientSessionEvent::UnhandleableOnStatusCode {
                code,
            }) if is_refusal(&code) => return Err(RelayError::PublishRefused(code)),
            _ => {}
        }
    }
    Ok(())
}

/// Writes `bytes`, failing when a write makes no progress for `within`.
async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    within: Duration,
) -> Result<(), RelayError> {
    let mut at = 0;
    while at < bytes.len() {
        let n = tokio::time::timeout(within, w.write(&bytes[at..]))
            .await
            .map_err(|_| RelayError::Timeout("write", within))?
            .map_err(|e| RelayError::Io("write", e))?;
        if n == 0 {
            return Err(RelayError::Closed("while writing"));
        }
        at += n;
    }
    tokio::time::timeout(within, w.flush())
        .await
        .map_err(|_| RelayError::Timeout("write", within))?
        .map_err(|e| RelayError::Io("write", e))
}

/// deleteStream, then close the connection (TLS close_notify): each write bounded by
/// `within`.
async fn close(
    session: &mut ClientSession,
    writer: &mut WriteHalf<Box<dyn Io>>,
    within: Duration,
) -> Result<(), RelayError> {
    let mut out = Vec::new();
    collect_live(session.stop_publishing().map_err(protocol)?, &mut out)?;
    write(writer, &out, within).await?;
    let _ = tokio::time::timeout(within, writer.shutdown()).await;
    Ok(())
}

/// Muxing state of a live connection.
struct Live {
    mux: FlvMuxer,
    tags: Vec<Tag>,
    /// Tracks of the metadata sent, once sent.
    tracks: Option<Tracks>,
    warned: bool,
}

impl Live {
    /// Muxes one event into RTMP packets appended to `out`.
    fn event(
        &mut self,
        session: &mut ClientSession,
        event: &MediaEvent,
        out: &mut Vec<u8>,
        shared: &Shared,
    ) -> Result<(), RelayError> {
        if let MediaEvent::Tracks(tracks) = event {
            if self.tracks.is_none() {
                let packet = session.publish_metadata(&metadata(tracks)).map_err(protocol)?;
                collect_live(vec![packet], out)?;
                self.tracks = Some(tracks.clone());
            }
        }
        if let Err(e) = self.mux.push(event, &mut self.tags) {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(relay = %shared.id, error = %e, "relay skips frames it cannot mux");
            }
        }
        for tag in self.tags.drain(..) {
            let ts = RtmpTimestamp::new(tag.timestamp_ms);
            let packet = if tag.kind == TAG_VIDEO {
                session.publish_video_data(tag.body, ts, false)
            } else {
                session.publish_audio_data(tag.body, ts, false)
            };
            collect_live(vec![packet.map_err(protocol)?], out)?;
        }
        Ok(())
    }
}

/// `onMetaData` of `tracks`: codec ids, AAC rate and channels, encoder.
fn metadata(tracks: &Tracks) -> StreamMetadata {
    let mut m = StreamMetadata::new();
    if tracks.video.is_some() {
        m.video_codec_id = Some(7);
    }
    if let Some(audio) = tracks.audio {
        m.audio_codec_id = Some(10);
        m.audio_sample_rate = sample_rate(audio.sampling_index);
        m.audio_channels = Some(u32::from(audio.channels));
        m.audio_is_stereo = Some(audio.channels >= 2);
    }
    m.encoder = Some("streamstack".into());
    m
}

#[cfg(test)]
#[path = "rtmp_tests.rs"]
mod tests;
