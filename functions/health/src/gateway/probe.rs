//! The gateway software's own health check: one HTTP `GET` of its health URL, 2xx within the
//! timeout or it failed.
//!
//! Health URLs are plain `http://` addresses inside the VPC (the instance's private IP): the
//! function's HTTP client is built without TLS (reqwest without a TLS feature), so an
//! `https://` URL fails the check rather than being fetched insecurely.

use super::model::{Instance, HEALTH_URL_TAG};
use super::plan::Probe;
use std::time::Duration;

/// Placeholder of the instance's primary private IPv4 address in a health URL template.
pub const PRIVATE_IP: &str = "{private_ip}";

/// The health URL of `instance`: its [`HEALTH_URL_TAG`] tag, else `template`, with
/// [`PRIVATE_IP`] substituted. `None` when neither is set, or the URL needs a private IP the
/// instance does not have.
pub fn health_url(instance: &Instance, template: Option<&str>) -> Option<String> {
    let url = instance.tags.get(HEALTH_URL_TAG).map(String::as_str).or(template)?;
    if url.contains(PRIVATE_IP) {
        Some(url.replace(PRIVATE_IP, instance.private_ip.as_deref()?))
    } else {
        Some(url.to_owned())
    }
}

/// Health checks over HTTP.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    client: reqwest::Client,
}

impl HttpProbe {
    /// A client whose every request (connect included) ends after `timeout`; no redirects
    /// are followed, no proxy from the environment is used.
    ///
    /// # Errors
    /// The client could not be built (no TLS backend is needed, so in practice never).
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Self { client })
    }

    /// `GET url`: [`Probe::Passed`] on 2xx, else [`Probe::Failed`] with the status or error.
    pub async fn check(&self, url: &str) -> Probe {
        match self.client.get(url).send().await {
            Ok(r) if r.status().is_success() => Probe::Passed,
            Ok(r) => Probe::Failed(format!("GET {url}: HTTP {}", r.status().as_u16())),
            Err(e) => Probe::Failed(format!("GET {url}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::model::Lifecycle;

    fn instance(tags: &[(&str, &str)], ip: Option<&str>) -> Instance {
        Instance {
            private_ip: ip.map(str::to_owned),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Instance::bare("i-1", Lifecycle::Running)
        }
    }

    #[test]
    fn template_tag_and_private_ip() {
        let t = Some("http://{private_ip}:8080/health");
        assert_eq!(
            health_url(&instance(&[], Some("10.0.0.7")), t).as_deref(),
            Some("http://10.0.0.7:8080/health")
        );
        assert_eq!(health_url(&instance(&[], None), t), None);
        assert_eq!(health_url(&instance(&[], Some("10.0.0.7")), None), None);
        let tagged = instance(&[(HEALTH_URL_TAG, "http://127.0.0.1:9/h")], Some("10.0.0.7"));
        assert_eq!(health_url(&tagged, t).as_deref(), Some("http://127.0.0.1:9/h"));
    }

    #[tokio::test]
    async fn unreachable_or_https_fails() {
        let probe = HttpProbe::new(Duration::from_millis(500)).expect("client");
        // Port 9 (discard) on loopback: refused.
        assert!(matches!(probe.check("http://127.0.0.1:9/health").await, Probe::Failed(_)));
        assert!(matches!(probe.check("https://127.0.0.1:9/health").await, Probe::Failed(_)));
    }
}
