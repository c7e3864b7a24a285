//! Tests that need their own network namespace (multicast that must not leave the machine,
//! addresses of their own): the test re-runs itself under `unshare -rn`.

use tokio::process::Command;

/// Inside the test's own network namespace (the environment variable `marker` is set):
/// brings `lo` up with multicast on and a 224.0.0.0/4 route on it, and returns `true` (go
/// on). Outside: runs this test binary's test `name` again under `unshare -rn` with
/// `marker` set, asserts it passed, and returns `false` (the caller returns).
///
/// # Panics
/// When `ip` or `unshare` cannot be run, or the test failed in the namespace.
pub async fn in_netns(name: &str, marker: &str) -> bool {
    if std::env::var_os(marker).is_some() {
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "lo", "multicast", "on"],
            &["route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            let status = std::process::Command::new("ip").args(args).status().expect("run ip");
            assert!(status.success(), "ip {args:?}");
        }
        return true;
    }
    let exe = std::env::current_exe().expect("test executable");
    let status = Command::new("unshare")
        // -r: a user namespace too, so the test also runs without root where unprivileged
        // user namespaces are allowed (as on Debian).
        .args(["-r", "-n", "--"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .status()
        .await
        .expect("run unshare");
    assert!(status.success(), "{name} in a network namespace: {status}");
    false
}
