//! Real-time publishers: one `ffmpeg -re -stream_loop -1 -i CLIP -t SECONDS-0.1 -c copy -f
//! flv URL` per stream, started a few milliseconds apart, each logging to its own file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running publishers of one phase.
pub struct Publishers {
    children: Vec<(Child, PathBuf)>,
    /// When the first publisher was started.
    pub first: Instant,
    /// When the last publisher was started.
    pub last: Instant,
}

/// How the publishers of one phase ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Publishers that exited with status 0.
    pub ok: usize,
    /// Error output of the first few that did not (exit status and log tail).
    pub failures: Vec<String>,
}

/// Starts one publisher per URL, `stagger` apart, logging into `logs`.
///
/// # Panics
/// When ffmpeg cannot be started.
pub fn start(
    clip: &Path,
    urls: &[String],
    seconds: u32,
    stagger: Duration,
    logs: &Path,
) -> Publishers {
    std::fs::create_dir_all(logs).expect("create publisher log dir");
    let first = Instant::now();
    let mut children = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(stagger);
        }
        let log = logs.join(format!("publisher-{i}.log"));
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-stream_loop", "-1", "-i"])
            .arg(clip)
            // `-t` keeps frames whose time is below the limit, counted from the clip's first
            // timestamp (0.067 s with B-frames): stop a frame early so the last IDR of the
            // grid does not open one extra frame-long segment.
            .args(["-t", &format!("{}", f64::from(seconds) - 0.1), "-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("publisher log"))
            .spawn()
            .expect("spawn ffmpeg publisher");
        children.push((child, log));
    }
    Publishers { children, first, last: Instant::now() }
}

impl Publishers {
    /// Waits for every publisher until `deadline`, then kills the stragglers (counted as
    /// failures).
    pub fn wait(mut self, deadline: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        for (child, log) in &mut self.children {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            if status.is_some_and(|s| s.success()) {
                outcome.ok += 1;
            } else if outcome.failures.len() < 5 {
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                outcome.failures.push(format!("{status:?}: {}", tail.join(" | ")));
            }
        }
        outcome
    }
}
