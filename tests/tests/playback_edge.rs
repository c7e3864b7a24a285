//! Playback authorization at the local edge (issue 14): `edge-local` as a process on moto's
//! S3, trusting a fresh 2048-bit RSA public key, serving a real 8 s HLS clip stored under
//! `signed/live/<A>/`, `signed/live/<B>/` and `live/<C>/`, with credentials made by
//! `streamstack_core::cloudfront::Signer` for `http://127.0.0.1:<port>/signed/live/<A>/*`.
//!
//! - hls.js in headless Chromium plays A to the end with the signed cookies, and with the
//!   signed playlist URL alone (the edge turns its query into cookies for the segments);
//!   without cookies, with expired ones and with A's cookies on B it fails at the playlist
//!   (403) and never gets a segment.
//! - Plain HTTP: tampered signature, unknown key pair id, expired, other prefix, a Host
//!   header moving the policy's prefix, keys outside the media prefixes, oversized URL and
//!   Cookie headers are refused; public media needs nothing; CORS only for the allowed
//!   origin; `Set-Cookie` only on a signed-URL answer; an edge without keys refuses every
//!   signed request; the edge's log never holds a policy or signature.
//!
//! Needs the `edge-local` binary (`make test` builds it), ffmpeg, openssl, node + Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use streamstack_core::cloudfront::{SignedPolicy, Signer};
use streamstack_tests::browser::{self, PageResponse, PlayOptions, PlayResult};

/// The CORS origin the edges of these tests allow.
const APP_ORIGIN: &str = "http://app.example:3000";
/// The key pair id of the trusted key.
const KEY_PAIR_ID: &str = "KTESTEDGE1";

/// An 8 s HLS VOD clip (320x240 H.264 + AAC, 2 s segments): its directory, encoded once.
fn clip() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = streamstack_tests::tempdir();
        let status = Command::new("ffmpeg")
            .current_dir(&dir)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=8"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8"])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"])
            .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2"])
            .args(["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"])
            .args(["-hls_segment_filename", "seg_%03d.ts", "index.m3u8"])
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "ffmpeg HLS encode failed");
        dir
    })
}

/// The clip's files: the playlist first, then its segments in order.
fn clip_files() -> Vec<String> {
    let playlist = std::fs::read_to_string(clip().join("index.m3u8")).expect("playlist");
    let segments: Vec<String> =
        playlist.lines().filter(|l| l.ends_with(".ts")).map(str::to_owned).collect();
    assert!(segments.len() >= 4, "an 8 s clip in 2 s segments: {playlist}");
    std::iter::once("index.m3u8".to_owned()).chain(segments).collect()
}

/// A fresh 2048-bit RSA key pair (openssl): the private key PEM and the public key's file.
struct Keys {
    private_pem: String,
    public_file: PathBuf,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = streamstack_tests::tempdir();
        let (private, public) = (dir.join("private.pem"), dir.join("public.pem"));
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (private_s, public_s) = (private.to_str().unwrap(), public.to_str().unwrap());
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private_s,
        ]);
        run(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
        Keys { private_pem: std::fs::read_to_string(&private).unwrap(), public_file: public }
    })
}

