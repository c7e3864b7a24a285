//! The EC2 calls the gateway function makes: the [`Ec2`] trait and its SDK adapter
//! [`SdkEc2`]. The client comes from `streamstack_core::aws::ec2` (connect, attempt and
//! operation timeouts; standard retries with backoff), so no call can hang an invocation.

use super::model::{
    Address, CheckStatus, Image, Instance, Lifecycle, Status, CREATED_BY, CREATED_BY_TAG,
    GATEWAY_ID_TAG, REPLACES_TAG, SOURCE_INSTANCE_TAG,
};
use async_trait::async_trait;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// An EC2 call failed (after the SDK's bounded retries).
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// EC2 (or the network) refused or failed the call.
    #[error("EC2 {operation} failed: {}", DisplayErrorContext(.source))]
    Api {
        /// The API operation (`RunInstances`, …).
        operation: &'static str,
        /// The error code EC2 answered with, if any (`InvalidInstanceID.NotFound`, …).
        code: Option<String>,
        /// The SDK error.
        #[source]
        source: aws_sdk_ec2::Error,
    },
    /// EC2 answered without something it always sends (an instance id after `RunInstances`).
    #[error("EC2 {operation} answered without {missing}")]
    Incomplete {
        /// The API operation.
        operation: &'static str,
        /// What was missing.
        missing: &'static str,
    },
}

impl Ec2Error {
    /// The EC2 error code, if EC2 answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Ec2Error::Api { code, .. } => code.as_deref(),
            Ec2Error::Incomplete { .. } => None,
        }
    }
}

/// Maps an SDK error of `operation` to [`Ec2Error::Api`], keeping its code.
fn api<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> Ec2Error
where
    E: ProvideErrorMetadata,
    aws_sdk_ec2::Error: From<SdkError<E, R>>,
{
    move |e| {
        let code = e.code().map(str::to_owned);
        Ec2Error::Api { operation, code, source: e.into() }
    }
}

/// What a replacement instance is launched with (`RunInstances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// Image: the gateway's newest available backup, else the failed instance's own image.
    pub image_id: String,
    /// The failed instance's type.
    pub instance_type: Option<String>,
    /// Its subnet.
    pub subnet_id: Option<String>,
    /// Its security groups.
    pub security_group_ids: Vec<String>,
    /// Its key pair.
    pub key_name: Option<String>,
    /// Its instance profile (needs `iam:PassRole` on the profile's role).
    pub instance_profile_arn: Option<String>,
    /// Its tags (minus `aws:` ones) plus [`REPLACES_TAG`].
    pub tags: Vec<(String, String)>,
    /// Idempotency token (at most 64 ASCII characters): a retried launch with the same
    /// token returns the instance the first one launched instead of a second.
    pub client_token: String,
}

/// The EC2 operations the gateway function uses.
#[async_trait]
pub trait Ec2: Send + Sync {
    /// Every instance (any state) tagged `tag_key = tag_value` (`DescribeInstances` with a
    /// `tag:<key>` filter, all pages).
    async fn gateway_instances(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> Result<Vec<Instance>, Ec2Error>;

    /// One instance (`DescribeInstances`); `None` when EC2 does not know it.
    async fn instance(&self, id: &str) -> Result<Option<Instance>, Ec2Error>;

    /// Status checks of `ids` (`DescribeInstanceStatus`, `IncludeAllInstances`, batches of
    /// 100); instances EC2 reports nothing for are missing from the map.
    async fn statuses(&self, ids: &[String]) -> Result<HashMap<String, Status>, Ec2Error>;

    /// Every Elastic IP of the account in the Region (`DescribeAddresses`).
    async fn addresses(&self) -> Result<Vec<Address>, Ec2Error>;

    /// `RebootInstances` of one instance.
    async fn reboot(&self, id: &str) -> Result<(), Ec2Error>;

    /// `RunInstances` of one instance per `spec`; its id.
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, Ec2Error>;

    /// Instances tagged [`REPLACES_TAG`] = `failed_id` (any state).
    async fn replacements_of(&self, failed_id: &str) -> Result<Vec<Instance>, Ec2Error>;

    /// `AssociateAddress` of `allocation_id` with `instance_id`, `AllowReassociation`
    /// (takes the address from the failed instance; idempotent).
    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), Ec2Error>;

    /// `TerminateInstances` of one instance (terminating a terminated one succeeds).
    async fn terminate(&self, id: &str) -> Result<(), Ec2Error>;

