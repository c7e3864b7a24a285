//! MPEG-TS over UDP: `udp://host:port` unicast and `udp://group:port?source=S&interface=I`
//! multicast, demuxed by [`crate::ingest::mpegts`].
//!
//! Multicast joins go through `socket2`: any-source (RFC 1112, `IP_ADD_MEMBERSHIP`) or, with
//! `source=`, source-specific (RFC 4607, `IP_ADD_SOURCE_MEMBERSHIP`; groups are usually in
//! 232/8). The socket is bound to the group address, not `0.0.0.0`: Linux then delivers only
//! datagrams sent to that group, whereas a wildcard bind would also receive other groups on
//! the same port that any socket of the host joined (and `IP_MULTICAST_ALL` is turned off
//! too, so a socket receives only groups it joined itself). Source filters are per socket:
//! two sources on one group and port with different `source=` stay apart. `SO_REUSEADDR`
//! lets several sources (and processes) receive one group.
//!
//! URL query parameters: `source=IPv4` (SSM), `interface=IPv4` (the local address of the
//! interface to join on; default: the kernel's route to the group), `program=N` (MPEG-TS
//! program number). Anything else is [`SourceError::InvalidUrl`].

use super::mpegts::{DemuxStats, TsDemuxer};
use super::{redact_url, MediaSource, SourceError};
use crate::media::{MediaEvent, MediaLimits};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Largest UDP payload, bytes.
const MAX_DATAGRAM: usize = 65_536;
/// Receive statistics are logged at most this often.
const STATS_EVERY: Duration = Duration::from_secs(60);

/// How UDP sources are received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpOptions {
    /// No datagram for this long ends the source with [`SourceError::Timeout`]; default 5 s.
    pub receive_timeout: Duration,
    /// Socket receive buffer asked for (`SO_RCVBUF`), bytes; default 4 MiB, 1.6 s of a
    /// 20 Mb/s stream. The kernel caps it at `net.core.rmem_max` (logged).
    pub receive_buffer_bytes: usize,
    /// Bounds on the media (PES size, parameter sets).
    pub limits: MediaLimits,
}

impl Default for UdpOptions {
    /// 5 s receive timeout, 4 MiB receive buffer, default limits.
    fn default() -> Self {
        Self {
            receive_timeout: Duration::from_secs(5),
            receive_buffer_bytes: 4 << 20,
            limits: MediaLimits::default(),
        }
    }
}

/// A multicast membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The group (224.0.0.0/4).
    pub group: Ipv4Addr,
    /// SSM: the only sender accepted.
    pub source: Option<Ipv4Addr>,
    /// Local address of the interface to join on; `0.0.0.0`: chosen by the kernel's route.
    pub interface: Ipv4Addr,
}

/// What a `udp://` URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTarget {
    /// Address the socket binds: the unicast address, or the group and port.
    pub bind: SocketAddr,
    /// The multicast join, for a group address.
    pub membership: Option<Membership>,
    /// MPEG-TS program number to record; `None`: the first with H.264.
    pub program: Option<u16>,
}

fn invalid(url: &str, why: impl std::fmt::Display) -> SourceError {
    SourceError::InvalidUrl(format!("{}: {why}", redact_url(url)))
}

/// Parses a `udp://host:port[?source=S&interface=I&program=N]` URL. A host name (unicast
/// only) is resolved.
///
/// # Errors
/// [`SourceError::InvalidUrl`]: another scheme, no port, a path, userinfo, an unknown or
/// repeated query parameter, `source`/`interface` without an IPv4 multicast group.
pub async fn parse_url(url: &str) -> Result<UdpTarget, SourceError> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, e))?;
    if parsed.scheme() != "udp" {
        return Err(invalid(url, "expected udp://"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(url, "user information is not used by udp://"));
    }
    if !matches!(parsed.path(), "" | "/") || parsed.fragment().is_some() {
        return Err(invalid(url, "udp:// takes no path"));
    }
    let port = parsed.port().ok_or_else(|| invalid(url, "a port is required"))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid(url, "a host is required (0.0.0.0 for any local address)"));
    }
    let (mut source, mut interface, mut program) = (None, None, None);
    for (key, value) in parsed.query_pairs() {
        let slot = match &*key {
            "source" => &mut source,
            "interface" => &mut interface,
            "program" => &mut program,
            other => {
                return Err(invalid(
                    url,
                    format!("unknown parameter {other:?} (expected source, interface, program)"),
                ))
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(invalid(url, format!("parameter {key:?} repeated")));
        }
    }
    let ipv4 = |name: &str, value: Option<String>| -> Result<Option<Ipv4Addr>, SourceError> {
        value
            .map(|v| {
                v.parse().map_err(|_| invalid(url, format!("{name}={v:?} is not an IPv4 address")))
            })
            .transpose()
    };
    let source = ipv4("source", source)?;
    let interface = ipv4("interface", interface)?;
    let program = program
        .map(|p| {
            p.parse::<u16>().map_err(|_| invalid(url, format!("program={p:?} is not 0..65535")))
        })
        .transpose()?;
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(|a| a.ip())
            .ok_or_else(|| invalid(url, format!("cannot resolve {host:?}")))?,
    };
    let membership = match ip {
        IpAddr::V4(group) if group.is_multicast() => Some(Membership {
            group,
            source,
            interface: interface.unwrap_or(Ipv4Addr::UNSPECIFIED),
        }),
        IpAddr::V6(group) if group.is_multicast() => {
            return Err(invalid(url, "IPv6 multicast is not supported"));
        }
        _ if source.is_some() || interface.is_some() => {
            return Err(invalid(url, "source= and interface= need a multicast group address"));
        }
        _ => None,
    };
    Ok(UdpTarget { bind: SocketAddr::new(ip, port), membership, program })
}