fn signer() -> Signer {
    Signer::from_pem(&keys().private_pem, KEY_PAIR_ID).expect("signer")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A bucket holding the clip under `signed/live/<a>/`, `signed/live/<b>/`, `live/<c>/`, and
/// one object outside the media prefixes (`inputs/<a>.m3u8`).
struct Media {
    bucket: String,
    a: String,
    b: String,
    c: String,
}

async fn media() -> Media {
    let aws = streamstack_tests::aws().await;
    let bucket = streamstack_tests::unique("media");
    aws.s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    let (a, b, c) = (
        streamstack_tests::unique("a"),
        streamstack_tests::unique("b"),
        streamstack_tests::unique("c"),
    );
    let prefixes = [format!("signed/live/{a}"), format!("signed/live/{b}"), format!("live/{c}")];
    for prefix in &prefixes {
        for name in clip_files() {
            let (content_type, cache) = if name.ends_with(".m3u8") {
                ("application/vnd.apple.mpegurl", "max-age=1")
            } else {
                ("video/mp2t", "max-age=86400")
            };
            aws.s3
                .put_object()
                .bucket(&bucket)
                .key(format!("{prefix}/{name}"))
                .content_type(content_type)
                .cache_control(cache)
                .body(std::fs::read(clip().join(&name)).expect("read clip file").into())
                .send()
                .await
                .expect("put object");
        }
    }
    let playlist = std::fs::read(clip().join("index.m3u8")).unwrap();
    let put = aws.s3.put_object().bucket(&bucket).key(format!("inputs/{a}.m3u8"));
    put.body(playlist.into()).send().await.expect("put object");
    Media { bucket, a, b, c }
}

/// `edge-local` as a child process (killed when dropped), its log in a file.
struct Edge {
    port: u16,
    log: PathBuf,
    _child: tokio::process::Child,
}

impl Edge {
    /// Starts `edge-local` on a free port for `bucket`, trusting the test key unless
    /// `!trusted`, allowing [`APP_ORIGIN`]; waits until it accepts connections.
    async fn start(bucket: &str, trusted: bool) -> Self {
        let binary = streamstack_tests::process::workspace_binary("edge-local");
        let port = streamstack_tests::process::free_port();
        let log = streamstack_tests::tempdir().join("edge.log");
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--bucket", bucket])
            .args(["--allowed-origin", APP_ORIGIN])
            .env_remove("PLAYBACK_KEY_PAIR_ID")
            .env_remove("PLAYBACK_PUBLIC_KEY_FILE")
            .env_remove("PLAYBACK_ALLOWED_ORIGINS")
            .env("RUST_LOG", "info")
            .env("STREAMSTACK_LOG_JSON", "1")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true);
        if trusted {
            cmd.args(["--key-pair-id", KEY_PAIR_ID, "--public-key-file"]).arg(&keys().public_file);
        }
        let mut child = cmd.spawn().expect("spawn edge-local");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { port, log, _child: child };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "edge-local exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("edge-local did not listen on port {port} within 20 s");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The policy resource of a channel's signed prefix on this edge.
    fn resource(&self, channel: &str) -> String {
        format!("{}/signed/live/{channel}/*", self.base())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The fields of each per-request log line (JSON lines, message `request`).
    fn request_lines(&self) -> Vec<serde_json::Value> {
        let log = self.log();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "request")
            .map(|v| v["fields"].clone())
            .collect()
    }
}

/// A refused request: URL, extra headers, the status and a text its body must hold.
type Refusal<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);

