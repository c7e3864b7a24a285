//! `--target`: where the egress datagrams go, `udp://<ip>:<port>?ttl=N&localaddr=IP`.
//!
//! - a multicast group (IPv4, RFC 1112; source-specific groups 232/8, RFC 4607): sent with
//!   `IP_MULTICAST_TTL` = `ttl` (default [`DEFAULT_MULTICAST_TTL`]), loopback on (receivers
//!   on the same host get a copy), and with `localaddr` the outgoing interface
//!   (`IP_MULTICAST_IF`, RFC 1112 §7.1) and the source address (the bind address) that SSM
//!   receivers filter on;
//! - a unicast address: `ttl` sets the unicast TTL (`IP_TTL`) when given, `localaddr` the
//!   bind address.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// TTL of multicast datagrams when the target does not give one: 16 hops (a site).
pub const DEFAULT_MULTICAST_TTL: u32 = 16;

/// Send buffer asked of the kernel, bytes: ~50 ms at 80 Mbit/s, so a scheduling hiccup
/// never drops a datagram locally.
const SEND_BUFFER_BYTES: usize = 1 << 20;

/// A parsed `--target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTarget {
    /// Destination: group or unicast address and UDP port.
    pub dest: SocketAddr,
    /// IP TTL (hop limit), 1..=255; `None`: [`DEFAULT_MULTICAST_TTL`] for multicast, the
    /// system default for unicast.
    pub ttl: Option<u32>,
    /// Local address: bind address and, for multicast, the outgoing interface.
    pub localaddr: Option<IpAddr>,
}

/// Why a `--target` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not `udp://<ip>:<port>[?ttl=N&localaddr=IP]`; says what.
    #[error("invalid target: {0}")]
    Invalid(String),
    /// Creating, configuring or binding the socket failed.
    #[error("UDP socket: {0}")]
    Socket(#[from] std::io::Error),
}

fn invalid(why: impl Into<String>) -> TargetError {
    TargetError::Invalid(why.into())
}

impl FromStr for UdpTarget {
    type Err = TargetError;

    /// Parses `udp://<ip>:<port>?ttl=N&localaddr=IP` (IP literals only, IPv6 in brackets;
    /// IPv6 multicast is refused: its interface is an index, not an address).
    fn from_str(s: &str) -> Result<Self, TargetError> {
        let url = url::Url::parse(s).map_err(|e| invalid(format!("{e}")))?;
        if url.scheme() != "udp" {
            return Err(invalid(format!("scheme {:?}: expected udp://", url.scheme())));
        }
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| invalid(format!("host {host:?} is not an IP address")))?;
        let port = url.port().filter(|p| *p != 0).ok_or_else(|| invalid("no port"))?;
        if !url.path().is_empty() && url.path() != "/" {
            return Err(invalid("unexpected path"));
        }
        let mut target = Self { dest: SocketAddr::new(ip, port), ttl: None, localaddr: None };
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "ttl" => {
                    let ttl = value.parse().ok().filter(|t| (1..=255).contains(t));
                    target.ttl = Some(ttl.ok_or_else(|| invalid(format!("ttl {value:?}")))?);
                }
                "localaddr" => {
                    let addr =
                        value.parse().map_err(|_| invalid(format!("localaddr {value:?}")))?;
                    target.localaddr = Some(addr);
                }
                other => return Err(invalid(format!("unknown parameter {other:?}"))),
            }
        }
        if ip.is_ipv6() && ip.is_multicast() {
            return Err(invalid("IPv6 multicast is not supported"));
        }
        if target.localaddr.is_some_and(|l| l.is_ipv4() != ip.is_ipv4()) {
            return Err(invalid("localaddr and destination are of different IP versions"));
        }
        Ok(target)
    }
}

impl UdpTarget {
    /// Whether the destination is a multicast group.
    pub fn is_multicast(&self) -> bool {
        self.dest.ip().is_multicast()
    }

    /// The TTL datagrams leave with, if set explicitly or by default (multicast).
    pub fn effective_ttl(&self) -> Option<u32> {
        match self.ttl {
            Some(ttl) => Some(ttl),
            None if self.is_multicast() => Some(DEFAULT_MULTICAST_TTL),
            None => None,
        }
    }

