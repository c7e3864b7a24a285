//! The two ingest servers under test, each run as a child process on 127.0.0.1:
//!
//! - `streamer serve` (release build) with a channels table in the moto server named by
//!   `AWS_ENDPOINT_URL`, N channels created directly in the table, a `dir:` sink on tmpfs;
//! - nginx with Debian's `libnginx-mod-rtmp`, `hls on`, a config written into a temp dir,
//!   `nginx -p <dir> -c <conf> -g 'daemon off;'`, `hls_path` on tmpfs.

use crate::support::{reap, ProcTree, Usage};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamstack_core::aws::AwsClients;
use streamstack_core::{ChannelStore, DynamoChannelStore, HlsSettings, NewChannel};

/// Where Debian's `libnginx-mod-rtmp` installs the module.
pub const NGINX_RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// Which server a phase measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `streamer serve`.
    Streamer,
    /// nginx-rtmp.
    Nginx,
}

impl Kind {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Streamer => "streamer",
            Kind::Nginx => "nginx-rtmp",
        }
    }
}

/// One publishable stream: the URL a publisher pushes to and the playlist it must produce.
#[derive(Debug, Clone)]
pub struct Stream {
    /// RTMP push URL (signed for the streamer).
    pub url: String,
    /// The playlist the server writes for it.
    pub playlist: PathBuf,
}

/// A started server process.
pub struct Running {
    /// The server kind.
    pub kind: Kind,
    /// Its process tree (nginx: master and workers).
    pub tree: ProcTree,
    child: Child,
    started: Instant,
    /// The streams to publish, one per publisher.
    pub streams: Vec<Stream>,
    /// Extra command-line arguments the server needed (reported).
    pub notes: Vec<String>,
}

/// Bench settings the servers need.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Number of streams.
    pub streams: usize,
    /// Target segment duration, seconds.
    pub segment_secs: u32,
    /// Seconds each publisher publishes.
    pub publish_secs: u32,
    /// Scratch directory on tmpfs (outputs, configs, logs).
    pub dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port on 127.0.0.1")
}

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not start listening on {addr} ({exited:?}); its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `streamer serve` options that bound what one source IP (or the whole server) may open or
/// attempt: every publisher of this bench comes from 127.0.0.1 within a few seconds.
const SOURCE_LIMIT_FLAGS: [&str; 3] =
    ["--max-connections", "--max-connections-per-ip", "--publish-attempts-per-minute"];

