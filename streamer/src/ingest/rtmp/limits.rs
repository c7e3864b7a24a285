//! Resource bounds of the RTMP server: connection counts, deadlines and sizes
//! ([`RtmpLimits`]), the per-source-IP connection table ([`ConnectionTable`]) and per-source
//! rate limits on refusal log lines and publish authorizations ([`SourceRate`]).

use super::guard::ChunkLimits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What one RTMP server lets its peers cost. Every field has a safe default
/// ([`RtmpLimits::default`]); `streamer serve` exposes each as a flag and environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpLimits {
    /// Open connections in all; further connections are accepted and closed at once.
    pub max_connections: usize,
    /// Open connections from one source IP address.
    pub max_connections_per_ip: usize,
    /// From accept to an authorized publish: handshake, `connect`, `createStream` and
    /// `publish` must all happen within this time.
    pub auth_deadline: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A write to the peer that does not complete within this time closes the connection.
    pub write_timeout: Duration,
    /// Bytes a peer may send before its publish is authorized (handshake included).
    pub max_unauthorized_bytes: u64,
    /// Largest message a peer may announce before its publish is authorized, bytes.
    pub max_unauthorized_message: u32,
    /// Largest message a publisher may announce (one video access unit), bytes.
    pub max_message: u32,
    /// Largest chunk size a peer may announce with `SetChunkSize`, bytes.
    pub max_chunk_size: u32,
    /// Publish requests one source IP may have checked against the channel table per
    /// minute; more are refused without a table read.
    pub publish_attempts_per_minute: u32,
}

impl Default for RtmpLimits {
    /// 2,000 connections, 32 per source IP, 10 s to an authorized publish, 30 s idle, 10 s
    /// per write, 64 KiB and 16 KiB messages before authorization, 8 MiB messages and
    /// 1 MiB chunks after, 60 publish attempts per source IP and minute.
    fn default() -> Self {
        Self {
            max_connections: 2_000,
            max_connections_per_ip: 32,
            auth_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_unauthorized_bytes: 64 * 1024,
            max_unauthorized_message: 16 * 1024,
            max_message: 8 * 1024 * 1024,
            max_chunk_size: 1024 * 1024,
            publish_attempts_per_minute: 60,
        }
    }
}

impl RtmpLimits {
    /// The chunk-layer limits of a connection before its publish is authorized.
    pub fn unauthorized_chunks(&self) -> ChunkLimits {
        ChunkLimits {
            max_chunk_size: self.max_chunk_size,
            max_message_bytes: self.max_unauthorized_message,
        }
    }
}

/// The address a source is counted under: an IPv4 address itself (IPv4-mapped IPv6 too),
/// an IPv6 address's /64 network (one host may use a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

/// Counts open connections, in all and per source IP ([`source_key`]). [`ConnectionTable::admit`] hands out a
/// [`ConnectionPermit`] that gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnectionTable {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// [`RtmpLimits::max_connections`] reached.
    #[error("server connection limit reached")]
    ServerFull,
    /// [`RtmpLimits::max_connections_per_ip`] reached for this address.
    #[error("connection limit per source address reached")]
    AddressFull,
}

impl ConnectionTable {
    /// A table enforcing the connection counts of `limits`.
    pub fn new(limits: &RtmpLimits) -> Arc<Self> {
        Arc::new(Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a connection from `ip`.
    ///
    /// # Errors
    /// [`Refusal`] when either count is at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let ip = source_key(ip);
        let mut open = self.lock();
        if open.0 >= self.max_total {
            return Err(Refusal::ServerFull);
        }
        let from_ip = open.1.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::AddressFull);
        }
        *from_ip += 1;
        open.0 += 1;
        Ok(ConnectionPermit { table: Arc::clone(self), ip })
    }

    /// Open connections in all.
    pub fn open(&self) -> usize {
        self.lock().0
    }
}

/// One admitted connection's slot in a [`ConnectionTable`].
#[derive(Debug)]
pub struct ConnectionPermit {
    table: Arc<ConnectionTable>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// At most `per_window` events per source ([`source_key`]) per `window`: refusal log lines
/// (so a client hammering the port cannot flood the logs) and publish authorizations (so it
/// cannot make the server read the channel table at will). Tracks at most
/// [`SourceRate::MAX_ADDRESSES`] sources; beyond that, events from new sources are refused
/// until the window rolls over.
#[derive(Debug)]
pub struct SourceRate {
    per_window: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32, u64)>>,
}

impl SourceRate {
    /// Sources tracked at once.
    pub const MAX_ADDRESSES: usize = 4096;
    /// Refusal log lines per source and minute.
    pub const LOG_LINES_PER_MINUTE: u32 = 5;

    /// A limit of `per_window` events per source per `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window, window, seen: Mutex::new(HashMap::new()) }
    }

    /// The refusal log limit: [`SourceRate::LOG_LINES_PER_MINUTE`] lines per source.
    pub fn refusal_log() -> Self {
        Self::new(Self::LOG_LINES_PER_MINUTE, Duration::from_secs(60))
    }

    /// Whether an event from `ip` may happen now: `Some(n)` with the number of events
    /// refused since the last one let through, `None` to refuse it.
    pub fn admit(&self, ip: IpAddr) -> Option<u64> {
        let ip = source_key(ip);
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= Self::MAX_ADDRESSES && !seen.contains_key(&ip) {
            let window = self.window;
            seen.retain(|_, (start, _, _)| now.duration_since(*start) < window);
            if seen.len() >= Self::MAX_ADDRESSES {
                return None;
            }
        }
        let entry = seen.entry(ip).or_insert((now, 0, 0));
        if now.duration_since(entry.0) >= self.window {
            entry.0 = now;
            entry.1 = 0;
        }
        if entry.1 < self.per_window {
            entry.1 += 1;
            Some(std::mem::take(&mut entry.2))
        } else {
            entry.2 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_per_address_and_in_all() {
        let limits =
            RtmpLimits { max_connections: 3, max_connections_per_ip: 2, ..RtmpLimits::default() };
        let table = ConnectionTable::new(&limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = table.admit(a).unwrap();
        let _a2 = table.admit(a).unwrap();
        assert_eq!(table.admit(a).unwrap_err(), Refusal::AddressFull);
        let _b1 = table.admit(b).unwrap();
        assert_eq!(table.admit(b).unwrap_err(), Refusal::ServerFull);
        drop(a1);
        assert_eq!(table.open(), 2);
        let _a3 = table.admit(a).unwrap();

        // Two addresses of one IPv6 /64 count as one source.
        let table = ConnectionTable::new(&RtmpLimits { max_connections_per_ip: 1, ..limits });
        let _v6 = table.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            table.admit("2001:db8::2:3".parse().unwrap()).unwrap_err(),
            Refusal::AddressFull
        );
        assert!(table.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn events_are_rate_limited_per_address() {
        let log = SourceRate::refusal_log();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..100).filter(|_| log.admit(a).is_some()).count();
        assert_eq!(allowed, SourceRate::LOG_LINES_PER_MINUTE as usize);
        assert_eq!(log.admit(b), Some(0), "another address is not affected");
    }
}
