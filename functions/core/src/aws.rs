//! The one place that builds AWS SDK clients: one shared [`sdk_config`] loader and one builder
//! per service, each behind its own cargo feature of `streamstack-core` (`dynamodb`, `s3`,
//! `mediaconvert`, `sns`, `ecs`, `ec2`, `secretsmanager`), so a binary links only the SDK crates of
//! the clients it builds (the channels API: DynamoDB only).
//!
//! Every client carries a connect timeout, a per-attempt timeout and an operation timeout
//! (all attempts and the SDK's retry backoff together), so a hung request can never stall a
//! caller: DynamoDB, SNS and Secrets Manager use the shared [`CONNECT_TIMEOUT`] /
//! [`DEFAULT_ATTEMPT_TIMEOUT`] / [`DEFAULT_OPERATION_TIMEOUT`]; S3, MediaConvert and ECS
//! override the attempt and operation timeouts (a per-client `timeout_config` keeps every
//! value it does not set, the connect timeout, from the shared one).
//!
//! Endpoints: `sdk_config(Some(url))` points every service at `url` (a local moto server); a
//! service-specific `AWS_ENDPOINT_URL_<SERVICE>` variable (`AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SNS`, `AWS_ENDPOINT_URL_MEDIACONVERT`,
//! `AWS_ENDPOINT_URL_ECS`, `AWS_ENDPOINT_URL_SECRETSMANAGER`) still wins for its service.
//! (The SDK itself would let a programmatic endpoint override the service-specific
//! variables; tests rely on pointing only S3 at a proxy.)

#[cfg(any(
    feature = "dynamodb",
    feature = "s3",
    feature = "mediaconvert",
    feature = "sns",
    feature = "ecs",
    feature = "ec2",
    feature = "secretsmanager"
))]
use crate::config::env_var;
#[cfg(any(feature = "mediaconvert", feature = "ecs", feature = "ec2"))]
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// TCP (and TLS) connect timeout of every client: 1 s. Regional endpoints answer in
/// milliseconds; an endpoint that does not accept within a second is treated as down and the
/// attempt is retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One attempt of a DynamoDB, SNS or Secrets Manager call (small JSON requests,
/// single-digit millisecond service latency): 2 s, connect included.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A whole DynamoDB, SNS or Secrets Manager call, every attempt (3 with the SDK's standard
/// retry mode) and backoff included: 6 s.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(6);

/// One S3 attempt: 10 s, enough for a `PutObject` of a few-MB HLS segment at ~1 MB/s.
pub const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole S3 call, every attempt and backoff included: 30 s.
pub const S3_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts (first try included) of MediaConvert calls: throttling and 5xx answers are
/// retried with the SDK's standard exponential backoff and jitter.
pub const MEDIACONVERT_MAX_ATTEMPTS: u32 = 5;

