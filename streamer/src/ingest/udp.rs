//! placeholder (the UDP helper replaces this file): the API `crate::pull` expects.
#![allow(missing_docs, dead_code)]

use super::{MediaSource, SourceError};
use crate::media::MediaEvent;

#[derive(Debug, Clone, Default)]
pub struct UdpOptions {}

pub struct UdpSource;

pub async fn open(_url: &str, _options: &UdpOptions) -> Result<UdpSource, SourceError> {
    Err(SourceError::Connect("UDP not built yet".into()))
}

#[async_trait::async_trait]
impl MediaSource for UdpSource {
    async fn next_event(&mut self) -> Result<Option<MediaEvent>, SourceError> {
        Ok(None)
    }
    fn bytes_in(&self) -> u64 {
        0
    }
}