fn cookie_pairs(p: &SignedPolicy) -> Vec<(String, String)> {
    p.cookies().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn cookie_header(p: &SignedPolicy) -> String {
    p.cookies().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

async fn play(url: String, cookies: Vec<(String, String)>) -> PlayResult {
    let options = PlayOptions {
        rate: 2.0,
        timeout: Duration::from_secs(30),
        cookies,
        ..PlayOptions::default()
    };
    tokio::task::spawn_blocking(move || browser::play(&url, &options)).await.expect("play task")
}

/// The page's responses for media (playlists and segments; not e.g. a favicon).
fn media_responses(result: &PlayResult) -> Vec<&PageResponse> {
    result.responses.iter().filter(|r| r.url.contains("/live/")).collect()
}

/// Played to the end, every response a 200, every segment fetched without a query.
fn assert_played(result: &PlayResult, what: &str) {
    let summary = format!("{what}: {result:#?}");
    let responses = media_responses(result);
    assert!(result.fatal_errors.is_empty(), "fatal error: {summary}");
    assert!(result.ended && !result.timed_out, "did not play to the end: {summary}");
    assert!(result.played_seconds >= 7.5, "played {} s: {summary}", result.played_seconds);
    let segments: Vec<_> = responses.iter().filter(|r| r.url.contains(".ts")).collect();
    assert!(segments.len() >= 4, "segments fetched: {summary}");
    assert!(responses.iter().all(|r| r.status == 200), "a response was not 200: {summary}");
    assert!(segments.iter().all(|r| !r.url.contains('?')), "segments carry no query: {summary}");
}

/// A fatal error at the playlist (403) and not one segment answered 200.
fn assert_refused(result: &PlayResult, playlist: &str, what: &str) {
    let summary = format!("{what}: {result:#?}");
    let responses = media_responses(result);
    assert!(!result.ended && !result.timed_out, "no fatal error: {summary}");
    assert!(!result.fatal_errors.is_empty(), "no fatal error: {summary}");
    assert!(
        responses.iter().any(|r| r.url == playlist && r.status == 403),
        "the playlist was not answered 403: {summary}"
    );
    assert!(
        !responses.iter().any(|r| r.url.contains(".ts") && r.status == 200),
        "a segment was served: {summary}"
    );
    assert!(!responses.iter().any(|r| r.status == 200), "something was served: {summary}");
}

#[tokio::test]
async fn hls_js_plays_signed_media_only_with_valid_credentials() {
    let started = std::time::Instant::now();
    let media = media().await;
    let edge = Edge::start(&media.bucket, true).await;
    let signer = signer();
    let valid = signer.sign(&edge.resource(&media.a), unix_now() + 600);
    let expired = signer.sign(&edge.resource(&media.a), unix_now() - 60);
    let playlist = |id: &str| format!("{}/signed/live/{id}/index.m3u8", edge.base());
    let (url_a, url_b) = (playlist(&media.a), playlist(&media.b));

    // The refusals first (each a second or two), then the two full plays.
    let (none, stale, other) = tokio::join!(
        play(url_a.clone(), vec![]),
        play(url_a.clone(), cookie_pairs(&expired)),
        play(url_b.clone(), cookie_pairs(&valid)),
    );
    assert_refused(&none, &url_a, "no cookies");
    assert_refused(&stale, &url_a, "expired cookies");
    assert_refused(&other, &url_b, "A's cookies on B");

    let signed_url = valid.signed_url(&url_a);
    let (with_cookies, by_url) =
        tokio::join!(play(url_a.clone(), cookie_pairs(&valid)), play(signed_url.clone(), vec![]));
    assert_played(&with_cookies, "signed cookies");
    assert_played(&by_url, "signed URL");
    let first = media_responses(&by_url).first().map(|r| r.url.clone());
    assert_eq!(first.as_deref(), Some(signed_url.as_str()), "the signed URL opened playback");

    let log = edge.log();
    for secret in [&valid.signature, &valid.policy, &expired.signature] {
        assert!(!log.contains(secret.as_str()), "the edge logged a credential:\n{log}");
    }
    assert!(log.contains("credentials expired") && log.contains("resource not allowed"), "{log}");
    eprintln!("playback_edge browser test: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn the_edge_enforces_the_distribution_rules_over_plain_http() {
    let media = media().await;
    let edge = Edge::start(&media.bucket, true).await;
    let http = reqwest::Client::new();
    let signer = signer();
    let valid = signer.sign(&edge.resource(&media.a), unix_now() + 600);
    let seg = format!("{}/signed/live/{}/seg_001.ts", edge.base(), media.a);
    let seg_bytes = std::fs::read(clip().join("seg_001.ts")).unwrap();
    let requests = std::cell::Cell::new(0usize);
    let count = |n: usize| requests.set(requests.get() + n);
    let get = |url: &str, headers: &[(&str, &str)]| {
        count(1);
        let mut req = http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let set_cookies = |r: &reqwest::Response| -> Vec<String> {
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    };

    // A valid signed URL: 200, the object as S3 has it, and the three path-scoped cookies.
    let r = get(&valid.signed_url(&seg), &[]).await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "video/mp2t");
    assert_eq!(h["cache-control"], "max-age=86400");
    assert_eq!(h["content-length"], seg_bytes.len().to_string().as_str());
    assert!(h.contains_key("etag") && h.contains_key("last-modified"), "{h:?}");
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let dir = format!("Path=/signed/live/{}/; HttpOnly; SameSite=Lax", media.a);
    for (name, value) in valid.cookies() {
        let want = format!("{name}={value}; {dir}");
        assert!(cookies.contains(&want), "no {want} in {cookies:?}");
    }
    assert_eq!(r.bytes().await.unwrap().as_ref(), seg_bytes.as_slice(), "the object's bytes");

    // Valid cookies: 200 without Set-Cookie; HEAD too.
    let jar = cookie_header(&valid);
    let r = get(&seg, &[("cookie", &jar)]).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookies(&r).is_empty(), "Set-Cookie for a cookie request");
    count(1);
    let r = http.head(&seg).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], seg_bytes.len().to_string().as_str());
    // A missing object under the prefix: S3's 404.
    let missing = format!("{}/signed/live/{}/nope.ts", edge.base(), media.a);
    let r = get(&missing, &[("cookie", &jar)]).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("<Code>NoSuchKey</Code>"));

    // Refusals: 403 with CloudFront's XML, the reason, no credential echoed, no Set-Cookie.
    let mut tampered = valid.clone();
    let flip = if tampered.signature.starts_with('A') { "B" } else { "A" };
    tampered.signature.replace_range(..1, flip);
    let other_key = valid.query().replace(KEY_PAIR_ID, "KOTHER");
    let expired = signer.sign(&edge.resource(&media.a), unix_now() - 1);
    let seg_b = format!("{}/signed/live/{}/seg_001.ts", edge.base(), media.b);
    let host_trick = format!("127.0.0.1:{}/signed/live/{}", edge.port, media.a);
    let huge_cookie = format!("{jar}; pad={}", "x".repeat(9000));
    let refusals: Vec<Refusal> = vec![
        (tampered.signed_url(&seg), vec![], 403, "signature does not match"),
        (format!("{seg}?{other_key}"), vec![], 403, "unknown key pair id"),
        (expired.signed_url(&seg), vec![], 403, "credentials expired"),
        (seg.clone(), vec![], 403, "missing signed URL parameters or signed cookies"),
        (seg_b.clone(), vec![("cookie", &jar)], 403, "resource not allowed"),
        (valid.signed_url(&seg_b), vec![], 403, "resource not allowed"),
        // Valid cookies, but an incomplete signed URL: judged by the URL alone.
        (format!("{seg}?Policy={}", valid.policy), vec![("cookie", &jar)], 403, "missing"),
        (seg_b.clone(), vec![("cookie", &jar), ("host", &host_trick)], 403, "Host header"),
        (format!("{}/inputs/{}.m3u8", edge.base(), media.a), vec![], 403, "not a media path"),
        (format!("{}/signed/inputs/x", edge.base()), vec![("cookie", &jar)], 403, "not a media"),
        (format!("{}/", edge.base()), vec![], 403, "not a media path"),
        (format!("{}/live/{}//seg_001.ts", edge.base(), media.c), vec![], 403, "malformed path"),
        (format!("{seg}?x={}", "y".repeat(9000)), vec![("cookie", &jar)], 414, "8 KiB"),
        (seg.clone(), vec![("cookie", &huge_cookie)], 431, "8 KiB"),
    ];
    for (url, headers, status, reason) in &refusals {
        let r = get(url, headers).await.unwrap();
        let what = format!("{} {headers:?}", &url[..url.len().min(200)]);
        assert_eq!(r.status().as_u16(), *status, "{what}");
        assert!(set_cookies(&r).is_empty(), "Set-Cookie on a refusal: {what}");
        let body = r.text().await.unwrap();
        if *status == 403 {
            assert!(
                body.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>"#),
                "{what}: {body}"
            );
        }
        assert!(body.contains(reason), "{what}: want {reason:?} in {body}");
        assert!(!body.contains(&valid.signature) && !body.contains(&tampered.signature), "{body}");
    }

    // Public media needs nothing, and gets no cookies.
    let public = format!("{}/live/{}/index.m3u8", edge.base(), media.c);
    let r = get(&public, &[]).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert!(set_cookies(&r).is_empty());
    assert!(r.text().await.unwrap().starts_with("#EXTM3U"));

    // CORS: only the allowed origin, also on refusals; the preflight.
    let r = get(&public, &[("origin", APP_ORIGIN)]).await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["vary"], "Origin");
    let r = get(&seg, &[("origin", APP_ORIGIN)]).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["access-control-allow-origin"], APP_ORIGIN);
    for origin in ["http://evil.example", "http://app.example:3001", "null"] {
        let r = get(&public, &[("origin", origin)]).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("access-control-allow-origin"), "{origin}");
        assert!(!r.headers().contains_key("access-control-allow-credentials"), "{origin}");
    }
    count(2);
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, &seg)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "range")
            .send()
    };
    let r = preflight(APP_ORIGIN).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(r.headers()["access-control-allow-methods"], "GET, HEAD, OPTIONS");
    assert_eq!(r.headers()["access-control-allow-headers"], "Range");
    let r = preflight("http://evil.example").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    // One log line per request, none with a credential.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = edge.log();
    let lines = edge.request_lines();
    assert_eq!(lines.len(), requests.get(), "one line per request:\n{log}");
    for field in ["method", "path", "status", "reason"] {
        assert!(lines.iter().all(|l| !l[field].is_null()), "{field} in every line:\n{log}");
    }
    assert!(lines.iter().all(|l| !l["path"].as_str().unwrap().contains('?')), "{log}");
    for secret in [&valid.signature, &valid.policy, &tampered.signature, &expired.signature] {
        assert!(!log.contains(secret.as_str()), "the edge logged a credential:\n{log}");
    }
    assert!(
        lines.iter().any(|l| l["status"] == 403 && l["reason"] == "credentials expired"),
        "{log}"
    );
    assert!(!log.contains("Policy=") && !log.contains("CloudFront-"), "{log}");

    // An edge trusting no key refuses valid credentials too (fail closed).
    let closed = Edge::start(&media.bucket, false).await;
    let seg_closed = format!("{}/signed/live/{}/seg_001.ts", closed.base(), media.a);
    let valid_closed = signer.sign(&closed.resource(&media.a), unix_now() + 600);
    let r = http.get(valid_closed.signed_url(&seg_closed)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("no trusted signing keys"));
    let r = http.get(&seg_closed).header("cookie", cookie_header(&valid_closed)).send().await;
    assert_eq!(r.unwrap().status(), 403);
    let r = http.get(format!("{}/live/{}/index.m3u8", closed.base(), media.c)).send().await;
    assert_eq!(r.unwrap().status(), 200, "public media still served");
}
