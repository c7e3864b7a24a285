//! [`Tasks`] as local processes: `devices-local` runs the same reconciler against a local
//! stack and starts `streamer pull` processes in place of ECS tasks, with the same
//! assignment override (`PULL_ASSIGNMENT=<slot>`) and the process environment (tables,
//! bucket, endpoint, `MEDIA_URL_KEY`) standing in for the task definition's.

use crate::tasks::{slot_of, started_by, RunRequest, TaskError, TaskInfo, Tasks, ASSIGNMENT_ENV};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// One started process.
struct Process {
    child: Child,
    started_by: String,
    assignment: String,
    created_at: OffsetDateTime,
    /// Exit code once it exited (128 + signal number when killed, as Docker reports it).
    exit: Option<i32>,
    /// The `StopTask` reason, once stopped on purpose.
    stopping: Option<String>,
    /// The version of the next state change event (ECS's `detail.version`).
    version: u64,
}

impl Process {
    /// Notices an exit (non-blocking).
    fn poll(&mut self) {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                self.exit = Some(status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(-1));
            }
        }
    }
}

/// Streamer processes keyed by their pseudo task ARN `arn:local:ecs:task/local/<n>`.
pub struct ProcessTasks {
    streamer: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
    envs: Vec<(String, String)>,
    next: AtomicU64,
    processes: Mutex<HashMap<String, Process>>,
}

impl ProcessTasks {
    /// Runs `<streamer> pull <args…>` per slot; each process logs to `<log_dir>/<slot>.log` and
    /// spools to `<log_dir>/spool/<slot>`.
    pub fn new(streamer: PathBuf, args: Vec<String>, log_dir: PathBuf) -> Self {
        Self {
            streamer,
            args,
            log_dir,
            envs: Vec::new(),
            next: AtomicU64::new(1),
            processes: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `name=value` to every process's environment (over the inherited one), as a task
    /// definition's environment would.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// Sends SIGTERM to every process and waits for them (each drains its pulls).
    pub async fn stop_all(&self) {
        let mut processes = self.processes.lock().await;
        for p in processes.values_mut() {
            terminate(&p.child);
        }
        for p in processes.values_mut() {
            let _ = p.child.wait().await;
        }
        processes.clear();
    }

    /// The pid of the process recording `slot`, while it runs (tests kill it).
    pub async fn pid(&self, slot: &str) -> Option<u32> {
        let by = started_by(slot);
        let mut processes = self.processes.lock().await;
        processes.values_mut().for_each(Process::poll);
        processes
            .values()
            .find(|p| p.started_by == by && p.exit.is_none())
            .and_then(|p| p.child.id())
    }

    /// The processes that exited since the last call, each as the EventBridge "ECS Task State
    /// Change" event ECS would send for the task (`lastStatus` `STOPPED`; `stopCode`
    /// `UserInitiated` with the `StopTask` reason when stopped through [`Tasks::stop`], else
    /// `EssentialContainerExited` with the exit code), and forgets them.
    pub async fn take_stopped(&self) -> Vec<serde_json::Value> {
        let mut processes = self.processes.lock().await;
        processes.values_mut().for_each(Process::poll);
        let now = OffsetDateTime::now_utc();
        let stopped: Vec<String> = processes
            .iter()
            .filter(|(_, p)| p.exit.is_some())
            .map(|(arn, _)| arn.clone())
            .collect();
        stopped
            .into_iter()
            .filter_map(|arn| processes.remove(&arn).map(|p| stop_event(&arn, &p, now)))
            .collect()
    }

    fn info(arn: &str, p: &Process) -> TaskInfo {
        TaskInfo {
            arn: arn.to_owned(),
            slot: slot_of(&p.started_by).map(str::to_owned),
            assignment: Some(p.assignment.clone()),
            // An exit is shown once delivered ([`ProcessTasks::take_stopped`] forgets the
            // process): until then the task reads as running, so the reconciler never acts
            // on a crash before the health handler has recorded it (in AWS the two race, and
            // converge one reconcile later).
            last_status: "RUNNING".to_owned(),
            desired_status: if p.stopping.is_some() { "STOPPED" } else { "RUNNING" }.to_owned(),
            created_at: Some(p.created_at),
        }
    }
}

/// The ECS task state change event of `p`'s stop (shape in `health::task::event`).
fn stop_event(arn: &str, p: &Process, now: OffsetDateTime) -> serde_json::Value {
    let rfc3339 = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).ok();
    let (code, reason) = match &p.stopping {
        Some(reason) => ("UserInitiated", reason.clone()),
        None => ("EssentialContainerExited", "Essential container in task exited".to_owned()),
    };
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "time": rfc3339(now),
        "region": "local",
        "resources": [arn],
        "detail": {
            "taskArn": arn,
            "clusterArn": LOCAL_CLUSTER_ARN,
            "group": "family:streamer-pull",
            "startedBy": p.started_by,
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": code,
            "stoppedReason": reason,
            "containers": [{ "name": "streamer", "exitCode": p.exit, "lastStatus": "STOPPED" }],
            "createdAt": rfc3339(p.created_at),
            "startedAt": rfc3339(p.created_at),
            "stoppedAt": rfc3339(now),
            "version": p.version + 1,
        }
    })
}

/// The cluster ARN in the local task runner's events.
pub const LOCAL_CLUSTER_ARN: &str = "arn:local:ecs:cluster/local";

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

#[async_trait]
impl Tasks for ProcessTasks {
    async fn list(&self) -> Result<Vec<TaskInfo>, TaskError> {
        let mut processes = self.processes.lock().await;
        processes.values_mut().for_each(Process::poll);
        Ok(processes.iter().map(|(arn, p)| Self::info(arn, p)).filter(TaskInfo::is_alive).collect())
    }

    async fn describe(&self, arns: &[String]) -> Result<Vec<TaskInfo>, TaskError> {
        let mut processes = self.processes.lock().await;
        Ok(arns
            .iter()
            .filter_map(|arn| {
                let p = processes.get_mut(arn)?;
                p.poll();
                Some(Self::info(arn, p))
            })
            .collect())
    }

    async fn run(&self, request: &RunRequest) -> Result<String, TaskError> {
        let failed =
            |e: std::io::Error| TaskError::Backend { operation: "RunTask", message: e.to_string() };
        std::fs::create_dir_all(&self.log_dir).map_err(failed)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{}.log", request.slot)))
            .map_err(failed)?;
        let child = Command::new(&self.streamer)
            .arg("pull")
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env(ASSIGNMENT_ENV, &request.slot)
            // Each slot its own spool (an ECS task has its own disk): a restarted process
            // recovers what its predecessor left, and never another slot's uploads.
            .env("STREAMER_SPOOL_DIR", self.log_dir.join("spool").join(&request.slot))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(failed)?;
        let arn = format!("arn:local:ecs:task/local/{}", self.next.fetch_add(1, Ordering::Relaxed));
        let process = Process {
            child,
            started_by: started_by(&request.slot),
            assignment: request.assignment.clone(),
            created_at: OffsetDateTime::now_utc(),
            exit: None,
            stopping: None,
            version: 1,
        };
        self.processes.lock().await.insert(arn.clone(), process);
        Ok(arn)
    }

    async fn stop(&self, arn: &str, reason: &str) -> Result<(), TaskError> {
        let mut processes = self.processes.lock().await;
        if let Some(p) = processes.get_mut(arn) {
            tracing::info!(task = %arn, %reason, "stopping streamer process");
            terminate(&p.child);
            p.stopping = Some(reason.to_owned());
        }
        Ok(())
    }
}