/// One MediaConvert attempt (`CreateJob` bodies are larger and the API slower than
/// DynamoDB's): 5 s.
pub const MEDIACONVERT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole MediaConvert call over its [`MEDIACONVERT_MAX_ATTEMPTS`] attempts and backoff:
/// 30 s.
pub const MEDIACONVERT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts (first try included) of ECS calls: `ThrottlingException` (ECS API calls are
/// rate-limited per account and Region by token buckets) and 5xx answers are retried with the
/// SDK's standard retry mode (exponential backoff with full jitter, a random wait of up to
/// 1 s, 2 s, 4 s, 8 s before attempts 2 to 5, bounded by [`ECS_OPERATION_TIMEOUT`]), so a
/// reconciler starting hundreds of tasks slows down instead of failing.
pub const ECS_MAX_ATTEMPTS: u32 = 5;

/// One ECS attempt (`RunTask`, `StopTask`, `DescribeTasks` of 100 tasks, `ListTasks` pages
/// of 100 ARNs): 5 s. `RunTask` answers in about a second; a larger page in less.
pub const ECS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole ECS call over its [`ECS_MAX_ATTEMPTS`] attempts and backoff: 20 s, within a
/// reconciler invocation's budget (its timeout is a minute: a hung call costs a third).
pub const ECS_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts (first try included) of EC2 calls (`RequestLimitExceeded` and 5xx answers back
/// off with the SDK's standard retry mode, bounded by [`EC2_OPERATION_TIMEOUT`]).
pub const EC2_MAX_ATTEMPTS: u32 = 5;

/// One EC2 attempt: 10 s (`RunInstances` and `CreateImage` answer in a few seconds).
pub const EC2_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole EC2 call over its [`EC2_MAX_ATTEMPTS`] attempts and backoff: 30 s.
pub const EC2_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared timeouts: [`CONNECT_TIMEOUT`], [`DEFAULT_ATTEMPT_TIMEOUT`] and
/// [`DEFAULT_OPERATION_TIMEOUT`].
pub fn default_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(DEFAULT_ATTEMPT_TIMEOUT)
        .operation_timeout(DEFAULT_OPERATION_TIMEOUT)
        .build()
}

/// Attempt and operation timeouts of one service (the connect timeout stays the shared one).
#[cfg(any(feature = "s3", feature = "mediaconvert", feature = "ecs", feature = "ec2"))]
fn timeouts(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder().operation_attempt_timeout(attempt).operation_timeout(operation).build()
}

/// The endpoint override of one service from `AWS_ENDPOINT_URL_<service>` (e.g.
/// `AWS_ENDPOINT_URL_S3`) read through `get`, unless
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`. `service` is the SDK's service id in upper
/// case (`S3`, `DYNAMODB`, `SNS`, `MEDIACONVERT`, `ECS`, `SECRETSMANAGER`).
pub fn service_endpoint(get: impl Fn(&str) -> Option<String>, service: &str) -> Option<String> {
    if get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    get(&format!("AWS_ENDPOINT_URL_{service}"))
}

/// `explicit` when set, else [`service_endpoint`] of `service`.
#[cfg(feature = "mediaconvert")]
fn explicit_or_service_endpoint(
    explicit: Option<&str>,
    get: impl Fn(&str) -> Option<String>,
    service: &str,
) -> Option<String> {
    explicit.map(str::to_owned).or_else(|| service_endpoint(get, service))
}

/// The shared SDK configuration: credentials and region from the standard AWS chain, the
/// optional endpoint override of every service (`endpoint_url`, e.g. `http://127.0.0.1:5000`
/// for a local moto server; `None`: the real regional endpoints) and the shared timeouts
/// ([`default_timeouts`]). Load it once per process and build the clients from it.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).timeout_config(default_timeouts());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// A DynamoDB client from `sdk` (shared timeouts), honouring `AWS_ENDPOINT_URL_DYNAMODB`.
#[cfg(feature = "dynamodb")]
pub fn dynamodb(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    dynamodb_with(sdk, env_var)
}

#[cfg(feature = "dynamodb")]
fn dynamodb_with(
    sdk: &SdkConfig,
    get: impl Fn(&str) -> Option<String>,
) -> aws_sdk_dynamodb::Client {
    let mut conf = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = service_endpoint(get, "DYNAMODB") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_dynamodb::Client::from_conf(conf.build())
}

/// An S3 client from `sdk` ([`S3_ATTEMPT_TIMEOUT`], [`S3_OPERATION_TIMEOUT`]), honouring
/// `AWS_ENDPOINT_URL_S3`. `path_style` forces path-style addressing (needed by local
/// emulators such as moto or MinIO; also forced when `AWS_ENDPOINT_URL_S3` is set).
#[cfg(feature = "s3")]
pub fn s3(sdk: &SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    s3_with(sdk, path_style, env_var)
}

#[cfg(feature = "s3")]
fn s3_with(
    sdk: &SdkConfig,
    path_style: bool,
    get: impl Fn(&str) -> Option<String>,
) -> aws_sdk_s3::Client {
    let endpoint = service_endpoint(get, "S3");
    let mut conf = aws_sdk_s3::config::Builder::from(sdk)
        .timeout_config(timeouts(S3_ATTEMPT_TIMEOUT, S3_OPERATION_TIMEOUT))
        .force_path_style(path_style || endpoint.is_some());
    // Unset: the SDK's own resolution (the shared endpoint, else the regional one).
    if endpoint.is_some() {
        conf.set_endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}

/// An Elemental MediaConvert client from `sdk` ([`MEDIACONVERT_MAX_ATTEMPTS`] attempts per
/// call, [`MEDIACONVERT_ATTEMPT_TIMEOUT`], [`MEDIACONVERT_OPERATION_TIMEOUT`]).
///
/// `endpoint` (an account-specific endpoint from `DescribeEndpoints` on older accounts, or a
/// local stand-in in tests) wins; else `AWS_ENDPOINT_URL_MEDIACONVERT`; else `sdk`'s.
#[cfg(feature = "mediaconvert")]
pub fn mediaconvert(sdk: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_mediaconvert::Client {
    mediaconvert_with(sdk, endpoint, env_var)
}

#[cfg(feature = "mediaconvert")]
fn mediaconvert_with(
    sdk: &SdkConfig,
    endpoint: Option<&str>,
    get: impl Fn(&str) -> Option<String>,
) -> aws_sdk_mediaconvert::Client {
    let mut conf = aws_sdk_mediaconvert::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(MEDIACONVERT_MAX_ATTEMPTS))
        .timeout_config(timeouts(MEDIACONVERT_ATTEMPT_TIMEOUT, MEDIACONVERT_OPERATION_TIMEOUT));
    if let Some(url) = explicit_or_service_endpoint(endpoint, get, "MEDIACONVERT") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_mediaconvert::Client::from_conf(conf.build())
}

/// An SNS client from `sdk` (shared timeouts), honouring `AWS_ENDPOINT_URL_SNS`.
#[cfg(feature = "sns")]
pub fn sns(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    sns_with(sdk, env_var)
}

#[cfg(feature = "sns")]
fn sns_with(sdk: &SdkConfig, get: impl Fn(&str) -> Option<String>) -> aws_sdk_sns::Client {
    let mut conf = aws_sdk_sns::config::Builder::from(sdk);
    if let Some(url) = service_endpoint(get, "SNS") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_sns::Client::from_conf(conf.build())
}

/// An ECS client from `sdk` ([`ECS_MAX_ATTEMPTS`] attempts with standard backoff, so
/// `ThrottlingException` backs off; [`ECS_ATTEMPT_TIMEOUT`], [`ECS_OPERATION_TIMEOUT`]),
/// honouring `AWS_ENDPOINT_URL_ECS`.
#[cfg(feature = "ecs")]
pub fn ecs(sdk: &SdkConfig) -> aws_sdk_ecs::Client {
    ecs_with(sdk, env_var)
}

#[cfg(feature = "ecs")]
fn ecs_with(sdk: &SdkConfig, get: impl Fn(&str) -> Option<String>) -> aws_sdk_ecs::Client {
    let mut conf = aws_sdk_ecs::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(ECS_MAX_ATTEMPTS))
        .timeout_config(timeouts(ECS_ATTEMPT_TIMEOUT, ECS_OPERATION_TIMEOUT));
    if let Some(url) = service_endpoint(get, "ECS") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_ecs::Client::from_conf(conf.build())
}

/// An EC2 client from `sdk` ([`EC2_MAX_ATTEMPTS`] attempts with standard backoff,
/// [`EC2_ATTEMPT_TIMEOUT`], [`EC2_OPERATION_TIMEOUT`]), honouring `AWS_ENDPOINT_URL_EC2`
/// (the gateway health function only).
#[cfg(feature = "ec2")]
pub fn ec2(sdk: &SdkConfig) -> aws_sdk_ec2::Client {
    let mut conf = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(EC2_MAX_ATTEMPTS))
        .timeout_config(timeouts(EC2_ATTEMPT_TIMEOUT, EC2_OPERATION_TIMEOUT));
    if let Some(url) = service_endpoint(env_var, "EC2") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_ec2::Client::from_conf(conf.build())
}

