#!/usr/bin/env python3
"""Init time and peak RSS of each Lambda bootstrap, from exec to its first runtime poll.

For each binary: a fake Lambda Runtime API on 127.0.0.1 holds every
`GET /2018-06-01/runtime/invocation/next` open (no invocation ever arrives); the bootstrap is
exec'd with `AWS_LAMBDA_RUNTIME_API` pointing at it and the variables its function needs
(dummy tables, region and credentials, the `AWS_LAMBDA_*` set the runtime reads). Init time =
from the exec to the first `/next` request line read by the fake API (so it includes the
process start, config and SDK client set-up and the runtime's first connect; about 0.1 ms of
it is this script's socket read). Then the child is killed and reaped with `wait4`: peak RSS
is its `ru_maxrss`. The file size is the bootstrap's bytes on disk.

Most of that RSS is the bootstrap's own code pages, mapped in 64 KiB fault-around windows whose
cost depends on how the file sits in the page cache (a freshly linked or copied file measures
up to 1 MiB apart from one read back from disk). So each binary is first dropped from the page
cache (fsync + POSIX_FADV_DONTNEED) and read once sequentially: every binary, every time,
starts from the same state, as after its package is unpacked.

`ru_maxrss` cannot be lower than the peak RSS of the image that exec'd (Linux carries it across
`execve`), and a child forked from Python would start at Python's ~10 MiB. So the bootstrap is
exec'd from a forked `sh` subshell (this process is the child subreaper and adopts it) that
waits for a go byte on a pipe: the clock starts at that byte, the floor is a forked `sh`'s
RSS, printed as `floor`, and `VmHWM` of the bootstrap's own image (from /proc at its first
poll) is printed next to `ru_maxrss` as a cross-check.

Usage: scripts/lambda-init-bench.py [--dir target-release/release] [--runs 20] [BIN ...]
(python3 standard library only; Linux). `make bench-lambda` builds the release binaries into
their own target dir and runs it. Not a test: nothing in `make test` runs it.
"""

import argparse
import ctypes
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
NEXT_PATH = b"/2018-06-01/runtime/invocation/next"
MIB = 1024 * 1024

# What each function reads at start-up (dummy values: init makes no AWS call).
COMMON_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIDBENCHBENCHBENCH0",
    "AWS_SECRET_ACCESS_KEY": "bench/bench/bench/bench/bench/bench/bench0",
    "AWS_SESSION_TOKEN": "bench-session-token",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
    "_HANDLER": "bootstrap",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}
FUNCTIONS = {
    "channels-api": {
        "CHANNELS_TABLE": "bench-channels",
        "ASSETS_TABLE": "bench-assets",
        "DEVICES_TABLE": "bench-devices",
        "MEDIA_URL_KEY": "00" * 32,
        "INGEST_HOST": "ingest.example.com:1935",
        "PLAYBACK_BASE_URL": "https://d111111abcdef8.cloudfront.net",
        "MEDIA_BUCKET": "bench-media",
    },
    "vod-trigger": {
        "ASSETS_TABLE": "bench-assets",
        "STACK_NAME": "bench",
        "MEDIACONVERT_ROLE_ARN": "arn:aws:iam::123456789012:role/bench-mediaconvert",
        "ASSETS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-assets",
        "MEDIA_BUCKET": "bench-media",
    },
    "vod-job-state": {
        "ASSETS_TABLE": "bench-assets",
        "STACK_NAME": "bench",
        "ASSETS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-assets",
        "MEDIA_BUCKET": "bench-media",
    },
    "reconciler": {
        "DEVICES_TABLE": "bench-devices",
        "SLOTS_TABLE": "bench-slots",
        "ECS_CLUSTER": "bench-cluster",
        "STREAMER_TASK_DEFINITION": "bench-streamer-pull",
        "TASK_SUBNETS": "subnet-0123456789abcdef0",
        "TASK_SECURITY_GROUPS": "sg-0123456789abcdef0",
    },
    "task-health": {
        "DEVICES_TABLE": "bench-devices",
        "SLOTS_TABLE": "bench-slots",
        "CHANNELS_TABLE": "bench-channels",
        "MEDIA_BUCKET": "bench-media",
        "ALARM_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-alarms",
    },
    "gateway-health": {
        "GATEWAYS_TABLE": "bench-gateways",
        "ALARM_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-alarms",
    },
}

# The go pipe arrives as stdin and moves to fd 3; a forked subshell waits for the go byte on
# it, then execs the bootstrap ($2...) with its output in $1; the outer shell prints the
# subshell's pid and exits.
TRAMPOLINE = (
    'exec 3<&0 </dev/null; '
    '{ read _ <&3; L="$1"; shift; exec "$@" 3<&- >"$L" 2>&1; } >/dev/null 2>&1 & echo $!'
)


