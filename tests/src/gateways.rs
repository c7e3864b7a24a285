//! Harness of the media-gateway health tests: gateway instances with Elastic IPs in moto's
//! EC2, a gateway state table, an alarm topic with a queue, a local health endpoint whose
//! answer the test sets, and the gateway checker on all of them.

pub mod faults;

use crate::topic::TopicQueue;
use crate::{endpoint, unique};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use health::gateway::config::GatewayConfig;
use health::gateway::model::{GATEWAY_ID_TAG, HEALTH_URL_TAG};
use health::gateway::run::Gateways;
use health::gateway::store::{DynamoGatewayStore, GatewayStore};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway fleet in moto and everything the checker needs.
pub struct GatewayBench {
    /// EC2 client on moto.
    pub ec2: aws_sdk_ec2::Client,
    /// DynamoDB client on moto.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SNS client on moto.
    pub sns: aws_sdk_sns::Client,
    /// The gateway state table.
    pub table: String,
    /// A store on it.
    pub store: DynamoGatewayStore,
    /// Alarm topic and the queue subscribed to it.
    pub alarms: TopicQueue,
    /// The tag value marking this bench's gateways (unique, so concurrent tests do not see
    /// each other's instances).
    pub tag_value: String,
    /// Subnet the gateways run in.
    pub subnet_id: String,
    /// Their security group.
    pub security_group_id: String,
    /// The image they are launched from.
    pub image_id: String,
    /// Their key pair.
    pub key_name: String,
}

/// One gateway as launched by [`GatewayBench::launch_gateway`].
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Gateway id (tag `streamstack:gateway-id`).
    pub id: String,
    /// Its instance.
    pub instance_id: String,
    /// Its Elastic IP allocation.
    pub allocation_id: String,
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

impl GatewayBench {
    /// A VPC, subnet and security group, a state table, an alarm topic.
    pub async fn start() -> Self {
        let sdk = streamstack_core::aws::sdk_config(Some(&endpoint())).await;
        let ec2 = streamstack_core::aws::ec2(&sdk);
        let dynamodb = streamstack_core::aws::dynamodb(&sdk);
        let sns = streamstack_core::aws::sns(&sdk);
        let vpc = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.expect("vpc");
        let vpc_id = vpc.vpc.and_then(|v| v.vpc_id).expect("vpc id");
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.20.1.0/24")
            .send()
            .await
            .expect("subnet");
        let subnet_id = subnet.subnet.and_then(|s| s.subnet_id).expect("subnet id");
        let sg = ec2
            .create_security_group()
            .group_name(unique("gateways"))
            .description("gateways")
            .vpc_id(&vpc_id)
            .send()
            .await
            .expect("security group");
        let security_group_id = sg.group_id.expect("group id");
        let images = ec2.describe_images().owners("amazon").send().await.expect("images");
        let image_id = images
            .images()
            .iter()
            .find_map(|i| i.image_id().map(str::to_owned))
            .expect("moto has default images");
        let key_name = unique("gateways");
        ec2.create_key_pair().key_name(&key_name).send().await.expect("key pair");
        let table = unique("gateways");
        let store = DynamoGatewayStore::new(dynamodb.clone(), &table);
        store.create_table_if_missing().await.expect("gateways table");
        let alarms = TopicQueue::create(&sdk, "gateway-alarms").await;
        Self {
            ec2,
            dynamodb,
            sns,
            table,
            store,
            alarms,
            tag_value: unique("media-gateway"),
            subnet_id,
            security_group_id,
            image_id,
            key_name,
        }
    }