/// A Secrets Manager client from `sdk` (shared timeouts), honouring
/// `AWS_ENDPOINT_URL_SECRETSMANAGER` (only the streamer reads secrets).
#[cfg(feature = "secretsmanager")]
pub fn secretsmanager(sdk: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    let mut conf = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(url) = service_endpoint(env_var, "SECRETSMANAGER") {
        conf.set_endpoint_url(Some(url));
    }
    aws_sdk_secretsmanager::Client::from_conf(conf.build())
}

/// The DynamoDB and S3 clients of a process that uses both (the streamer, tests), built once
/// at start-up and cloned cheaply (features `dynamodb` and `s3`).
#[cfg(all(feature = "dynamodb", feature = "s3"))]
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// DynamoDB client ([`dynamodb`]).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 client ([`s3`]); path-style addressing when an endpoint override is set.
    pub s3: aws_sdk_s3::Client,
}

#[cfg(all(feature = "dynamodb", feature = "s3"))]
impl AwsClients {
    /// Loads the shared configuration ([`sdk_config`]) and builds both clients; S3 uses
    /// path-style addressing when `endpoint_url` is set.
    pub async fn load(endpoint_url: Option<&str>) -> Self {
        Self::from_sdk_config(&sdk_config(endpoint_url).await, endpoint_url.is_some())
    }

    /// Builds both clients from an already loaded [`SdkConfig`]; `path_style` as in [`s3`].
    pub fn from_sdk_config(sdk: &SdkConfig, path_style: bool) -> Self {
        Self { dynamodb: dynamodb(sdk), s3: s3(sdk, path_style) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[allow(dead_code)]
    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[allow(dead_code)]
    fn sdk() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://global.invalid")
            .timeout_config(default_timeouts())
            .build()
    }

    #[allow(dead_code)]
    fn expect_timeouts(t: Option<&TimeoutConfig>, attempt: Duration, operation: Duration) {
        let t = t.expect("timeouts set");
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(attempt));
        assert_eq!(t.operation_timeout(), Some(operation));
    }

