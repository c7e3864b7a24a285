"""The local stack's AWS resources in moto (AWS_ENDPOINT_URL): the channels, assets, devices
and slots tables (named by CHANNELS_TABLE, ASSETS_TABLE, DEVICES_TABLE, SLOTS_TABLE), the SNS
topics, the media bucket (MEDIA_BUCKET) and, when KEYS is set, the playback key's secret.
Shared by scripts/local-stack.sh and scripts/contract-test.sh."""
import json, os, boto3
ddb = boto3.client("dynamodb")
# Channels: by id, and by lease owner (the health handler's lookup, as in template.yaml).
ddb.create_table(TableName=os.environ["CHANNELS_TABLE"], BillingMode="PAY_PER_REQUEST",
                 AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                       {"AttributeName": "lease_owner", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                 GlobalSecondaryIndexes=[{"IndexName": "lease-owner-index",
                                          "KeySchema": [{"AttributeName": "lease_owner", "KeyType": "HASH"}],
                                          "Projection": {"ProjectionType": "KEYS_ONLY"}}])
# Crash-loop alarms of the task health handler (devices-local delivers process stops to it).
boto3.client("sns").create_topic(Name="streamstack-alarms")
# VOD asset announcements (COMPLETE/ERROR) of the job-state function.
boto3.client("sns").create_topic(Name="streamstack-assets")
for table in (os.environ["ASSETS_TABLE"], os.environ["SLOTS_TABLE"]):
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
# Devices: by id, by gateway (heartbeats), streamed to the reconciler (as in template.yaml).
ddb.create_table(TableName=os.environ["DEVICES_TABLE"], BillingMode="PAY_PER_REQUEST",
                 AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                       {"AttributeName": "gateway_id", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                 GlobalSecondaryIndexes=[{"IndexName": "gateway-index",
                                          "KeySchema": [{"AttributeName": "gateway_id", "KeyType": "HASH"}],
                                          "Projection": {"ProjectionType": "ALL"}}],
                 StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
# The playback signing key, as the stack's PlaybackPrivateKeySecretArn holds it (when KEYS
# names the key pair's directory; its ARN is written to $STATE/playback-secret-arn).
if os.environ.get("KEYS"):
    arn = boto3.client("secretsmanager").create_secret(
        Name="streamstack-local/playback-key",
        SecretString=open(os.path.join(os.environ["KEYS"], "private.pem")).read())["ARN"]
    open(os.path.join(os.environ["STATE"], "playback-secret-arn"), "w").write(arn)
s3 = boto3.client("s3")
bucket = os.environ["MEDIA_BUCKET"]
s3.create_bucket(Bucket=bucket)
# Locally, players read live/ straight from the emulator (CloudFront does this in AWS).
s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
     "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*" for prefix in ("live", "outputs", "devices")]}]}))
