//! Resolving a destination's host, refusing addresses a destination may not have: link-local
//! ones (169.254.0.0/16, fe80::/10), where the task and instance metadata endpoints answer
//! (169.254.169.254, 169.254.170.2), and unspecified, broadcast or multicast ones. Checked
//! after resolution, on every connection attempt, so a name re-pointed later is caught too.

use super::RelayError;
use std::net::{IpAddr, SocketAddr};

/// The addresses `host:port` resolves to that a destination may use.
///
/// # Errors
/// [`RelayError::Connect`] when the name does not resolve, or resolves only to refused
/// addresses.
pub(super) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, RelayError> {
    let all: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(RelayError::Connect)?.collect();
    let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| allowed(a.ip())).collect();
    if allowed.is_empty() {
        let why = if all.is_empty() {
            "resolves to no address"
        } else {
            "resolves to a refused address (link-local, metadata, multicast)"
        };
        return Err(RelayError::Connect(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            why,
        )));
    }
    Ok(allowed)
}

/// Whether a destination may be at `ip`.
pub(super) fn allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast())
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => allowed(IpAddr::V4(v4)),
            None => !(v6.is_unicast_link_local() || v6.is_unspecified() || v6.is_multicast()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_metadata_link_local_and_multicast() {
        for refused in [
            "169.254.169.254",
            "169.254.170.2",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "::ffff:169.254.169.254",
            "ff02::1",
            "::",
        ] {
            assert!(!allowed(refused.parse().unwrap()), "{refused}");
        }
        for ok in ["127.0.0.1", "10.0.0.5", "203.0.113.7", "::1", "2001:db8::1"] {
            assert!(allowed(ok.parse().unwrap()), "{ok}");
        }
    }

    #[tokio::test]
    async fn metadata_endpoint_is_refused_before_connecting() {
        let e = resolve("169.254.169.254", 80).await.unwrap_err();
        assert!(e.to_string().contains("refused address"), "{e}");
        assert!(resolve("127.0.0.1", 1935).await.is_ok());
    }
}
