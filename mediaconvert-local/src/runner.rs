//! Jobs: the store behind the API, and their rendering with ffmpeg in the background, at most
//! `concurrency` at a time, in submission order.

use crate::events::{self, Change};
use crate::media::{encode_playlist_uris, probe};
use crate::model::{split_s3, JobSettings};
use crate::plan::{self, GroupKind, Plan};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::{mpsc, watch, Semaphore};

/// MediaConvert error code: the input could not be opened or probed.
pub const ERROR_INPUT: i64 = 1010;
/// Error code of settings this local service cannot render (not a MediaConvert code).
pub const ERROR_UNSUPPORTED: i64 = 1999;
/// Error code of a transcode that failed after probing (MediaConvert: 1999 "unknown").
pub const ERROR_TRANSCODE: i64 = 1999;

/// How the service runs and where its events go.
#[derive(Debug, Clone)]
pub struct Config {
    /// S3 client reading inputs and writing outputs.
    pub s3: aws_sdk_s3::Client,
    /// Jobs rendered at the same time.
    pub concurrency: usize,
    /// Scratch directory (one subdirectory per job, removed when it ends).
    pub work_dir: PathBuf,
    /// Program (and its first arguments) run on each event, with the event file's path last.
    pub on_event: Vec<String>,
    /// Directory receiving each event as `<job>-<n>-<status>.json`.
    pub events_dir: Option<PathBuf>,
    /// In-process receiver of each event (tests).
    pub events_tx: Option<mpsc::UnboundedSender<Value>>,
    /// Program (and its first arguments) validating each `CreateJob` body, given its file.
    pub model_check: Vec<String>,
    /// Print each job's percent on stderr.
    pub progress: bool,
}

/// One job, as `GetJob` shows it.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// `ClientRequestToken` it was created with.
    pub token: Option<String>,
    /// The `CreateJob` body.
    pub request: Value,
    /// `SUBMITTED`, `PROGRESSING`, `COMPLETE`, `CANCELED`, `ERROR`.
    pub status: &'static str,
    /// Unix seconds.
    pub submitted: i64,
    /// Unix seconds.
    pub started: Option<i64>,
    /// Unix seconds.
    pub finished: Option<i64>,
    /// 0..=100 while progressing.
    pub percent: Option<u8>,
    /// MediaConvert error code (`ERROR`).
    pub error_code: Option<i64>,
    /// Error text (`ERROR`).
    pub error_message: Option<String>,
    /// `outputGroupDetails` (`COMPLETE`).
    pub output_group_details: Option<Value>,
    events: usize,
}

impl Job {
    /// The job in MediaConvert's wire shape (`Job`, restJson1 names).
    pub fn to_json(&self) -> Value {
        let r = &self.request;
        let mut job = json!({
            "id": self.id,
            "arn": events::job_arn(&self.id),
            "status": self.status,
            "role": r["role"],
            "settings": r["settings"],
            "userMetadata": r.get("userMetadata").cloned().unwrap_or_else(|| json!({})),
            "queue": r.get("queue").cloned().unwrap_or_else(|| events::default_queue().into()),
            "createdAt": self.submitted,
            "statusUpdateInterval": r.get("statusUpdateInterval").cloned().unwrap_or_else(|| "SECONDS_60".into()),
            "priority": 0,
            "timing": { "submitTime": self.submitted },
        });
        if let Some(t) = self.started {
            job["timing"]["startTime"] = t.into();
        }
        if let Some(t) = self.finished {
            job["timing"]["finishTime"] = t.into();
        }
        if let Some(p) = self.percent {
            job["jobPercentComplete"] = p.into();
        }
        if let Some(c) = self.error_code {
            job["errorCode"] = c.into();
        }
        if let Some(m) = &self.error_message {
            job["errorMessage"] = m.clone().into();
        }
        if let Some(d) = &self.output_group_details {
            job["outputGroupDetails"] = d.clone();
        }
        job
    }

    fn user_metadata(&self) -> HashMap<String, String> {
        serde_json::from_value(self.request["userMetadata"].clone()).unwrap_or_default()
    }
}

/// Why `CancelJob` refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CancelError {
    /// No such job.
    #[error("The job {0} does not exist.")]
    NotFound(String),
    /// The job already ended.
    #[error("The job {0} is {1} and cannot be canceled.")]
    Ended(String, &'static str),
}

#[derive(Default)]
struct Store {
    jobs: Vec<Job>,
    by_token: HashMap<String, String>,
    cancels: HashMap<String, watch::Sender<bool>>,
}

