//! The one place that builds AWS SDK clients.
//!
//! Every client carries a connect timeout, a per-attempt timeout and an operation timeout
//! (all attempts and the SDK's retry backoff together), so a hung request can never stall a
//! caller: DynamoDB and SNS use the shared [`CONNECT_TIMEOUT`] / [`DEFAULT_ATTEMPT_TIMEOUT`] /
//! [`DEFAULT_OPERATION_TIMEOUT`]; S3 and MediaConvert override the attempt and operation
//! timeouts (a per-client `timeout_config` keeps every value it does not set from the shared
//! one).
//!
//! Endpoints: `AwsClients::load(Some(url))` points every service at `url` (a local moto
//! server); a service-specific `AWS_ENDPOINT_URL_<SERVICE>` variable (`AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SNS`, `AWS_ENDPOINT_URL_MEDIACONVERT`)
//! still wins for its service. (The SDK itself would let a programmatic endpoint override the
//! service-specific variables; tests rely on pointing only S3 at a proxy.)

use crate::config::env_var;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Attempts (first try included) of MediaConvert calls: throttling and 5xx answers are
/// retried with the SDK's standard exponential backoff and jitter.
pub const MEDIACONVERT_MAX_ATTEMPTS: u32 = 5;

/// TCP (and TLS) connect timeout of every client: 1 s. Regional endpoints answer in
/// milliseconds; an endpoint that does not accept within a second is treated as down and the
/// attempt is retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One attempt of a DynamoDB or SNS call (small JSON requests, single-digit millisecond
/// service latency): 2 s, connect included.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A whole DynamoDB or SNS call, every attempt (3 with the SDK's standard retry mode) and
/// backoff included: 6 s.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(6);

/// One S3 attempt: 10 s, enough for a `PutObject` of a few-MB HLS segment at ~1 MB/s.
pub const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole S3 call, every attempt and backoff included: 30 s.
pub const S3_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One MediaConvert attempt (`CreateJob` bodies are larger and the API slower than
/// DynamoDB's): 5 s.
pub const MEDIACONVERT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole MediaConvert call over its [`MEDIACONVERT_MAX_ATTEMPTS`] attempts and backoff:
/// 30 s.
pub const MEDIACONVERT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared timeouts: [`CONNECT_TIMEOUT`], [`DEFAULT_ATTEMPT_TIMEOUT`] and
/// [`DEFAULT_OPERATION_TIMEOUT`].
pub fn default_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(DEFAULT_ATTEMPT_TIMEOUT)
        .operation_timeout(DEFAULT_OPERATION_TIMEOUT)
        .build()
}

/// S3's attempt and operation timeouts ([`S3_ATTEMPT_TIMEOUT`], [`S3_OPERATION_TIMEOUT`]).
fn s3_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(S3_ATTEMPT_TIMEOUT)
        .operation_timeout(S3_OPERATION_TIMEOUT)
        .build()
}

/// MediaConvert's attempt and operation timeouts.
fn mediaconvert_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(MEDIACONVERT_ATTEMPT_TIMEOUT)
        .operation_timeout(MEDIACONVERT_OPERATION_TIMEOUT)
        .build()
}

