//! The local stack of signed playback as processes: channel and asset tables, a bucket, a
//! fresh 2048-bit playback key (the private key in a Secrets Manager secret in moto),
//! `edge-local` trusting its public key and `channels-api-local` with `PLAYBACK_DEFAULT=signed`
//! reading the key from the secret, as in AWS.

use crate::process::Service;
use crate::{aws, bucket, channel_table, endpoint, tempdir, unique};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::sync::Arc;
use streamstack_core::aws::AwsClients;
use streamstack_core::DynamoChannelStore;

/// The running stack; the processes stop when it is dropped.
pub struct SignedStack {
    /// Clients on moto.
    pub aws: AwsClients,
    /// The channel table's name and a store on it.
    pub table: String,
    /// The channel store.
    pub store: Arc<DynamoChannelStore>,
    /// The media bucket.
    pub bucket: String,
    /// `edge-local` in front of the bucket.
    pub edge: Service,
    /// `channels-api-local`.
    pub api: Service,
}

impl SignedStack {
    /// Starts it, playback credentials living `ttl_secs`, the key known as `key_pair_id`.
    ///
    /// # Panics
    /// When a table, the bucket, the secret or a process cannot be made.
    pub async fn start(key_pair_id: &str, ttl_secs: u32) -> Self {
        let aws = aws().await;
        let (table, store) = channel_table(&aws).await;
        let assets = unique("assets");
        streamstack_core::DynamoAssetStore::new(aws.dynamodb.clone(), &assets)
            .create_table_if_missing()
            .await
            .expect("assets table");
        let bucket = bucket(&aws).await;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key");
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
        let public_file = tempdir().join("public.pem");
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).expect("pem");
        std::fs::write(&public_file, public_pem).expect("write public key");
        let sdk = streamstack_core::aws::sdk_config(Some(&endpoint())).await;
        let secret = streamstack_core::aws::secretsmanager(&sdk)
            .create_secret()
            .name(unique("playback-key"))
            .secret_string(&private_pem)
            .send()
            .await
            .expect("create secret");
        let arn = secret.arn().expect("secret ARN").to_owned();
        let public_key = public_file.to_str().expect("UTF-8 path");
        let edge = Service::start(
            "edge-local",
            &["--listen", "127.0.0.1:{port}", "--bucket", &bucket],
            &[("PLAYBACK_KEY_PAIR_ID", key_pair_id), ("PLAYBACK_PUBLIC_KEY_FILE", public_key)],
        )
        .await;
        let ttl = ttl_secs.to_string();
        let api = Service::start(
            "channels-api-local",
            &["--listen", "127.0.0.1:{port}"],
            &[
                ("CHANNELS_TABLE", &table),
                ("ASSETS_TABLE", &assets),
                ("MEDIA_BUCKET", &bucket),
                ("PLAYBACK_BASE_URL", &edge.base_url()),
                ("PLAYBACK_DEFAULT", "signed"),
                ("PLAYBACK_TTL_SECS", &ttl),
                ("PLAYBACK_KEY_PAIR_ID", key_pair_id),
                ("PLAYBACK_PRIVATE_KEY_SECRET_ARN", &arn),
            ],
        )
        .await;
        Self { aws, table, store, bucket, edge, api }
    }
}
