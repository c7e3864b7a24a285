//! A UDP receiver that keeps every datagram with its arrival time, for pacing checks: joined
//! to a source-specific multicast group (IP_ADD_SOURCE_MEMBERSHIP, RFC 4607) or bound to a
//! unicast address.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One received datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// When `recv` returned it.
    pub at: Instant,
    /// Its payload.
    pub bytes: Vec<u8>,
}

/// A receiving thread; [`Recorder::stop`] ends it and hands over what it got.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Datagram>>,
}

impl Recorder {
    /// Joins `group` from `source` only, on `port` (address reuse on, as ffmpeg does, so
    /// another receiver may share the port).
    ///
    /// # Panics
    /// When the socket cannot be set up.
    pub fn ssm(group: Ipv4Addr, port: u16, source: Ipv4Addr) -> Self {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.bind(&SocketAddrV4::new(group, port).into()).expect("bind group");
        socket.join_ssm_v4(&source, &group, &Ipv4Addr::UNSPECIFIED).expect("SSM join");
        Self::spawn(socket)
    }

    /// Binds `addr` (unicast).
    ///
    /// # Panics
    /// When the socket cannot be set up.
    pub fn unicast(addr: SocketAddr) -> Self {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .expect("socket");
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.bind(&addr.into()).expect("bind");
        Self::spawn(socket)
    }

    fn spawn(socket: Socket) -> Self {
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        let socket: std::net::UdpSocket = socket.into();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    got.push(Datagram { at: Instant::now(), bytes: buf[..n].to_vec() });
                }
            }
            got
        });
        Self { stop, thread }
    }

    /// Stops receiving; everything received.
    pub fn stop(self) -> Vec<Datagram> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("recorder thread")
    }
}

/// Pacing figures of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// Datagrams.
    pub datagrams: usize,
    /// From the first to the last, seconds.
    pub span_secs: f64,
    /// Inter-arrival gaps, longest first, milliseconds (the 3 longest).
    pub longest_gaps_ms: Vec<f64>,
    /// Longest run of datagrams each arriving within 1 ms of the one before (a burst).
    pub max_burst: usize,
    /// Where that run ended, seconds from the first datagram.
    pub max_burst_at_secs: f64,
    /// Datagrams per second, over 100 ms windows: the largest.
    pub max_rate_100ms: f64,
}

/// [`Pacing`] of `datagrams`.
pub fn pacing(datagrams: &[Datagram]) -> Pacing {
    let mut gaps: Vec<f64> =
        datagrams.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0).collect();
    let mut max_burst = usize::from(!datagrams.is_empty());
    let mut max_burst_at_secs = 0.0;
    let mut run = 1;
    for (i, gap) in gaps.iter().enumerate() {
        run = if *gap < 1.0 { run + 1 } else { 1 };
        if run > max_burst {
            max_burst = run;
            max_burst_at_secs = (datagrams[i + 1].at - datagrams[0].at).as_secs_f64();
        }
    }
    let mut max_window = 0;
    let mut start = 0;
    for end in 0..datagrams.len() {
        while datagrams[end].at - datagrams[start].at >= Duration::from_millis(100) {
            start += 1;
        }
        max_window = max_window.max(end - start + 1);
    }
    gaps.sort_by(|a, b| b.total_cmp(a));
    gaps.truncate(3);
    let span_secs = match (datagrams.first(), datagrams.last()) {
        (Some(a), Some(b)) => (b.at - a.at).as_secs_f64(),
        _ => 0.0,
    };
    Pacing {
        datagrams: datagrams.len(),
        span_secs,
        longest_gaps_ms: gaps,
        max_burst,
        max_burst_at_secs,
        max_rate_100ms: max_window as f64 * 10.0,
    }
}
