//! `devices-local`: the reconciler looping against a local stack, starting `streamer pull`
//! processes in place of ECS tasks (same assignment override), their stops delivered to the
//! task health handler as ECS task state change events.

use clap::Parser;
use devices::config::ReconcilerConfig;
use devices::local::ProcessTasks;
use devices::local_loop::LocalLoop;
use health::task::{TaskHealth, TaskHealthConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Reconcile devices into local `streamer pull` processes.
#[derive(Parser)]
struct Args {
    /// The streamer binary.
    #[arg(long, env = "STREAMER_BIN", default_value = "streamer")]
    streamer: PathBuf,
    /// Seconds between reconciles.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Directory of the processes' logs (`<slot>.log`).
    #[arg(long, default_value = ".local/tasks")]
    log_dir: PathBuf,
    /// Further arguments for `streamer pull` (e.g. `--segment-duration 2`).
    #[arg(last = true)]
    pull_args: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamstack_core::telemetry::init();
    let args = Args::parse();
    let config = ReconcilerConfig::from_env()?;
    let sdk = streamstack_core::aws::sdk_config(config.endpoint_url.as_deref()).await;
    let tasks = Arc::new(ProcessTasks::new(args.streamer, args.pull_args, args.log_dir));
    let reconciler =
        devices::reconciler(&config, &streamstack_core::aws::dynamodb(&sdk), tasks.clone());
    let health = TaskHealth::new(&TaskHealthConfig::from_env()?, &sdk);
    let control = LocalLoop { tasks: tasks.clone(), reconciler, health: Some(health) };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval.max(0.1)));
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => match control.step().await {
                Ok(step) if step.report.planned > 0 => tracing::info!(report = ?step.report, "reconciled"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            },
            () = &mut stop => break,
        }
    }
    tasks.stop_all().await;
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