    /// Settings for the checker: this bench's table, topic and tag value, no reboot grace,
    /// a 2 s bound on waiting for a replacement, 1 s health timeout, then `extra`.
    pub fn config(&self, extra: &[(&str, &str)]) -> GatewayConfig {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("GATEWAYS_TABLE".into(), self.table.clone()),
            ("ALARM_TOPIC_ARN".into(), self.alarms.topic_arn.clone()),
            ("GATEWAY_TAG_VALUE".into(), self.tag_value.clone()),
            ("GATEWAY_REBOOT_GRACE_SECS".into(), "0".into()),
            ("GATEWAY_RUNNING_WAIT_SECS".into(), "2".into()),
            ("GATEWAY_POLL_MS".into(), "50".into()),
            ("GATEWAY_HEALTH_TIMEOUT_MS".into(), "1000".into()),
            ("GATEWAY_HEALTH_FAILURES".into(), "1".into()),
        ]);
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        GatewayConfig::from_lookup(|k| vars.get(k).cloned()).expect("gateway config")
    }

    /// A checker with [`GatewayBench::config`]`(extra)`.
    pub fn checker(&self, extra: &[(&str, &str)]) -> Gateways {
        health::gateway::gateways(
            self.config(extra),
            self.ec2.clone(),
            self.dynamodb.clone(),
            self.sns.clone(),
        )
        .expect("checker")
    }

    /// Launches a gateway instance (tagged as this bench's gateway, with gateway id `id`,
    /// a `Name`, and the health URL `health_url` if given) and associates a new Elastic IP.
    pub async fn launch_gateway(&self, id: &str, health_url: Option<&str>) -> Gateway {
        let mut tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(tag("streamstack:role", &self.tag_value))
            .tags(tag(GATEWAY_ID_TAG, id))
            .tags(tag("Name", &format!("gateway {id}")));
        if let Some(url) = health_url {
            tags = tags.tags(tag(HEALTH_URL_TAG, url));
        }
        let out = self
            .ec2
            .run_instances()
            .image_id(&self.image_id)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
            .subnet_id(&self.subnet_id)
            .security_group_ids(&self.security_group_id)
            .key_name(&self.key_name)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags.build())
            .send()
            .await
            .expect("run gateway");
        let instance_id =
            out.instances().first().and_then(|i| i.instance_id()).expect("instance id").to_owned();
        let address = self
            .ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .send()
            .await
            .expect("allocate address");
        let allocation_id = address.allocation_id.expect("allocation id");
        self.ec2
            .associate_address()
            .allocation_id(&allocation_id)
            .instance_id(&instance_id)
            .send()
            .await
            .expect("associate address");
        Gateway { id: id.into(), instance_id, allocation_id }
    }

    /// Every instance of gateway `id` (any state): instance id -> (state, tags, image id).
    pub async fn instances_of(&self, id: &str) -> BTreeMap<String, Described> {
        let out = self
            .ec2
            .describe_instances()
            .filters(Filter::builder().name(format!("tag:{GATEWAY_ID_TAG}")).values(id).build())
            .filters(Filter::builder().name("tag:streamstack:role").values(&self.tag_value).build())
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                let tags = i
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                    .collect();
                Some((
                    i.instance_id()?.to_owned(),
                    Described {
                        state: i.state()?.name()?.as_str().to_owned(),
                        tags,
                        image_id: i.image_id().unwrap_or_default().to_owned(),
                        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
                        subnet_id: i.subnet_id().map(str::to_owned),
                        security_groups: i
                            .security_groups()
                            .iter()
                            .filter_map(|g| g.group_id().map(str::to_owned))
                            .collect(),
                        key_name: i.key_name().map(str::to_owned),
                    },
                ))
            })
            .collect()
    }

    /// The instance the Elastic IP `allocation_id` is associated with.
    pub async fn address_instance(&self, allocation_id: &str) -> Option<String> {
        let out = self
            .ec2
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
            .expect("describe addresses");
        out.addresses().first().and_then(|a| a.instance_id()).map(str::to_owned)
    }

    /// Backup images of gateway `id` this function made: id -> (name, state), plus their
    /// snapshot ids.
    pub async fn images_of(&self, id: &str) -> BTreeMap<String, (String, String, Vec<String>)> {
        let out = self
            .ec2
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name(format!("tag:{GATEWAY_ID_TAG}")).values(id).build())
            .send()
            .await
            .expect("describe images");
        out.images()
            .iter()
            .filter_map(|i| {
                let snapshots = i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_owned))
                    .collect();
                Some((
                    i.image_id()?.to_owned(),
                    (
                        i.name().unwrap_or_default().to_owned(),
                        i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                        snapshots,
                    ),
                ))
            })
            .collect()
    }

    /// Whether snapshot `id` still exists.
    pub async fn snapshot_exists(&self, id: &str) -> bool {
        self.ec2
            .describe_snapshots()
            .snapshot_ids(id)
            .send()
            .await
            .is_ok_and(|o| !o.snapshots().is_empty())
    }

    /// The tags of snapshot `id` (key -> value); empty when it is gone.
    pub async fn snapshot_tags(&self, id: &str) -> std::collections::BTreeMap<String, String> {
        let out = self.ec2.describe_snapshots().snapshot_ids(id).send().await;
        out.ok()
            .and_then(|o| o.snapshots().first().cloned())
            .map(|s| {
                s.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The state row of gateway `id`.
    pub async fn record(&self, id: &str) -> Option<health::gateway::model::GatewayRecord> {
        self.store.get(id).await.expect("get gateway row")
    }

    /// Every row of the state table, raw, sorted by gateway id.
    pub async fn table_items(&self) -> Vec<String> {
        let out = self.dynamodb.scan().table_name(&self.table).send().await.expect("scan");
        let mut items: Vec<String> = out
            .items()
            .iter()
            .map(|i| {
                let sorted: BTreeMap<_, _> =
                    i.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect();
                format!("{sorted:?}")
            })
            .collect();
        items.sort();
        items
    }

    /// Alarms published so far (message bodies), drained from the queue.
    pub async fn alarms(&self) -> Vec<Value> {
        self.alarms.drain().await
    }

    /// The EC2 state-change event fixture of `state` (`stopped` or `terminated`) about
    /// `instance_id` (the fixture's instance id and ARN replaced).
    pub fn state_change_event(&self, instance_id: &str, state: &str) -> Value {
        let name = format!("ec2-instance-state-change-{state}.json");
        let mut event: Value =
            serde_json::from_str(&crate::vod::fixture(&name)).expect("fixture JSON");
        event["detail"]["instance-id"] = instance_id.into();
        event["resources"] = serde_json::json!([format!(
            "arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"
        )]);
        event
    }
}

/// The EventBridge scheduled event fixture.
pub fn scheduled_event() -> Value {
    serde_json::from_str(&crate::vod::fixture("eventbridge-scheduled-reconcile.json"))
        .expect("fixture JSON")
}

/// An instance as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// State name.
    pub state: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Image launched from.
    pub image_id: String,
    /// Instance type.
    pub instance_type: Option<String>,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Key pair name.
    pub key_name: Option<String>,
}

/// A local stand-in for the gateway software's health endpoint: answers every request with
/// the status the test sets, and counts requests.
pub struct HealthEndpoint {
    /// `http://127.0.0.1:<port>/health`.
    pub url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    /// Starts answering `status` on a free loopback port.
    pub async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let status = Arc::new(AtomicU16::new(status));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (status.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while read < buf.len() {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => read += n,
                        }
                        if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let code = s.load(Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url: format!("http://{addr}/health"), status, hits, task }
    }

    /// Answers `status` from now on.
    pub fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
