//! RTSP credentials given apart from the URL: `user:password` (from a flag or the
//! environment), or a Secrets Manager secret (`GetSecretValue`) whose `SecretString` is
//! `{"username": "…", "password": "…"}` or `user:password`. Values never reach a log line.

use crate::ingest::rtsp::Credentials;
use anyhow::{bail, Context};
use aws_config::SdkConfig;
use std::time::Duration;

/// Time allowed for reading a secret, including the SDK's retries.
const SECRET_TIMEOUT: Duration = Duration::from_secs(15);

/// Resolves `spec` (`user:password` or a Secrets Manager ARN) to credentials; `sdk` is needed
/// for an ARN.
///
/// # Errors
/// A malformed value, a secret that cannot be read or parsed (the message names the ARN,
/// never the value).
pub async fn resolve(spec: &str, sdk: Option<&SdkConfig>) -> anyhow::Result<Credentials> {
    if !(spec.starts_with("arn:") && spec.contains(":secretsmanager:")) {
        return parse(spec).context("RTSP credentials: expected user:password or a secret ARN");
    }
    let Some(sdk) = sdk else { bail!("RTSP credentials from Secrets Manager need AWS") };
    let client = streamstack_core::aws::secretsmanager(sdk);
    let output =
        tokio::time::timeout(SECRET_TIMEOUT, client.get_secret_value().secret_id(spec).send())
            .await
            .with_context(|| format!("reading secret {spec}: timed out"))?
            .map_err(|e| {
                anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
            })
            .with_context(|| format!("reading secret {spec}"))?;
    let value =
        output.secret_string().with_context(|| format!("secret {spec} has no string value"))?;
    parse(value).with_context(|| {
        format!("secret {spec}: expected {{\"username\",\"password\"}} or user:password")
    })
}

/// `{"username","password"}` JSON or `user:password`.
fn parse(value: &str) -> anyhow::Result<Credentials> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(value) {
        let field = |name: &str| map.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        if let (Some(username), Some(password)) = (field("username"), field("password")) {
            return Ok(Credentials { username, password });
        }
        bail!("JSON secret without string username and password");
    }
    match value.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Ok(Credentials { username: user.to_owned(), password: password.to_owned() })
        }
        _ => bail!("no ':' between user and password"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_hides_values_in_errors() {
        let c = parse(r#"{"username":"admin","password":"p:w"}"#).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "p:w"));
        let c = parse("admin:p:w").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "p:w"));
        let e = format!("{:#}", parse("topsecret").unwrap_err());
        assert!(!e.contains("topsecret"), "{e}");
        assert!(parse(r#"{"user":"x"}"#).is_err());
    }
}