/// The service: jobs and the runner. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    config: Arc<Config>,
    store: Arc<Mutex<Store>>,
    slots: Arc<Semaphore>,
    transcodes: Arc<AtomicUsize>,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Service {
    /// A service with no jobs.
    pub fn new(config: Config) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Self { config: Arc::new(config), store: Arc::default(), slots, transcodes: Arc::default() }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of ffmpeg transcodes started so far.
    pub fn transcodes(&self) -> usize {
        self.transcodes.load(Ordering::SeqCst)
    }

    /// Creates the job of `request` (a validated `CreateJob` body) and queues it, or returns
    /// the job already created with the same `clientRequestToken`. Returns the job and whether
    /// it is new.
    pub fn create(&self, request: Value) -> (Job, bool) {
        let token = request["clientRequestToken"].as_str().map(str::to_owned);
        let mut store = self.store.lock().expect("store");
        if let Some(id) = token.as_ref().and_then(|t| store.by_token.get(t)) {
            let id = id.clone();
            if let Some(job) = store.jobs.iter().find(|j| j.id == id) {
                return (job.clone(), false);
            }
        }
        let ms = now_ms();
        let id = format!("{ms}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let job = Job {
            id: id.clone(),
            token: token.clone(),
            request,
            status: "SUBMITTED",
            submitted: ms / 1000,
            started: None,
            finished: None,
            percent: None,
            error_code: None,
            error_message: None,
            output_group_details: None,
            events: 0,
        };
        if let Some(t) = token {
            store.by_token.insert(t, id.clone());
        }
        let (cancel_tx, cancel_rx) = watch::channel(false);
        store.cancels.insert(id.clone(), cancel_tx);
        store.jobs.push(job.clone());
        drop(store);
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = this.slots.clone().acquire_owned().await else { return };
            this.run(&id, cancel_rx).await;
        });
        (job, true)
    }

    /// Job `id`.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.store.lock().expect("store").jobs.iter().find(|j| j.id == id).cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Job> {
        self.store.lock().expect("store").jobs.clone()
    }

    /// Cancels job `id` (a running transcode is killed).
    ///
    /// # Errors
    /// [`CancelError`] when the job does not exist or already ended.
    pub async fn cancel(&self, id: &str) -> Result<(), CancelError> {
        let submitted = {
            let mut store = self.store.lock().expect("store");
            let job = store
                .jobs
                .iter_mut()
                .find(|j| j.id == id)
                .ok_or_else(|| CancelError::NotFound(id.to_owned()))?;
            if matches!(job.status, "COMPLETE" | "ERROR" | "CANCELED") {
                return Err(CancelError::Ended(id.to_owned(), job.status));
            }
            let submitted = job.status == "SUBMITTED";
            if submitted {
                job.status = "CANCELED";
                job.finished = Some(now_ms() / 1000);
            }
            if let Some(tx) = store.cancels.get(id) {
                let _ = tx.send(true);
            }
            submitted
        };
        if submitted {
            self.emit(id, &Change::Canceled).await;
        }
        Ok(())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut store = self.store.lock().expect("store");
        let job = store.jobs.iter_mut().find(|j| j.id == id)?;
        f(job);
        Some(job.clone())
    }

    /// Delivers `change` of job `id`: events directory, in-process receiver, `--on-event`.
    async fn emit(&self, id: &str, change: &Change) {
        let Some(job) = self.update(id, |j| j.events += 1) else { return };
        let event = events::event(id, &job.user_metadata(), change, now_ms());
        let name = format!("{id}-{:03}-{}.json", job.events, change.status());
        let body = serde_json::to_vec_pretty(&event).unwrap_or_default();
        let dir =
            self.config.events_dir.clone().unwrap_or_else(|| self.config.work_dir.join("events"));
        let path = dir.join(&name);
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            eprintln!("mediaconvert-local: events directory {}: {e}", dir.display());
        }
        if let Err(e) = tokio::fs::write(&path, &body).await {
            eprintln!("mediaconvert-local: cannot write {}: {e}", path.display());
        }
        if let Some(tx) = &self.config.events_tx {
            let _ = tx.send(event);
        }
        if let Some((program, args)) = self.config.on_event.split_first() {
            let out = tokio::process::Command::new(program).args(args).arg(&path).output().await;
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "mediaconvert-local: {program} on {name} failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => eprintln!("mediaconvert-local: cannot run {program}: {e}"),
            }
        }
    }

    async fn fail(&self, id: &str, code: i64, message: String) {
        eprintln!("mediaconvert-local: job {id} ERROR {code}: {message}");
        self.update(id, |j| {
            j.status = "ERROR";
            j.error_code = Some(code);
            j.error_message = Some(message.clone());
            j.finished = Some(now_ms() / 1000);
        });
        self.emit(id, &Change::Error { code, message }).await;
    }

    async fn run(&self, id: &str, mut cancel: watch::Receiver<bool>) {
        if *cancel.borrow() {
            return;
        }
        let Some(job) = self.update(id, |j| {
            j.status = "PROGRESSING";
            j.started = Some(now_ms() / 1000);
            j.percent = Some(0);
        }) else {
            return;
        };
        self.emit(id, &Change::Progressing).await;
        let work = self.config.work_dir.join(id);
        let result = self.render(&job, &work, &mut cancel).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        match result {
            Ok(details) => {
                self.update(id, |j| {
                    j.status = "COMPLETE";
                    j.percent = None;
                    j.finished = Some(now_ms() / 1000);
                    j.output_group_details = Some(details.clone());
                });
                eprintln!("mediaconvert-local: job {id} COMPLETE");
                self.emit(id, &Change::Complete(details)).await;
            }
            Err(Failure::Canceled) => {
                self.update(id, |j| {
                    j.status = "CANCELED";
                    j.finished = Some(now_ms() / 1000);
                });
                eprintln!("mediaconvert-local: job {id} CANCELED");
                self.emit(id, &Change::Canceled).await;
            }
            Err(Failure::Error(code, message)) => self.fail(id, code, message).await,
        }
    }

    async fn progress(&self, id: &str, percent: u8, phase: &'static str, last: &mut u8) {
        self.update(id, |j| j.percent = Some(percent));
        if self.config.progress && percent != *last {
            eprintln!("mediaconvert-local: job {id} {phase} {percent}%");
        }
        // A STATUS_UPDATE at every quarter (MediaConvert: every statusUpdateInterval).
        if percent / 25 > *last / 25 {
            self.emit(id, &Change::StatusUpdate { percent, phase }).await;
        }
        *last = percent;
    }

    async fn render(
        &self,
        job: &Job,
        work: &Path,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Value, Failure> {
        let settings: JobSettings = serde_json::from_value(job.request["settings"].clone())
            .map_err(|e| Failure::Error(ERROR_UNSUPPORTED, format!("settings: {e}")))?;
        let file_input = settings.inputs.first().map(|i| i.file_input.clone()).unwrap_or_default();
        let open_error = |why: String| {
            Failure::Error(
                ERROR_INPUT,
                format!("Unable to open input file [{file_input}]: [Failed probe/open: [{why}]]"),
            )
        };
        let (bucket, key) =
            split_s3(&file_input).ok_or_else(|| open_error("not an s3:// URL".into()))?;
        let input_dir = work.join("input");
        tokio::fs::create_dir_all(&input_dir).await.map_err(|e| open_error(e.to_string()))?;
        let input = input_dir.join(key.rsplit('/').next().unwrap_or("input"));
        let object = self
            .config
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| open_error(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        let bytes = object.body.collect().await.map_err(|e| open_error(e.to_string()))?;
        tokio::fs::write(&input, bytes.into_bytes())
            .await
            .map_err(|e| open_error(e.to_string()))?;
        let probe = probe(&input).await.map_err(open_error)?;
        let mut last = 0u8;
        self.progress(&job.id, 5, "PROBING", &mut last).await;

        let plan = plan::plan(&settings, &input, &probe, work)
            .map_err(|e| Failure::Error(ERROR_UNSUPPORTED, e.0))?;
        for g in &plan.groups {
            tokio::fs::create_dir_all(&g.dir)
                .await
                .map_err(|e| Failure::Error(ERROR_TRANSCODE, e.to_string()))?;
        }
        if *cancel.borrow() {
            return Err(Failure::Canceled);
        }
        self.transcodes.fetch_add(1, Ordering::SeqCst);
        self.transcode(&job.id, &plan, probe.duration_s, cancel, &mut last).await?;
        self.progress(&job.id, 90, "UPLOADING", &mut last).await;
        let details = self.upload(&plan, probe.duration_s).await?;
        self.progress(&job.id, 100, "UPLOADING", &mut last).await;
        Ok(details)
    }

    async fn transcode(
        &self,
        id: &str,
        plan: &Plan,
        duration_s: f64,
        cancel: &mut watch::Receiver<bool>,
        last: &mut u8,
    ) -> Result<(), Failure> {
        let mut child = tokio::process::Command::new("ffmpeg")
            .args(&plan.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure::Error(ERROR_TRANSCODE, format!("cannot run ffmpeg: {e}")))?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = child.stderr.take().expect("stderr");
        let err_task = tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        });
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Some(us) = line.strip_prefix("out_time_us=").and_then(|v| v.trim().parse::<f64>().ok()) {
                            let frac = (us / 1e6 / duration_s.max(0.001)).clamp(0.0, 1.0);
                            let percent = 5 + (frac * 85.0) as u8;
                            if percent > *last {
                                self.progress(id, percent, "TRANSCODING", last).await;
                            }
                        }
                    }
                    _ => break,
                },
                _ = cancel.changed() => {
                    let _ = child.kill().await;
                    return Err(Failure::Canceled);
                }
            }
        }
        let status =
            child.wait().await.map_err(|e| Failure::Error(ERROR_TRANSCODE, e.to_string()))?;
        let stderr = err_task.await.unwrap_or_default();
        if *cancel.borrow() {
            return Err(Failure::Canceled);
        }
        if !status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(Failure::Error(
                ERROR_TRANSCODE,
                format!(
                    "Transcoding failed: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            ));
        }
        Ok(())
    }

    /// Uploads every group's files; returns `outputGroupDetails`.
    async fn upload(&self, plan: &Plan, duration_s: f64) -> Result<Value, Failure> {
        let fail =
            |e: String| Failure::Error(ERROR_TRANSCODE, format!("Failed to write output: {e}"));
        let mut details = Vec::new();
        for g in &plan.groups {
            let s3url = |file: &str| format!("s3://{}/{}{file}", g.bucket, g.prefix);
            let mut names: Vec<String> = std::fs::read_dir(&g.dir)
                .map_err(|e| fail(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            let mut outputs = Vec::new();
            for o in &g.outputs {
                let mut out = json!({});
                if o.frame_capture {
                    let stem = o.file.trim_end_matches(".%07d.jpg").replace("%%", "%");
                    let captures: Vec<&String> = names
                        .iter()
                        .filter(|n| n.starts_with(&format!("{stem}.")) && n.ends_with(".jpg"))
                        .collect();
                    let last = captures.last().map(|n| s3url(n)).into_iter().collect::<Vec<_>>();
                    out["outputFilePaths"] = json!(last);
                    out["durationInMs"] = json!((duration_s * 1000.0).round() as u64);
                    out["videoDetails"] = json!({"widthInPx": o.width, "heightInPx": o.height});
                } else {
                    let path = g.dir.join(&o.file);
                    let files: Vec<PathBuf> = match g.kind {
                        GroupKind::Hls => {
                            let text = std::fs::read_to_string(&path)
                                .map_err(|e| fail(format!("{}: {e}", o.file)))?;
                            text.lines()
                                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                                .map(|l| g.dir.join(l))
                                .collect()
                        }
                        GroupKind::File => vec![path.clone()],
                    };
                    let bytes: u64 = files
                        .iter()
                        .filter_map(|f| std::fs::metadata(f).ok())
                        .map(|m| m.len())
                        .sum();
                    let dur = probe(&path).await.map(|p| p.duration_s).unwrap_or(duration_s);
                    out["outputFilePaths"] = json!([s3url(&o.file)]);
                    out["durationInMs"] = json!((dur * 1000.0).round() as u64);
                    out["videoDetails"] = json!({
                        "widthInPx": o.width,
                        "heightInPx": o.height,
                        "averageBitrate": (bytes as f64 * 8.0 / dur.max(0.001)).round() as u64,
                    });
                }
                outputs.push(out);
            }
            for name in &names {
                let path = g.dir.join(name);
                let mut body = tokio::fs::read(&path).await.map_err(|e| fail(e.to_string()))?;
                let content_type = match name.rsplit('.').next() {
                    Some("m3u8") => {
                        body = encode_playlist_uris(&String::from_utf8_lossy(&body)).into_bytes();
                        "application/vnd.apple.mpegurl"
                    }
                    Some("ts") => "video/MP2T",
                    Some("mp4") => "video/mp4",
                    Some("jpg") => "image/jpeg",
                    _ => "application/octet-stream",
                };
                self.config
                    .s3
                    .put_object()
                    .bucket(&g.bucket)
                    .key(format!("{}{name}", g.prefix))
                    .content_type(content_type)
                    .body(body.into())
                    .send()
                    .await
                    .map_err(|e| fail(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
            }
            let mut group = json!({ "outputDetails": outputs, "type": g.kind.as_str() });
            if let Some(master) = &g.master {
                group["playlistFilePaths"] = json!([s3url(master)]);
            }
            details.push(group);
        }
        Ok(Value::Array(details))
    }
}

enum Failure {
    Canceled,
    Error(i64, String),
}
