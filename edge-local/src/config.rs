//! Command line and environment of `edge-local`, and the settings built from them.

use crate::cors::{Cors, OriginError};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use streamstack_core::cloudfront::{KeyError, Verifier};
use thiserror::Error;

/// Serve the media bucket as the CloudFront distribution does: `live/`, `outputs/`,
/// `devices/` public; `signed/` only with a valid signed URL or signed cookies.
#[derive(Debug, Clone, Parser)]
#[command(name = "edge-local", version)]
pub struct Args {
    /// Address to listen on (plain HTTP).
    #[arg(long, env = "EDGE_LISTEN", default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// The media bucket (the distribution's origin).
    #[arg(long, env = "MEDIA_BUCKET")]
    pub bucket: String,
    /// Id of a trusted public key (CloudFront's `Key-Pair-Id`); repeat with one
    /// `--public-key-file` each, in the same order. The environment variable is
    /// comma-separated.
    #[arg(long = "key-pair-id", env = "PLAYBACK_KEY_PAIR_ID", value_delimiter = ',')]
    pub key_pair_ids: Vec<String>,
    /// PEM file of a trusted public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`), the
    /// n-th for the n-th `--key-pair-id`. None: every `signed/` request is refused.
    #[arg(long = "public-key-file", env = "PLAYBACK_PUBLIC_KEY_FILE", value_delimiter = ',')]
    pub public_key_files: Vec<PathBuf>,
    /// Origin (`scheme://host[:port]`) answered with CORS headers allowing credentials;
    /// repeatable. The environment variable is comma-separated. None: no CORS headers.
    #[arg(long = "allowed-origin", env = "PLAYBACK_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

/// Settings that cannot be used (no message contains key material).
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `--key-pair-id` and `--public-key-file` counts differ.
    #[error("{ids} --key-pair-id for {files} --public-key-file: give one file per id")]
    KeyCount {
        /// How many ids.
        ids: usize,
        /// How many files.
        files: usize,
    },
    /// A public key file cannot be read.
    #[error("reading public key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A public key or its id is unusable.
    #[error("public key {path} (key pair id {id}): {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The key pair id it was given for.
        id: String,
        /// What is wrong.
        #[source]
        source: KeyError,
    },
    /// An allowed origin is not `scheme://host[:port]`.
    #[error(transparent)]
    Origin(#[from] OriginError),
}

impl Args {
    /// The verifier trusting every `--key-pair-id`/`--public-key-file` pair (empty when none
    /// is given: then every signed request is refused).
    ///
    /// # Errors
    /// [`ConfigError`] for unequal counts, an unreadable file or an unusable key.
    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        let (ids, files) = (&self.key_pair_ids, &self.public_key_files);
        if ids.len() != files.len() {
            return Err(ConfigError::KeyCount { ids: ids.len(), files: files.len() });
        }
        let mut verifier = Verifier::new();
        for (id, path) in ids.iter().zip(files) {
            let pem = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            verifier = verifier.trust(id, &pem).map_err(|source| ConfigError::Key {
                path: path.clone(),
                id: id.clone(),
                source,
            })?;
        }
        Ok(verifier)
    }

    /// The CORS policy of `--allowed-origin`.
    ///
    /// # Errors
    /// [`ConfigError::Origin`] for an origin that is not `scheme://host[:port]`.
    pub fn cors(&self) -> Result<Cors, ConfigError> {
        Ok(Cors::new(self.allowed_origins.iter().filter(|o| !o.is_empty()).cloned())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("edge-local").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn flags_pair_ids_with_files() {
        let args = parse(&[
            "--bucket",
            "media",
            "--key-pair-id",
            "K1",
            "--public-key-file",
            "/nonexistent.pem",
            "--allowed-origin",
            "https://a.example,http://127.0.0.1:3000",
        ]);
        assert_eq!(args.listen.to_string(), "127.0.0.1:8088");
        assert_eq!(args.allowed_origins.len(), 2);
        assert!(matches!(args.verifier(), Err(ConfigError::Read { .. })));
        let args = parse(&["--bucket", "media", "--key-pair-id", "K1"]);
        assert!(matches!(args.verifier(), Err(ConfigError::KeyCount { ids: 1, files: 0 })));
        assert!(parse(&["--bucket", "m"]).verifier().is_ok());
        let bad = parse(&["--bucket", "m", "--allowed-origin", "*"]);
        assert!(matches!(bad.cors(), Err(ConfigError::Origin(_))));
    }
}
