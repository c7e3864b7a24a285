//! nginx with Debian's RTMP module (`nginx-light` + `libnginx-mod-rtmp`) as a real RTMP
//! destination: application `live`, `hls on`, HLS written into a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Where Debian's `libnginx-mod-rtmp` installs the module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A running nginx-rtmp on 127.0.0.1, killed when dropped.
pub struct NginxRtmp {
    /// Its RTMP address.
    pub addr: SocketAddr,
    /// Where it writes HLS: `<stream name>.m3u8` and its fragments.
    pub hls: PathBuf,
    dir: PathBuf,
    _child: Child,
}

impl NginxRtmp {
    /// Starts nginx with `hls_fragment` of `fragment_secs` and waits until it listens.
    ///
    /// # Panics
    /// When nginx or the module is missing (`.ci/run` installs both) or it does not listen
    /// within 10 s.
    pub async fn start(fragment_secs: u32) -> Self {
        assert!(
            std::path::Path::new(RTMP_MODULE).exists(),
            "{RTMP_MODULE} missing: apt-get install nginx-light libnginx-mod-rtmp"
        );
        let dir = crate::tempdir().join("nginx");
        let hls = dir.join("hls");
        std::fs::create_dir_all(dir.join("logs")).expect("nginx dirs");
        std::fs::create_dir_all(&hls).expect("nginx hls dir");
        // Workers drop to `nobody` when nginx starts as root: let them write the HLS.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hls, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let addr: SocketAddr = ([127, 0, 0, 1], crate::process::free_port()).into();
        let conf = format!(
            "load_module {RTMP_MODULE};\nworker_processes 1;\nerror_log {dir}/error.log info;\n\
             pid {dir}/nginx.pid;\nevents {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen {addr}; application live {{ live on; hls on; \
             hls_path {hls}; hls_fragment {fragment_secs}s; hls_playlist_length 600s; \
             hls_cleanup off; }} }} }}\n",
            dir = dir.display(),
            hls = hls.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nginx (apt-get install nginx-light libnginx-mod-rtmp)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Self { addr, hls, dir, _child: child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "nginx did not listen on {addr}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    /// nginx's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}
