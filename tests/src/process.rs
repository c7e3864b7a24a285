//! `streamer serve` as a child process, for tests that need what only a real process has:
//! its memory as the OS counts it, `kill -9`, two processes sharing one channel table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Path of the `streamer` binary of this build (`target/<profile>/streamer`, next to the
/// test executable's `deps/` folder). `make test` builds it before running the tests.
///
/// # Panics
/// When the binary is missing: run `cargo build -p streamer` first.
pub fn streamer_binary() -> PathBuf {
    workspace_binary("streamer")
}

/// Path of the workspace binary `name` of this build (`target/<profile>/<name>`).
///
/// # Panics
/// When the binary is missing: `make test` builds the ones the tests run.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --bin {name}` (make test does)",
        binary.display()
    );
    binary
}

/// A workspace binary running as a child process that serves HTTP on a port of 127.0.0.1,
/// killed when dropped; its log (stderr) goes to a file.
pub struct Service {
    /// The port it listens on.
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts binary `name` with `args` and `env` (`{port}` in an argument becomes a free
    /// port), `RUST_LOG=info`, and waits until it accepts connections on that port.
    ///
    /// # Panics
    /// When it exits or does not listen within 20 s, with its log.
    pub async fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = crate::tempdir().join(format!("{name}.log"));
        let mut cmd = Command::new(workspace_binary(name));
        cmd.args(args.iter().map(|a| a.replace("{port}", &port.to_string())))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log file"))
            .kill_on_drop(true);
        let mut service = Self { port, child: cmd.spawn().expect("spawn service"), log };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return service;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("{name} exited with {status}:\n{}", service.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} did not listen on port {port} within 20 s:\n{}", service.log());
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A free TCP port on 127.0.0.1 (bound once, then released for the child to take).
pub fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    socket.local_addr().expect("local addr").port()
}

/// A free UDP port on 127.0.0.1 (bound once, then released): for UDP and SRT listeners.
pub fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
    socket.local_addr().expect("local addr").port()
}

/// A running `streamer serve` (or `streamer pull`) child process, killed when dropped.
pub struct StreamerProcess {
    /// The RTMP listen address.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl StreamerProcess {
    /// Starts `streamer serve --listen 127.0.0.1:<free port>` with the channel table `table`
    /// on the moto endpoint of this test run, extra `args` and `env` (a fresh
    /// `STREAMER_SPOOL_DIR` and SRT on a random port unless `env` or `args` say otherwise),
    /// and waits until it accepts connections.
    /// Its log (`RUST_LOG=info` unless set) goes to a file, read with
    /// [`StreamerProcess::log`].
    ///
    /// # Panics
    /// When the process does not start listening within 20 s.
    pub async fn start(table: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = crate::tempdir().join("streamer.log");
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut cmd = Command::new(streamer_binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .env("CHANNELS_TABLE", table)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("STREAMER_SPOOL_DIR", crate::tempdir())
            // Not the shared default port: several processes run at once.
            .env("SRT_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn streamer");
        let process = Self { addr, child, log };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("streamer did not listen on {addr} within 20 s");
    }

    /// Starts `streamer pull` with `args` (e.g. `--source`, `--target`, `--output dir:…`) and
    /// `env` (tables: `CHANNELS_TABLE`, `DEVICES_TABLE`; none for a standalone run), a fresh
    /// `STREAMER_SPOOL_DIR` unless `env` names one, and waits until it logged `pulling` for
    /// its first source. [`StreamerProcess::addr`] is unused (`0.0.0.0:0`).
    ///
    /// # Panics
    /// When the process exits or does not start pulling within 20 s.
    pub async fn pull(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::subcommand("pull", args, env, "pulling").await
    }

    /// Starts `streamer egress` with `args` (`--source`, `--target`, …) and `env`, and waits
    /// until it logged `egress starting`. [`StreamerProcess::addr`] is unused.
    ///
    /// # Panics
    /// When the process exits or does not start within 20 s.
    pub async fn egress(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::subcommand("egress", args, env, "egress starting").await
    }

    /// `streamer <name> <args>` without tables, waiting for `ready` in its log.
    async fn subcommand(name: &str, args: &[&str], env: &[(&str, &str)], ready: &str) -> Self {
        let log = crate::tempdir().join("streamer.log");
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut cmd = Command::new(streamer_binary());
        cmd.arg(name)
            .args(args)
            .env_remove("CHANNELS_TABLE")
            .env_remove("DEVICES_TABLE")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("STREAMER_SPOOL_DIR", crate::tempdir())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn streamer");
        let mut process = Self { addr: ([0, 0, 0, 0], 0).into(), child, log };
        for _ in 0..200 {
            if process.log().contains(ready) {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("streamer {name} exited with {status}:\n{}", process.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("streamer {name} did not start within 20 s:\n{}", process.log());
    }

    /// The file its log goes to (readable after the process ended).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` until the log holds `needle` at least `times` times.
    ///
    /// # Panics
    /// When it does not, with the log.
    pub async fn wait_for_log(&self, needle: &str, times: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.log().matches(needle).count() < times {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} x{times} in the log within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts that no log line so far holds any of `secrets` (signatures, keys, stream keys)
    /// nor a push URL's query string.
    ///
    /// # Panics
    /// On the first offending line.
    pub fn assert_log_free_of(&self, secrets: &[&str]) {
        let log = self.log();
        assert!(!log.is_empty(), "the streamer logged nothing");
        for line in log.lines() {
            for secret in secrets.iter().copied().chain(["sig=", "exp="]) {
                assert!(!line.contains(secret), "log line leaks {secret:?}: {line}");
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("streamer is running")
    }

    /// Resident set size of the process now, bytes (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident set size so far, bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// `kill -9`: the process gets no chance to flush, release leases or end playlists.
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Waits up to `within` for the process to exit by itself: its exit status, or `None`
    /// if it is still running (then killed when dropped).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait()).await.ok().and_then(Result::ok)
    }

    /// SIGTERM (what ECS sends on stop), then waits up to `grace` for a clean exit; returns
    /// whether it exited by itself with success.
    pub async fn terminate(mut self, grace: Duration) -> bool {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