    #[test]
    fn operation_budgets_cover_their_attempts() {
        assert!(S3_OPERATION_TIMEOUT >= 3 * S3_ATTEMPT_TIMEOUT);
        assert!(DEFAULT_OPERATION_TIMEOUT >= 3 * DEFAULT_ATTEMPT_TIMEOUT);
        // The SDK's standard backoff between attempts is jittered and well under a second
        // for the first few: 5 attempts of 5 s leave the rest for backoff or fail fast.
        assert!(MEDIACONVERT_OPERATION_TIMEOUT >= 5 * MEDIACONVERT_ATTEMPT_TIMEOUT);
        assert!(ECS_OPERATION_TIMEOUT >= 3 * ECS_ATTEMPT_TIMEOUT);
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn dynamodb_has_the_shared_timeouts() {
        let c = dynamodb_with(&sdk(), lookup(&[]));
        expect_timeouts(
            c.config().timeout_config(),
            DEFAULT_ATTEMPT_TIMEOUT,
            DEFAULT_OPERATION_TIMEOUT,
        );
    }

    #[cfg(feature = "sns")]
    #[test]
    fn sns_has_the_shared_timeouts() {
        let c = sns_with(&sdk(), lookup(&[]));
        expect_timeouts(
            c.config().timeout_config(),
            DEFAULT_ATTEMPT_TIMEOUT,
            DEFAULT_OPERATION_TIMEOUT,
        );
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_has_its_timeouts() {
        let c = s3_with(&sdk(), true, lookup(&[]));
        expect_timeouts(c.config().timeout_config(), S3_ATTEMPT_TIMEOUT, S3_OPERATION_TIMEOUT);
    }

    #[cfg(feature = "mediaconvert")]
    #[test]
    fn mediaconvert_has_its_timeouts_retries_and_endpoint_precedence() {
        let get = lookup(&[("AWS_ENDPOINT_URL_MEDIACONVERT", "http://env:1")]);
        let c = mediaconvert_with(&sdk(), None, &get);
        let (attempt, operation) = (MEDIACONVERT_ATTEMPT_TIMEOUT, MEDIACONVERT_OPERATION_TIMEOUT);
        expect_timeouts(c.config().timeout_config(), attempt, operation);
        let retry = c.config().retry_config().expect("retry config");
        assert_eq!(retry.max_attempts(), MEDIACONVERT_MAX_ATTEMPTS);
        let pick = |explicit| explicit_or_service_endpoint(explicit, &get, "MEDIACONVERT");
        assert_eq!(pick(None).as_deref(), Some("http://env:1"));
        assert_eq!(pick(Some("http://explicit:2")).as_deref(), Some("http://explicit:2"));
    }

    #[cfg(feature = "ecs")]
    #[test]
    fn ecs_has_its_timeouts_and_retries() {
        let c = ecs_with(&sdk(), lookup(&[]));
        expect_timeouts(c.config().timeout_config(), ECS_ATTEMPT_TIMEOUT, ECS_OPERATION_TIMEOUT);
        let retry = c.config().retry_config().expect("retry config");
        assert_eq!(retry.max_attempts(), ECS_MAX_ATTEMPTS);
        assert_eq!(retry.mode(), aws_config::retry::RetryMode::Standard);
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
    #[cfg(all(feature = "dynamodb", feature = "s3"))]
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
        let s3 = s3_with(&sdk, true, lookup(&[("AWS_ENDPOINT_URL_S3", &s3_url)]));
        // Nobody answers: each call fails on its timeouts, after its connection was seen.
        let s3 = tokio::spawn(async move { s3.list_buckets().send().await.is_err() });
        let guard = Duration::from_secs(20);
        let (accepted, _) = tokio::time::timeout(guard, s3_listener.accept())
            .await
            .expect("S3 request reached AWS_ENDPOINT_URL_S3")
            .unwrap();
        drop(accepted);
        s3.abort();
        let sdk_dynamodb = dynamodb_with(&sdk, lookup(&[]));
        let dynamodb = tokio::spawn(async move { sdk_dynamodb.list_tables().send().await });
        let (accepted, _) = tokio::time::timeout(guard, shared_listener.accept())
            .await
            .expect("DynamoDB request reached the shared endpoint")
            .unwrap();
        drop(accepted);
        dynamodb.abort();
    }
}
