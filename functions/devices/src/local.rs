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
    exited: bool,
    stopping: bool,
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

    fn info(arn: &str, p: &Process) -> TaskInfo {
        TaskInfo {
            arn: arn.to_owned(),
            slot: slot_of(&p.started_by).map(str::to_owned),
            assignment: Some(p.assignment.clone()),
            last_status: if p.exited { "STOPPED" } else { "RUNNING" }.to_owned(),
            desired_status: if p.exited || p.stopping { "STOPPED" } else { "RUNNING" }.to_owned(),
            created_at: Some(p.created_at),
        }
    }
}

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
        for p in processes.values_mut() {
            if !p.exited && matches!(p.child.try_wait(), Ok(Some(_))) {
                p.exited = true;
            }
        }
        processes.retain(|_, p| !p.exited);
        Ok(processes.iter().map(|(arn, p)| Self::info(arn, p)).filter(TaskInfo::is_alive).collect())
    }

    async fn describe(&self, arns: &[String]) -> Result<Vec<TaskInfo>, TaskError> {
        let mut processes = self.processes.lock().await;
        Ok(arns
            .iter()
            .filter_map(|arn| {
                let p = processes.get_mut(arn)?;
                if !p.exited && matches!(p.child.try_wait(), Ok(Some(_))) {
                    p.exited = true;
                }
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
            exited: false,
            stopping: false,
        };
        self.processes.lock().await.insert(arn.clone(), process);
        Ok(arn)
    }

    async fn stop(&self, arn: &str, reason: &str) -> Result<(), TaskError> {
        let mut processes = self.processes.lock().await;
        if let Some(p) = processes.get_mut(arn) {
            tracing::info!(task = %arn, %reason, "stopping streamer process");
            terminate(&p.child);
            p.stopping = true;
        }
        Ok(())
    }
}