class FakeRuntimeApi:
    """Runtime API stand-in: `/next` requests are timestamped and held open."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.events = queue.Queue()
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            data += chunk
        now = time.monotonic_ns()
        line = data.split(b"\r\n", 1)[0]
        if line.startswith(b"GET ") and NEXT_PATH in line:
            self.events.put(("next", now, b""))
            self.held.append(conn)  # never answered: the runtime waits, as for an idle function
            return
        # /init/error (or anything else): read the body, answer 202, report it.
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for h in head.split(b"\r\n")[1:]:
            name, _, value = h.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        conn.sendall(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
        conn.close()
        self.events.put(("other", now, line + b" " + body[:500]))

    def drop_held(self):
        for conn in self.held:
            conn.close()
        self.held.clear()


def spawn_waiting(argv, env, log_path):
    """Forks a subshell that execs `argv` once a byte arrives; returns (pid, go fd)."""
    read_fd, write_fd = os.pipe()
    # Python pipes are close-on-exec: the bootstrap does not inherit the write end.
    outer = subprocess.Popen(
        ["/bin/sh", "-c", TRAMPOLINE, "sh", log_path, *argv],
        stdin=read_fd,
        stdout=subprocess.PIPE,
        env=env,
        close_fds=True,
    )
    out, _ = outer.communicate()
    os.close(read_fd)
    return int(out.strip()), write_fd


def settle_page_cache(path):
    """Drops `path` from the page cache, then reads it once front to back."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(api, path, env, log_path, timeout):
    """One cold start: (init seconds, ru_maxrss KiB, VmHWM KiB)."""
    pid, go = spawn_waiting([path], env, log_path)
    start = time.monotonic_ns()
    os.write(go, b"\n")
    os.close(go)
    try:
        kind, at, detail = api.events.get(timeout=timeout)
    except queue.Empty:
        kind, at, detail = "timeout", 0, b""
    hwm = vm_hwm_kib(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, _, usage = os.wait4(pid, 0)
    api.drop_held()
    if kind != "next":
        with open(log_path, errors="replace") as f:
            log = f.read()[-2000:]
        sys.exit("%s: no /next poll (%s %r); output:\n%s" % (path, kind, detail, log))
    return (at - start) / 1e9, usage.ru_maxrss, hwm


def floor_kib(env, log_path):
    """`ru_maxrss` of `/bin/true` exec'd the same way: the lowest figure a run can show."""
    pid, go = spawn_waiting(["/bin/true"], env, log_path)
    os.write(go, b"\n")
    os.close(go)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss


def spread(values, fmt):
    return "%s (%s-%s)" % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="target-release/release", help="directory of the binaries")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_LAMBDA_RUNS", 20)))
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for /next")
    parser.add_argument("bins", nargs="*", help="binaries (default: %s)" % " ".join(FUNCTIONS))
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("Linux only (wait4 ru_maxrss, /proc, child subreaper)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER): errno %d" % ctypes.get_errno())

    api = FakeRuntimeApi()
    log_fd, log_path = tempfile.mkstemp(prefix="lambda-init-bench-", suffix=".log")
    os.close(log_fd)
    rows = []
    missing = []
    for name in args.bins or list(FUNCTIONS):
        path = os.path.join(args.dir, name)
        if not os.path.exists(path):
            missing.append(name)
            continue
        env = dict(COMMON_ENV, **FUNCTIONS.get(name, {}))
        env["AWS_LAMBDA_FUNCTION_NAME"] = "bench-" + name
        env["AWS_LAMBDA_RUNTIME_API"] = api.address
        settle_page_cache(path)
        run_once(api, path, env, log_path, args.timeout)  # warm-up, not counted
        samples = [run_once(api, path, env, log_path, args.timeout) for _ in range(args.runs)]
        rows.append((name, os.path.getsize(path), samples))
    floor = floor_kib(dict(COMMON_ENV), log_path)
    os.unlink(log_path)

    print(
        "exec -> first GET /next, %d runs each (median (min-max)); RSS = wait4 ru_maxrss, "
        "floor %.1f MiB" % (args.runs, floor / 1024)
    )
    print("| binary | bootstrap MB | init ms | peak RSS MiB | VmHWM MiB |")
    print("| --- | --- | --- | --- | --- |")
    for name, size, samples in rows:
        init = [s[0] * 1000 for s in samples]
        rss = [s[1] / 1024 for s in samples]
        hwm = [s[2] / 1024 for s in samples]
        print(
            "| %s | %.1f | %s | %s | %.1f |"
            % (name, size / 1e6, spread(init, "%.2f"), spread(rss, "%.1f"), statistics.median(hwm))
        )
    for name in missing:
        print("| %s | not built (%s) | | | |" % (name, os.path.join(args.dir, name)))
    if not rows:
        sys.exit("no binary found under %s" % args.dir)


if __name__ == "__main__":
    main()
