//! RTSP over TLS (`rtsps://`, RFC 7826 §4.2: default port 322; §19.2: TLS from the first
//! byte, then RTSP as over TCP) through a local tunnel, since retina 0.4 speaks only clear
//! TCP and takes no stream from its caller.
//!
//! [`Tunnel::open`] makes the TLS connection to the camera (rustls, certificates verified as
//! [`RtspTls`] says), listens on `127.0.0.1:0` for exactly one connection and pipes bytes
//! both ways between it and the TLS stream; retina is handed
//! `rtsp://127.0.0.1:<port>/path`. Only RTP interleaved on the RTSP connection
//! (RFC 2326 §10.12) goes through the tunnel, so UDP transport is refused for `rtsps://`.
//! Request URIs name `127.0.0.1:<port>`, not the camera: RTSP/1.0 servers route on the path
//! (GStreamer's does, and answers with a `Content-Base` on the same authority); a server
//! that insisted on its own host in request URIs would answer 4xx to DESCRIBE, a
//! [`SourceError::Connect`] naming the status.

use crate::ingest::SourceError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{
    aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;
use url::{Host, Url};

/// Default port of `rtsps://` (RFC 7826 §4.2, IANA "rtsps" 322/tcp).
pub const RTSPS_PORT: u16 = 322;

/// Most distinct sources warned about skipped verification (bounds the memory of
/// [`warn_insecure_once`]).
const MAX_WARNED: usize = 4096;

/// How `rtsps://` cameras' certificates are checked. The default verifies against the
/// system's roots (`rustls-native-certs`: `/etc/ssl/certs`, `SSL_CERT_FILE`/`SSL_CERT_DIR`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtspTls {
    /// PEM file of further trusted certificates, added to the system's roots: a CA that
    /// signed the cameras' certificates, or a camera's self-signed certificate itself. A
    /// certificate in this file that a camera presents as its own is trusted as it is
    /// (pinned: no name, date or CA-flag check — self-signed camera certificates are often
    /// marked `CA:TRUE`, which WebPKI refuses for a server).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (handshake signatures are still checked): the link is
    /// encrypted but the camera unauthenticated. One warning per source is logged.
    pub insecure: bool,
}

/// A local end of a TLS connection to a camera, for one RTSP connection. Dropping it
/// aborts the piping task, which closes both sides.
#[derive(Debug)]
pub(super) struct Tunnel {
    /// `rtsp://127.0.0.1:<port>/path?query` of the listener: the URL to hand retina.
    pub local_url: Url,
    task: JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tunnel {
    /// Connects to `url`'s host (port 322 unless given) over TCP, completes the TLS
    /// handshake (SNI and verification for the URL's host or IP address), and listens on
    /// `127.0.0.1:0` for the one connection it pipes to the camera. `redacted` names the
    /// source in logs. The caller bounds the time taken.
    ///
    /// # Errors
    /// [`SourceError::Connect`]: TCP refused or unreachable, an unreadable or empty CA
    /// file, no trusted roots at all, a certificate that does not verify (the text says
    /// why, e.g. `UnknownIssuer`, `NotValidForName`), or the local listener.
    pub async fn open(url: &Url, tls: &RtspTls, redacted: &str) -> Result<Self, SourceError> {
        let connect = |what: &str, e: &dyn std::fmt::Display| {
            SourceError::Connect(format!("rtsps {what}: {e}"))
        };
        let port = url.port().unwrap_or(RTSPS_PORT);
        let (name, tcp) = match url.host() {
            Some(Host::Domain(domain)) => {
                let name = ServerName::try_from(domain.to_owned())
                    .map_err(|e| SourceError::InvalidUrl(format!("host {domain:?}: {e}")))?;
                (name, TcpStream::connect((domain, port)).await)
            }
            Some(Host::Ipv4(ip)) => (ServerName::from(ip), TcpStream::connect((ip, port)).await),
            Some(Host::Ipv6(ip)) => (ServerName::from(ip), TcpStream::connect((ip, port)).await),
            None => return Err(SourceError::InvalidUrl("no host".into())),
        };
        let tcp = tcp.map_err(|e| connect("TCP connection", &e))?;
        let _ = tcp.set_nodelay(true);
        if tls.insecure {
            warn_insecure_once(redacted);
        }
        let connector = TlsConnector::from(Arc::new(client_config(tls)?));
        let mut camera =
            connector.connect(name, tcp).await.map_err(|e| connect("TLS handshake", &e))?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| connect("local tunnel listener", &e))?;
        let local = listener.local_addr().map_err(|e| connect("local tunnel listener", &e))?;
        let mut local_url = url.clone();
        // rtsp and rtsps are both non-special schemes: the change cannot fail.
        let _ = local_url.set_scheme("rtsp");
        let _ = local_url.set_ip_host(local.ip());
        let _ = local_url.set_port(Some(local.port()));
        let source = redacted.to_owned();
        let task = tokio::spawn(async move {
            // Exactly one connection: the listener closes once retina's is accepted.
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            drop(listener);
            let _ = client.set_nodelay(true);
            match tokio::io::copy_bidirectional(&mut client, &mut camera).await {
                Ok((up, down)) => tracing::debug!(url = %source, up, down, "rtsps tunnel closed"),
                Err(e) => tracing::debug!(url = %source, error = %e, "rtsps tunnel ended"),
            }
        });
        Ok(Self { local_url, task })
    }
}