    /// The gateway's backup images: `DescribeImages` of the account's own images tagged
    /// [`GATEWAY_ID_TAG`] = `gateway_id` and [`CREATED_BY_TAG`] = [`CREATED_BY`], disabled
    /// ones included.
    async fn gateway_images(&self, gateway_id: &str) -> Result<Vec<Image>, Ec2Error>;

    /// `CreateImage` of `instance_id` named `name`, `NoReboot`, tagged with the gateway id,
    /// [`CREATED_BY_TAG`] and [`SOURCE_INSTANCE_TAG`]. `Ok(None)` when an image of that name
    /// exists already (`InvalidAMIName.Duplicate`).
    async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        gateway_id: &str,
    ) -> Result<Option<String>, Ec2Error>;

    /// `DeregisterImage`, then `DeleteSnapshot` of each of its snapshots (already gone:
    /// fine).
    async fn delete_image(&self, image: &Image) -> Result<(), Ec2Error>;
}

/// [`Ec2`] on the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkEc2 {
    client: aws_sdk_ec2::Client,
}

impl SdkEc2 {
    /// An adapter on `client` (build it with `streamstack_core::aws::ec2`).
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Self { client }
    }

    async fn describe(&self, filters: Vec<Filter>) -> Result<Vec<Instance>, Ec2Error> {
        let mut pages =
            self.client.describe_instances().set_filters(Some(filters)).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("DescribeInstances"))?;
            for reservation in page.reservations() {
                out.extend(reservation.instances().iter().filter_map(instance_from_sdk));
            }
        }
        Ok(out)
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
        .collect()
}

/// The model of an SDK instance; `None` without an instance id.
pub fn instance_from_sdk(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let id = i.instance_id()?.to_owned();
    let tags = tag_map(i.tags());
    Some(Instance {
        gateway_id: tags.get(GATEWAY_ID_TAG).cloned().unwrap_or_else(|| id.clone()),
        lifecycle: i
            .state()
            .and_then(|s| s.name())
            .map_or(Lifecycle::Unknown, |n| Lifecycle::parse(n.as_str())),
        image_id: i.image_id().map(str::to_owned),
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
        subnet_id: i.subnet_id().map(str::to_owned),
        security_group_ids: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        key_name: i.key_name().map(str::to_owned),
        instance_profile_arn: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_owned),
        private_ip: i.private_ip_address().map(str::to_owned),
        launch_time: i
            .launch_time()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        tags,
        id,
    })
}

fn check(summary: Option<&aws_sdk_ec2::types::InstanceStatusSummary>) -> CheckStatus {
    summary
        .and_then(|s| s.status())
        .map_or(CheckStatus::Unknown, |s| CheckStatus::parse(s.as_str()))
}

fn image_from_sdk(i: &aws_sdk_ec2::types::Image) -> Option<Image> {
    use time::format_description::well_known::Rfc3339;
    Some(Image {
        id: i.image_id()?.to_owned(),
        name: i.name().unwrap_or_default().to_owned(),
        state: i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        created: i.creation_date().and_then(|d| OffsetDateTime::parse(d, &Rfc3339).ok()),
        snapshot_ids: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_owned))
            .collect(),
    })
}

#[async_trait]
impl Ec2 for SdkEc2 {
    async fn gateway_instances(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> Result<Vec<Instance>, Ec2Error> {
        self.describe(vec![filter(&format!("tag:{tag_key}"), tag_value)]).await
    }

    async fn instance(&self, id: &str) -> Result<Option<Instance>, Ec2Error> {
        let out = self.client.describe_instances().instance_ids(id).send().await;
        match out {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(instance_from_sdk)
                .find(|i| i.id == id)),
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => Ok(None),
            Err(e) => Err(api("DescribeInstances")(e)),
        }
    }

