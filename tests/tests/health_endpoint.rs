//! The streamer's health endpoint as a load balancer and a container runtime use it: a real
//! `streamer pull` process with `HEALTH_LISTEN` answers `GET /healthz` with 200, and
//! `streamer healthcheck` (the container health check command) exits 0 against it, non-zero
//! against a port nobody serves and after the process stopped on SIGTERM.
//! (No AWS endpoint: a standalone pull into a directory.)

use std::time::Duration;
use streamstack_tests::process::{free_port, free_udp_port, streamer_binary, StreamerProcess};
use streamstack_tests::tempdir;

/// `streamer healthcheck --url <url>`: whether it exited 0, and what it printed.
async fn healthcheck(url: &str) -> (bool, String) {
    let out = tokio::process::Command::new(streamer_binary())
        .args(["healthcheck", "--url", url, "--timeout-secs", "5"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .expect("run streamer healthcheck");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn healthz_serves_200_and_healthcheck_exits_by_it() {
    let health_port = free_port();
    let listen = format!("127.0.0.1:{health_port}");
    let source = format!("udp://127.0.0.1:{}", free_udp_port());
    let output = format!("dir:{}", tempdir().display());
    let args = ["--source", &source, "--target", "device:health", "--output", &output];
    let streamer = StreamerProcess::pull(&args, &[("HEALTH_LISTEN", &listen)]).await;
    streamer.wait_for_log("health listening", 1, Duration::from_secs(20)).await;

    let url = format!("http://{listen}/healthz");
    let body = reqwest::get(&url).await.expect("GET /healthz");
    assert_eq!(body.status(), reqwest::StatusCode::OK);
    assert_eq!(body.text().await.unwrap(), "ok\n");
    let (ok, stderr) = healthcheck(&url).await;
    assert!(ok, "healthcheck against a serving streamer: {stderr}");

    let (ok, _) = healthcheck(&format!("http://127.0.0.1:{}/healthz", free_port())).await;
    assert!(!ok, "healthcheck against a closed port must fail");

    assert!(streamer.terminate(Duration::from_secs(30)).await, "clean exit on SIGTERM");
    let (ok, _) = healthcheck(&url).await;
    assert!(!ok, "healthcheck after the process stopped must fail");
}