/// The endpoint override of one service from `AWS_ENDPOINT_URL_<service>` (e.g.
/// `AWS_ENDPOINT_URL_S3`) read through `get`, unless
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`. `service` is the SDK's service id in upper
/// case (`S3`, `DYNAMODB`, `SNS`, `MEDIACONVERT`).
pub fn service_endpoint(get: impl Fn(&str) -> Option<String>, service: &str) -> Option<String> {
    if get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    get(&format!("AWS_ENDPOINT_URL_{service}"))
}

/// AWS SDK clients shared by a process, built once at start-up and cloned cheaply.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 client ([`S3_ATTEMPT_TIMEOUT`], [`S3_OPERATION_TIMEOUT`]); path-style addressing
    /// when an endpoint override is set (moto, MinIO).
    pub s3: aws_sdk_s3::Client,
    /// Elemental MediaConvert client ([`MEDIACONVERT_MAX_ATTEMPTS`] attempts per call).
    pub mediaconvert: aws_sdk_mediaconvert::Client,
    /// SNS client.
    pub sns: aws_sdk_sns::Client,
}

impl AwsClients {
    /// Loads credentials and region from the standard AWS chain and builds every client.
    ///
    /// `endpoint_url` overrides the endpoint of all services (e.g. `http://127.0.0.1:5000` for a
    /// local moto server) except those with their own `AWS_ENDPOINT_URL_<SERVICE>` variable;
    /// `None` uses the real regional AWS endpoints.
    pub async fn load(endpoint_url: Option<&str>) -> Self {
        Self::from_sdk_config(&Self::sdk_config(endpoint_url).await, endpoint_url.is_some())
    }

    /// The shared SDK configuration: credentials, region, optional endpoint override and the
    /// shared timeouts ([`default_timeouts`]).
    pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).timeout_config(default_timeouts());
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// Builds every client from an already loaded [`SdkConfig`], with per-service timeouts
    /// and `AWS_ENDPOINT_URL_<SERVICE>` overrides from the process environment. `path_style`
    /// forces S3 path-style addressing (needed by local emulators; also forced when
    /// `AWS_ENDPOINT_URL_S3` is set).
    pub fn from_sdk_config(sdk: &SdkConfig, path_style: bool) -> Self {
        Self::from_sdk_config_with(sdk, path_style, env_var)
    }

    /// [`AwsClients::from_sdk_config`] reading variables through `get`.
    fn from_sdk_config_with(
        sdk: &SdkConfig,
        path_style: bool,
        get: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let s3_endpoint = service_endpoint(&get, "S3");
        let mut s3 = aws_sdk_s3::config::Builder::from(sdk)
            .timeout_config(s3_timeouts())
            .force_path_style(path_style || s3_endpoint.is_some());
        // Unset: the SDK's own resolution (the shared endpoint, else the regional one).
        if s3_endpoint.is_some() {
            s3.set_endpoint_url(s3_endpoint);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = service_endpoint(&get, "DYNAMODB") {
            dynamodb.set_endpoint_url(Some(url));
        }
        let mut sns = aws_sdk_sns::config::Builder::from(sdk);
        if let Some(url) = service_endpoint(&get, "SNS") {
            sns.set_endpoint_url(Some(url));
        }
        let mediaconvert_endpoint = service_endpoint(&get, "MEDIACONVERT");
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            mediaconvert: Self::mediaconvert_client(sdk, mediaconvert_endpoint.as_deref()),
            sns: aws_sdk_sns::Client::from_conf(sns.build()),
        }
    }

    /// Points the MediaConvert client at `url` instead: an account-specific endpoint from
    /// `DescribeEndpoints` (older accounts), or a local stand-in in tests. Reuses `sdk`'s
    /// credentials and region.
    pub fn with_mediaconvert_endpoint(mut self, sdk: &SdkConfig, url: &str) -> Self {
        self.mediaconvert = Self::mediaconvert_client(sdk, Some(url));
        self
    }

    fn mediaconvert_client(sdk: &SdkConfig, url: Option<&str>) -> aws_sdk_mediaconvert::Client {
        let mut conf = aws_sdk_mediaconvert::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(MEDIACONVERT_MAX_ATTEMPTS))
            .timeout_config(mediaconvert_timeouts());
        if let Some(url) = url {
            conf = conf.endpoint_url(url);
        }
        aws_sdk_mediaconvert::Client::from_conf(conf.build())
    }
}