    async fn statuses(&self, ids: &[String]) -> Result<HashMap<String, Status>, Ec2Error> {
        let mut out = HashMap::new();
        for batch in ids.chunks(100) {
            let mut pages = self
                .client
                .describe_instance_status()
                .set_instance_ids(Some(batch.to_vec()))
                .include_all_instances(true)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(api("DescribeInstanceStatus"))?;
                for s in page.instance_statuses() {
                    let Some(id) = s.instance_id() else { continue };
                    let status = Status {
                        system: check(s.system_status()),
                        instance: check(s.instance_status()),
                    };
                    out.insert(id.to_owned(), status);
                }
            }
        }
        Ok(out)
    }

    async fn addresses(&self) -> Result<Vec<Address>, Ec2Error> {
        let out =
            self.client.describe_addresses().send().await.map_err(api("DescribeAddresses"))?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| {
                Some(Address {
                    allocation_id: a.allocation_id()?.to_owned(),
                    public_ip: a.public_ip().map(str::to_owned),
                    instance_id: a.instance_id().filter(|i| !i.is_empty()).map(str::to_owned),
                    gateway_id: tag_map(a.tags()).remove(GATEWAY_ID_TAG),
                })
            })
            .collect())
    }

    async fn reboot(&self, id: &str) -> Result<(), Ec2Error> {
        self.client
            .reboot_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(api("RebootInstances"))?;
        Ok(())
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<String, Ec2Error> {
        let mut tags = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (k, v) in &spec.tags {
            tags = tags.tags(tag(k, v));
        }
        let mut run = self
            .client
            .run_instances()
            .image_id(&spec.image_id)
            .min_count(1)
            .max_count(1)
            .client_token(&spec.client_token)
            .set_subnet_id(spec.subnet_id.clone())
            .set_key_name(spec.key_name.clone())
            .tag_specifications(tags.build());
        if let Some(t) = &spec.instance_type {
            run = run.instance_type(aws_sdk_ec2::types::InstanceType::from(t.as_str()));
        }
        if !spec.security_group_ids.is_empty() {
            run = run.set_security_group_ids(Some(spec.security_group_ids.clone()));
        }
        if let Some(arn) = &spec.instance_profile_arn {
            run = run.iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder().arn(arn).build(),
            );
        }
        let out = run.send().await.map_err(api("RunInstances"))?;
        out.instances()
            .iter()
            .find_map(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or(Ec2Error::Incomplete { operation: "RunInstances", missing: "an instance id" })
    }

    async fn replacements_of(&self, failed_id: &str) -> Result<Vec<Instance>, Ec2Error> {
        self.describe(vec![filter(&format!("tag:{REPLACES_TAG}"), failed_id)]).await
    }

    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), Ec2Error> {
        self.client
            .associate_address()
            .allocation_id(allocation_id)
            .instance_id(instance_id)
            .allow_reassociation(true)
            .send()
            .await
            .map_err(api("AssociateAddress"))?;
        Ok(())
    }

    async fn terminate(&self, id: &str) -> Result<(), Ec2Error> {
        match self.client.terminate_instances().instance_ids(id).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => Ok(()),
            Err(e) => Err(api("TerminateInstances")(e)),
        }
    }

    async fn gateway_images(&self, gateway_id: &str) -> Result<Vec<Image>, Ec2Error> {
        let mut pages = self
            .client
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .filters(filter(&format!("tag:{GATEWAY_ID_TAG}"), gateway_id))
            .filters(filter(&format!("tag:{CREATED_BY_TAG}"), CREATED_BY))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(api("DescribeImages"))?;
            out.extend(page.images().iter().filter_map(image_from_sdk));
        }
        Ok(out)
    }

    async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        gateway_id: &str,
    ) -> Result<Option<String>, Ec2Error> {
        // The image and its snapshots carry the same tags: pruning may delete only what this
        // function created (the IAM policy conditions DeleteSnapshot on the tag).
        let tags = |kind| {
            TagSpecification::builder()
                .resource_type(kind)
                .tags(tag(GATEWAY_ID_TAG, gateway_id))
                .tags(tag(CREATED_BY_TAG, CREATED_BY))
                .tags(tag(SOURCE_INSTANCE_TAG, instance_id))
                .build()
        };
        let out = self
            .client
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .description(format!("streamstack gateway {gateway_id} backup of {instance_id}"))
            .no_reboot(true)
            .tag_specifications(tags(ResourceType::Image))
            .tag_specifications(tags(ResourceType::Snapshot))
            .send()
            .await;
        match out {
            Ok(out) => out
                .image_id()
                .map(|id| Some(id.to_owned()))
                .ok_or(Ec2Error::Incomplete { operation: "CreateImage", missing: "an image id" }),
            Err(e) if e.code() == Some("InvalidAMIName.Duplicate") => Ok(None),
            Err(e) => Err(api("CreateImage")(e)),
        }
    }

    async fn delete_image(&self, image: &Image) -> Result<(), Ec2Error> {
        match self.client.deregister_image().image_id(&image.id).send().await {
            Ok(_) => {}
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidAMIID")) => {}
            Err(e) => return Err(api("DeregisterImage")(e)),
        }
        for snapshot in &image.snapshot_ids {
            match self.client.delete_snapshot().snapshot_id(snapshot).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => {}
                Err(e) => return Err(api("DeleteSnapshot")(e)),
            }
        }
        Ok(())
    }
}