    /// Opens the sending socket: bound to `localaddr` (or the unspecified address) on an
    /// ephemeral port, not connected (a unicast receiver that is down must not turn sends
    /// into `ECONNREFUSED` errors), TTL and multicast interface set as the target says.
    ///
    /// # Errors
    /// [`TargetError::Socket`] when the OS refuses an option or the bind (e.g. a
    /// `localaddr` that is no local address). Must be called within a Tokio runtime.
    pub fn open(&self) -> Result<tokio::net::UdpSocket, TargetError> {
        let socket = Socket::new(Domain::for_address(self.dest), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
        match (self.dest.ip(), self.effective_ttl()) {
            (IpAddr::V4(group), ttl) if group.is_multicast() => {
                socket.set_multicast_ttl_v4(ttl.unwrap_or(DEFAULT_MULTICAST_TTL))?;
                socket.set_multicast_loop_v4(true)?;
                if let Some(IpAddr::V4(local)) = self.localaddr {
                    socket.set_multicast_if_v4(&local)?;
                }
            }
            (IpAddr::V6(group), ttl) if group.is_multicast() => {
                socket.set_multicast_hops_v6(ttl.unwrap_or(DEFAULT_MULTICAST_TTL))?;
                // The interface: the destination's scope id, when it has one.
                if let SocketAddr::V6(dest) = self.dest {
                    if dest.scope_id() != 0 {
                        socket.set_multicast_if_v6(dest.scope_id())?;
                    }
                }
            }
            (IpAddr::V4(_), Some(ttl)) => socket.set_ttl_v4(ttl)?,
            (IpAddr::V6(_), Some(ttl)) => socket.set_unicast_hops_v6(ttl)?,
            _ => {}
        }
        let bind_ip = self.localaddr.unwrap_or(match self.dest {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        socket.bind(&SocketAddr::new(bind_ip, 0).into())?;
        socket.set_nonblocking(true)?;
        Ok(tokio::net::UdpSocket::from_std(socket.into())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_with_ttl_and_localaddr() {
        let t: UdpTarget = "udp://232.10.11.12:5000?ttl=1&localaddr=127.0.0.2".parse().unwrap();
        assert_eq!(t.dest, "232.10.11.12:5000".parse().unwrap());
        assert_eq!((t.ttl, t.localaddr), (Some(1), Some("127.0.0.2".parse().unwrap())));
        assert!(t.is_multicast());
        assert_eq!(t.effective_ttl(), Some(1));
    }

    #[test]
    fn defaults_multicast_ttl_16_and_none_for_unicast() {
        let m: UdpTarget = "udp://239.1.2.3:1234".parse().unwrap();
        assert_eq!(m.effective_ttl(), Some(DEFAULT_MULTICAST_TTL));
        let u: UdpTarget = "udp://127.0.0.1:1234".parse().unwrap();
        assert!(!u.is_multicast());
        assert_eq!(u.effective_ttl(), None);
        let v6: UdpTarget = "udp://[::1]:1234?ttl=3".parse().unwrap();
        assert_eq!(v6.dest, "[::1]:1234".parse().unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_send_to() {
        for bad in [
            "http://1.2.3.4:5",
            "udp://host.example:5000",
            "udp://1.2.3.4",
            "udp://1.2.3.4:0",
            "udp://1.2.3.4:5/path",
            "udp://1.2.3.4:5?ttl=0",
            "udp://1.2.3.4:5?ttl=256",
            "udp://1.2.3.4:5?ttl=x",
            "udp://1.2.3.4:5?localaddr=nope",
            "udp://1.2.3.4:5?localaddr=::1",
            "udp://1.2.3.4:5?pkt_size=1316",
            "udp://[ff02::1]:5000",
            "not a url",
        ] {
            assert!(bad.parse::<UdpTarget>().is_err(), "{bad} parsed");
        }
    }

    #[tokio::test]
    async fn an_ipv6_multicast_target_gets_multicast_hops() {
        // `--target` refuses IPv6 multicast; a target built otherwise still gets hops.
        let t =
            UdpTarget { dest: "[ff15::1234]:5000".parse().unwrap(), ttl: Some(5), localaddr: None };
        // No IPv6 here: nothing to check.
        let Ok(socket) = t.open() else { return };
        let socket = socket2::SockRef::from(&socket);
        assert_eq!(socket.multicast_hops_v6().unwrap(), 5);
    }

    #[tokio::test]
    async fn opens_a_socket_bound_to_localaddr() {
        let t: UdpTarget = "udp://127.0.0.1:9?ttl=4&localaddr=127.0.0.1".parse().unwrap();
        let socket = t.open().unwrap();
        assert_eq!(socket.local_addr().unwrap().ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(socket.ttl().unwrap(), 4);
    }
}