/// The [`SOURCE_LIMIT_FLAGS`] that `streamer serve --help` lists with a default below
/// `needed`, each with `needed` as its value (a build without one of them is left alone).
fn streamer_limit_args(streamer: &Path, needed: usize) -> Vec<String> {
    let help = Command::new(streamer)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // clap's long help: an option line (`      --flag <VALUE>`), then its text, which ends
    // with `[default: N]`.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag = trimmed.split([',', ' ']).find(|w| w.starts_with("--"));
        match flag {
            Some(flag) if trimmed.starts_with('-') => blocks.push((flag.to_owned(), String::new())),
            _ => {
                if let Some((_, text)) = blocks.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    let mut args = Vec::new();
    for (flag, text) in blocks.iter().filter(|(f, _)| SOURCE_LIMIT_FLAGS.contains(&f.as_str())) {
        let default = text
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
            .and_then(|d| d.trim().parse::<usize>().ok());
        if matches!(default, Some(d) if d < needed) {
            args.push(flag.clone());
            args.push(needed.to_string());
        }
    }
    args
}

/// Starts `streamer serve` with `setup.streams` fresh channels in a new moto table.
///
/// # Panics
/// Without `AWS_ENDPOINT_URL` (moto), or when the server does not start.
pub fn start_streamer(streamer: &Path, setup: &Setup) -> Running {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: the streamer needs a channels table. Run `make \
             bench-live` (it starts moto), or `scripts/with-moto.sh cargo bench -p streamer \
             --bench live`"
        )
    });
    let table = format!("bench-channels-{}", std::process::id());
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = setup.dir.join("streamer");
    let hls = HlsSettings {
        segment_duration: setup.segment_secs,
        // Largest window (20): a publish of up to 20 segments stays listed whole.
        playlist_window: 20,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let channels = runtime.block_on(async {
        let aws = AwsClients::load(Some(&endpoint)).await;
        let store = Arc::new(DynamoChannelStore::new(aws.dynamodb.clone(), &table));
        store.create_table_if_missing().await.expect("create channels table in moto");
        let mut channels = Vec::with_capacity(setup.streams);
        for i in 0..setup.streams {
            let channel = NewChannel::named(format!("bench-{i}"), hls)
                .into_channel(time::OffsetDateTime::now_utc(), streamstack_core::Playback::Public)
                .expect("valid channel");
            store.create(&channel).await.expect("store channel");
            channels.push(channel);
        }
        channels
    });
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + 3600;
    let streams = channels
        .iter()
        .map(|c| Stream {
            url: streamstack_core::signing::push_url(&addr.to_string(), &c.secret, &c.id, exp),
            playlist: out.join("live").join(&c.id).join("index.m3u8"),
        })
        .collect();
    let notes = streamer_limit_args(streamer, setup.streams + 16);
    let log = setup.dir.join("streamer.log");
    let mut child = Command::new(streamer)
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--output", &format!("dir:{}", out.display())])
        .args(&notes)
        .env("CHANNELS_TABLE", &table)
        // A spool of its own: the default one is locked by any other streamer on the host.
        .env("STREAMER_SPOOL_DIR", setup.dir.join("spool"))
        .env("RUST_LOG", "warn")
        .env_remove("MEDIA_BUCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("streamer log"))
        .spawn()
        .expect("spawn streamer serve");
    let started = Instant::now();
    wait_listening(addr, &mut child, "streamer serve", &log);
    let tree = ProcTree { root: child.id() };
    Running { kind: Kind::Streamer, tree, child, started, streams, notes }
}

/// Checks nginx and its RTMP module are installed.
///
/// # Panics
/// With the install command when either is missing.
pub fn require_nginx() {
    let nginx = Command::new("nginx").arg("-v").output().map(|o| o.status.success());
    if !matches!(nginx, Ok(true)) || !Path::new(NGINX_RTMP_MODULE).exists() {
        panic!(
            "nginx with the RTMP module is needed ({NGINX_RTMP_MODULE}): install Debian's \
             `nginx-light libnginx-mod-rtmp` (`make bench-live` does so when run as root)"
        );
    }
}

/// The nginx-rtmp configuration: one worker (what the module supports without
/// `rtmp_auto_push`), application `live` with HLS of `segment_secs` fragments, a playlist
/// long enough to list the whole publish, and no cleanup (the streamer deletes nothing
/// either).
fn nginx_conf(dir: &Path, hls: &Path, port: u16, setup: &Setup) -> String {
    format!(
        "load_module {NGINX_RTMP_MODULE};\n\
         worker_processes 1;\n\
         error_log {dir}/error.log warn;\n\
         pid {dir}/nginx.pid;\n\
         events {{ worker_connections {conns}; }}\n\
         rtmp {{\n  server {{\n    listen 127.0.0.1:{port};\n\
         \x20   application live {{\n      live on;\n      hls on;\n\
         \x20     hls_path {hls};\n      hls_fragment {seg}s;\n\
         \x20     hls_playlist_length {len}s;\n      hls_cleanup off;\n    }}\n  }}\n}}\n",
        dir = dir.display(),
        hls = hls.display(),
        conns = (setup.streams * 2 + 64).max(1024),
        seg = setup.segment_secs,
        len = setup.publish_secs + 10 * setup.segment_secs,
    )
}

/// Starts nginx-rtmp with the bench's configuration.
///
/// # Panics
/// When nginx is missing or does not start.
pub fn start_nginx(setup: &Setup) -> Running {
    require_nginx();
    let prefix = setup.dir.join("nginx-prefix");
    let hls = setup.dir.join("nginx");
    for d in [&prefix.join("logs"), &hls] {
        std::fs::create_dir_all(d).expect("create nginx dirs");
    }
    // Workers drop to `nobody` when nginx starts as root: let them write the HLS.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hls, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&prefix, &hls, port, setup)).expect("write nginx.conf");
    let log = prefix.join("error.log");
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let started = Instant::now();
    wait_listening(addr, &mut child, "nginx", &log);
    let tree = ProcTree { root: child.id() };
    let streams = (0..setup.streams)
        .map(|i| Stream {
            url: format!("rtmp://{addr}/live/s{i}"),
            playlist: hls.join(format!("s{i}.m3u8")),
        })
        .collect();
    Running { kind: Kind::Nginx, tree, child, started, streams, notes: Vec::new() }
}

impl Running {
    /// Asks the server to stop gracefully (streamer: SIGTERM, which ends open playlists;
    /// nginx: SIGQUIT) and reaps it: whole-run figures from `wait4` (nginx's include the
    /// workers it reaped). Kills it after 60 s.
    pub fn stop(self) -> Usage {
        let signal = match self.kind {
            Kind::Streamer => libc::SIGTERM,
            Kind::Nginx => libc::SIGQUIT,
        };
        let pid = self.child.id();
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let usage = reap(pid, self.started, Some(deadline)).expect("wait4 server");
        usage.unwrap_or_else(|| {
            eprintln!("{} did not stop within 60 s: killed", self.kind.name());
            // SAFETY: as above.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            reap(pid, self.started, None).expect("wait4 server").expect("reaped")
        })
    }
}