/// A bound (and joined) socket with its receive buffer, as the kernel granted it.
fn socket(target: &UdpTarget, options: &UdpOptions) -> std::io::Result<(Socket, usize)> {
    let socket = Socket::new(Domain::for_address(target.bind), Type::DGRAM, Some(Protocol::UDP))?;
    if target.membership.is_some() {
        socket.set_reuse_address(true)?;
        #[cfg(target_os = "linux")]
        socket.set_multicast_all_v4(false)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(options.receive_buffer_bytes) {
        tracing::warn!(error = %e, "cannot set the UDP receive buffer size");
    }
    let granted = socket.recv_buffer_size()?;
    socket.bind(&target.bind.into())?;
    if let Some(m) = target.membership {
        match m.source {
            Some(source) => socket.join_ssm_v4(&source, &m.group, &m.interface)?,
            None => socket.join_multicast_v4(&m.group, &m.interface)?,
        }
    }
    socket.set_nonblocking(true)?;
    Ok((socket, granted))
}

/// Binds (and joins) the address `url` names and starts demuxing what arrives.
///
/// # Errors
/// [`SourceError::InvalidUrl`] (see [`parse_url`]); [`SourceError::Connect`] when the
/// address cannot be bound (in use, not local) or the join fails (no such interface, no
/// multicast route).
pub async fn open(url: &str, options: &UdpOptions) -> Result<UdpSource, SourceError> {
    let target = parse_url(url).await?;
    let shown = redact_url(url);
    let (socket, granted) = socket(&target, options)
        .map_err(|e| SourceError::Connect(format!("{shown}: bind {} or join: {e}", target.bind)))?;
    // Linux reports twice the size asked for (half is bookkeeping); less than asked means the
    // kernel capped it.
    if granted < options.receive_buffer_bytes {
        tracing::warn!(
            url = %shown,
            asked = options.receive_buffer_bytes,
            granted,
            "UDP receive buffer capped by the kernel (raise net.core.rmem_max): bursts may be lost"
        );
    }
    let socket = UdpSocket::from_std(socket.into())?;
    tracing::info!(url = %shown, bind = %target.bind, membership = ?target.membership, program = ?target.program, "UDP source open");
    Ok(UdpSource {
        socket,
        demuxer: TsDemuxer::new(options.limits, target.program),
        events: VecDeque::new(),
        scratch: Vec::new(),
        buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        timeout: options.receive_timeout,
        bytes_in: 0,
        url: shown,
        logged: (Instant::now(), DemuxStats::default()),
    })
}

/// A UDP MPEG-TS source (see the module documentation). Never ends by itself: a sender that
/// stops shows as [`SourceError::Timeout`].
#[derive(Debug)]
pub struct UdpSource {
    socket: UdpSocket,
    demuxer: TsDemuxer,
    events: VecDeque<MediaEvent>,
    scratch: Vec<MediaEvent>,
    buf: Box<[u8]>,
    timeout: Duration,
    bytes_in: u64,
    url: String,
    logged: (Instant, DemuxStats),
}

impl UdpSource {
    /// The local address the socket is bound to (the group's, for multicast).
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The demuxer's counters (packets, continuity errors, resyncs, …).
    pub fn stats(&self) -> DemuxStats {
        self.demuxer.stats()
    }

    fn log_stats(&mut self) {
        let (at, before) = self.logged;
        if at.elapsed() < STATS_EVERY {
            return;
        }
        let now = self.demuxer.stats();
        tracing::info!(
            url = %self.url,
            bytes = now.bytes - before.bytes,
            packets = now.packets - before.packets,
            frames = now.frames - before.frames,
            cc_errors = now.cc_errors - before.cc_errors,
            resyncs = now.resyncs - before.resyncs,
            dropped_pes = now.dropped_pes - before.dropped_pes,
            oversize_pes = now.oversize_pes - before.oversize_pes,
            invalid_packets = now.invalid_packets - before.invalid_packets,
            dropped_audio = (now.excess_audio_frames + now.distant_audio_frames)
                - (before.excess_audio_frames + before.distant_audio_frames),
            discontinuities = now.discontinuities - before.discontinuities,
            "UDP source in the last minute"
        );
        self.logged = (Instant::now(), now);
    }
}

#[async_trait::async_trait]
impl MediaSource for UdpSource {
    async fn next_event(&mut self) -> Result<Option<MediaEvent>, SourceError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            let n = tokio::time::timeout(self.timeout, self.socket.recv(&mut self.buf))
                .await
                .map_err(|_| SourceError::Timeout(self.timeout))??;
            self.bytes_in += n as u64;
            let pushed = self.demuxer.push(&self.buf[..n], &mut self.scratch);
            self.events.extend(self.scratch.drain(..));
            pushed.map_err(|e| SourceError::Unsupported(e.to_string()))?;
            self.log_stats();
        }
    }

    fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// The socket stays bound (and joined) through a quiet spell.
    fn survives_timeout(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