/// A Secrets Manager client from `sdk`, honouring `AWS_ENDPOINT_URL_SECRETSMANAGER`
/// (behind the `secretsmanager` feature: only the streamer links it).
#[cfg(feature = "secretsmanager")]
pub fn secretsmanager(sdk: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    let mut conf = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(url) = service_endpoint(env_var, "SECRETSMANAGER") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_secretsmanager::Client::from_conf(conf.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn sdk() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://global.invalid")
            .timeout_config(default_timeouts())
            .build()
    }

    #[test]
    fn every_client_has_connect_attempt_and_operation_timeouts() {
        let clients = AwsClients::from_sdk_config_with(&sdk(), true, lookup(&[]));
        let expect = |t: Option<&TimeoutConfig>, attempt, operation| {
            let t = t.expect("timeouts set");
            assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
            assert_eq!(t.operation_attempt_timeout(), Some(attempt));
            assert_eq!(t.operation_timeout(), Some(operation));
        };
        let (attempt, operation) = (DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT);
        expect(clients.dynamodb.config().timeout_config(), attempt, operation);
        expect(clients.sns.config().timeout_config(), attempt, operation);
        expect(clients.s3.config().timeout_config(), S3_ATTEMPT_TIMEOUT, S3_OPERATION_TIMEOUT);
        expect(
            clients.mediaconvert.config().timeout_config(),
            MEDIACONVERT_ATTEMPT_TIMEOUT,
            MEDIACONVERT_OPERATION_TIMEOUT,
        );
        // The operation budget covers the attempts it allows.
        assert!(S3_OPERATION_TIMEOUT >= 3 * S3_ATTEMPT_TIMEOUT);
        assert!(DEFAULT_OPERATION_TIMEOUT >= 3 * DEFAULT_ATTEMPT_TIMEOUT);
    }

    #[test]
    fn service_specific_endpoint_wins_unless_ignored() {
        let get = lookup(&[("AWS_ENDPOINT_URL_S3", "http://proxy:1")]);
        assert_eq!(service_endpoint(&get, "S3").as_deref(), Some("http://proxy:1"));
        assert_eq!(service_endpoint(&get, "DYNAMODB"), None);
        let get = lookup(&[
            ("AWS_ENDPOINT_URL_S3", "http://proxy:1"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE"),
        ]);
        assert_eq!(service_endpoint(&get, "S3"), None);
    }

    /// A programmatic shared endpoint does not hide `AWS_ENDPOINT_URL_S3`: S3 requests reach
    /// the service-specific endpoint, DynamoDB requests the shared one.
    #[tokio::test]
    async fn requests_go_to_the_service_specific_endpoint() {
        let s3_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shared_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s3_url = format!("http://{}", s3_listener.local_addr().unwrap());
        let shared_url = format!("http://{}", shared_listener.local_addr().unwrap());
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::for_tests(),
            ))
            .endpoint_url(&shared_url)
            .timeout_config(default_timeouts())
            .build();
        let clients = AwsClients::from_sdk_config_with(
            &sdk,
            true,
            lookup(&[("AWS_ENDPOINT_URL_S3", &s3_url)]),
        );
        // Nobody answers: each call fails on its timeouts, after its connection was seen.
        let s3 = tokio::spawn(async move { clients.s3.list_buckets().send().await.is_err() });
        let guard = Duration::from_secs(20);
        let (accepted, _) = tokio::time::timeout(guard, s3_listener.accept())
            .await
            .expect("S3 request reached AWS_ENDPOINT_URL_S3")
            .unwrap();
        drop(accepted);
        s3.abort();
        let sdk_dynamodb = AwsClients::from_sdk_config_with(&sdk, true, lookup(&[])).dynamodb;
        let dynamodb = tokio::spawn(async move { sdk_dynamodb.list_tables().send().await });
        let (accepted, _) = tokio::time::timeout(guard, shared_listener.accept())
            .await
            .expect("DynamoDB request reached the shared endpoint")
            .unwrap();
        drop(accepted);
        dynamodb.abort();
    }
}