/// The rustls client configuration `tls` asks for, on the aws-lc-rs provider the AWS SDK
/// already links.
fn client_config(tls: &RtspTls) -> Result<ClientConfig, SourceError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let verifier = Verifier::new(tls, Arc::clone(&provider))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Connect(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// The system's root certificates, read once per process (unreadable ones left out).
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::warn!(errors = ?found.errors, "some system root certificates unreadable");
        }
        found.certs
    })
}

/// Logs that `redacted`'s certificate is not verified, once per source per process.
fn warn_insecure_once(redacted: &str) {
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.len() < MAX_WARNED && !warned.iter().any(|w| w == redacted) {
        warned.push(redacted.to_owned());
        tracing::warn!(
            url = %redacted,
            "rtsps certificate verification is off (--rtsp-tls-insecure): the camera is not authenticated"
        );
    }
}

/// Certificate checks: WebPKI against the system's roots plus the CA file, then the CA
/// file's certificates pinned as they are; or nothing when insecure. Handshake signatures
/// are always verified.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn new(tls: &RtspTls, provider: Arc<CryptoProvider>) -> Result<Self, SourceError> {
        if tls.insecure {
            return Ok(Self { webpki: None, pinned: vec![], provider });
        }
        let pinned = match &tls.ca_file {
            Some(path) => read_pem_certs(path)?,
            None => vec![],
        };
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(native_roots().iter().cloned());
        // A certificate that cannot be a trust anchor may still be pinned.
        roots.add_parsable_certificates(pinned.iter().cloned());
        let webpki = match roots.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| SourceError::Connect(format!("TLS roots: {e}")))?,
            ),
        };
        if webpki.is_none() && pinned.is_empty() {
            return Err(SourceError::Connect(
                "no trusted root certificates for rtsps (none on the system): give a CA file \
                 (--rtsp-ca-file) or turn verification off (--rtsp-tls-insecure)"
                    .into(),
            ));
        }
        Ok(Self { webpki, pinned, provider })
    }
}

/// The certificates of a PEM file.
fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, SourceError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SourceError::Connect(format!("CA file {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(SourceError::Connect(format!("CA file {shown}: no PEM certificate in it")));
    }
    Ok(certs)
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        let Some(webpki) = &self.webpki else {
            if self.pinned.is_empty() {
                // Insecure: nothing to check the identity against.
                return Ok(ServerCertVerified::assertion());
            }
            return match self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
                true => Ok(ServerCertVerified::assertion()),
                false => Err(tokio_rustls::rustls::CertificateError::UnknownIssuer.into()),
            };
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(verified) => Ok(verified),
            Err(_) if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
