//! [`Tasks`] on ECS Fargate: `ListTasks` (by task definition family, desired `RUNNING`, pages
//! of 100), `DescribeTasks` (pages of 100, with tags), `RunTask` (FARGATE, awsvpc,
//! `startedBy`, `clientToken`, tags, a container override carrying the slot) and `StopTask`.
//!
//! Throttling (`ThrottlingException`) and 5xx answers are retried by the SDK's standard retry
//! mode with exponential backoff, within the client's attempt and operation timeouts
//! (`streamstack_core::aws::ecs`).

use crate::tasks::{slot_of, RunRequest, TaskError, TaskInfo, Tasks, ASSIGNMENT_ENV};
use async_trait::async_trait;
use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, KeyValuePair,
    LaunchType, NetworkConfiguration, Tag, Task, TaskField, TaskOverride,
};
use aws_sdk_ecs::Client;
use time::OffsetDateTime;

/// Tasks per `DescribeTasks` and per `ListTasks` page (the API's limit).
const PAGE: usize = 100;

/// Where and how streamer tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSettings {
    /// Cluster name or ARN (`ECS_CLUSTER`).
    pub cluster: String,
    /// Task definition ARN or `family[:revision]` (`STREAMER_TASK_DEFINITION`).
    pub task_definition: String,
    /// Container that runs `streamer pull` (`STREAMER_CONTAINER`, default `streamer`).
    pub container: String,
    /// Subnets of the tasks' ENIs (`TASK_SUBNETS`).
    pub subnets: Vec<String>,
    /// Security groups of the tasks (`TASK_SECURITY_GROUPS`).
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP (`TASK_ASSIGN_PUBLIC_IP=ENABLED`).
    pub assign_public_ip: bool,
}

impl EcsSettings {
    /// The task definition family: `family` from `…:task-definition/family:rev`, or from
    /// `family:rev` / `family`.
    pub fn family(&self) -> &str {
        let tail = self
            .task_definition
            .rsplit_once("task-definition/")
            .map_or(self.task_definition.as_str(), |(_, t)| t);
        tail.split(':').next().unwrap_or(tail)
    }
}

/// [`Tasks`] on an ECS cluster.
#[derive(Debug, Clone)]
pub struct EcsTasks {
    client: Client,
    settings: EcsSettings,
}

fn backend<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_ecs::error::SdkError<E, R>) -> TaskError {
    move |e| TaskError::Backend { operation, message: DisplayErrorContext(&e).to_string() }
}

fn info(task: &Task) -> Option<TaskInfo> {
    let arn = task.task_arn()?.to_owned();
    let tag = |key: &str| {
        task.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_owned)
    };
    Some(TaskInfo {
        arn,
        slot: task.started_by().and_then(slot_of).map(str::to_owned),
        assignment: tag("streamstack:assignment"),
        last_status: task.last_status().unwrap_or_default().to_owned(),
        desired_status: task.desired_status().unwrap_or_default().to_owned(),
        created_at: task
            .created_at()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
    })
}

impl EcsTasks {
    /// Tasks of `settings.cluster` through `client`.
    pub fn new(client: Client, settings: EcsSettings) -> Self {
        Self { client, settings }
    }

    async fn describe_page(&self, arns: &[String]) -> Result<Vec<TaskInfo>, TaskError> {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .set_tasks(Some(arns.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(backend("DescribeTasks"))?;
        Ok(out.tasks().iter().filter_map(info).collect())
    }
}

#[async_trait]
impl Tasks for EcsTasks {
    async fn list(&self) -> Result<Vec<TaskInfo>, TaskError> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_tasks()
                .cluster(&self.settings.cluster)
                .family(self.settings.family())
                .desired_status(DesiredStatus::Running)
                .max_results(PAGE as i32)
                .set_next_token(token)
                .send()
                .await
                .map_err(backend("ListTasks"))?;
            arns.extend(out.task_arns().iter().cloned());
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        self.describe(&arns).await
    }

    async fn describe(&self, arns: &[String]) -> Result<Vec<TaskInfo>, TaskError> {
        let mut tasks = Vec::with_capacity(arns.len());
        for page in arns.chunks(PAGE) {
            tasks.extend(self.describe_page(page).await?);
        }
        Ok(tasks)
    }

    async fn run(&self, request: &RunRequest) -> Result<String, TaskError> {
        let s = &self.settings;
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(s.subnets.clone()))
            .set_security_groups(Some(s.security_groups.clone()))
            .assign_public_ip(if s.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| TaskError::Backend { operation: "RunTask", message: e.to_string() })?;
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&s.container)
                    .environment(
                        KeyValuePair::builder().name(ASSIGNMENT_ENV).value(&request.slot).build(),
                    )
                    .build(),
            )
            .build();
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let out = self
            .client
            .run_task()
            .cluster(&s.cluster)
            .task_definition(&s.task_definition)
            .launch_type(LaunchType::Fargate)
            .network_configuration(
                NetworkConfiguration::builder().awsvpc_configuration(network).build(),
            )
            .started_by(crate::tasks::started_by(&request.slot))
            .client_token(&request.client_token)
            .overrides(overrides)
            .tags(tag("streamstack:slot", &request.slot))
            .tags(tag("streamstack:assignment", &request.assignment))
            .count(1)
            .send()
            .await
            .map_err(backend("RunTask"))?;
        match out.tasks().first().and_then(|t| t.task_arn()) {
            Some(arn) => Ok(arn.to_owned()),
            None => Err(TaskError::NotStarted(
                out.failures()
                    .iter()
                    .map(|f| format!("{}: {}", f.reason().unwrap_or("?"), f.detail().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    async fn stop(&self, arn: &str, reason: &str) -> Result<(), TaskError> {
        self.client
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await
            .map_err(backend("StopTask"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_from_arn_or_name() {
        let mut s = EcsSettings {
            cluster: "c".into(),
            task_definition: "arn:aws:ecs:us-east-1:1:task-definition/stack-streamer-pull:7".into(),
            container: "streamer".into(),
            subnets: vec![],
            security_groups: vec![],
            assign_public_ip: false,
        };
        assert_eq!(s.family(), "stack-streamer-pull");
        s.task_definition = "fam:3".into();
        assert_eq!(s.family(), "fam");
        s.task_definition = "fam".into();
        assert_eq!(s.family(), "fam");
    }
}
