//! A streamer killed with SIGKILL during an S3 outage loses no segment: `streamer serve` runs
//! as a child process with S3 behind a proxy the test switches off (DynamoDB straight to
//! moto); once segments wait in the spool the process is killed, the proxy switched back on,
//! and a new process on the same spool uploads every spooled segment and ends the playlists.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use streamstack_core::{Channel, ChannelStore, DynamoChannelStore, HlsSettings, NewChannel};
use streamstack_tests::process::StreamerProcess;
use streamstack_tests::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to `upstream` that can be switched off: then every open connection is cut
/// and new ones are closed as soon as they are accepted (S3 "down").
struct Proxy {
    addr: SocketAddr,
    on: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (on, state) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = state.clone();
                if !*state.borrow_and_update() {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|on| !on) => {}
                    }
                });
            }
        });
        Self { addr, on }
    }

    fn set(&self, on: bool) {
        self.on.send_replace(on);
    }
}

/// Polls `check` every 200 ms until it returns `Some` (a hang guard of `secs`, not a timing
/// assertion).
async fn wait_for<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Spooled segment files (`<sequence>_<µs>_<0|1>.ts`) under `spool`, as sequence numbers.
fn spooled_sequences(spool: &Path) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for session in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(session.path()).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name.strip_suffix(".ts").and_then(|n| n.split('_').next()) {
                out.extend(seq.parse::<u64>().ok());
            }
        }
    }
    out
}

async fn recording_channel(store: &dyn ChannelStore) -> Channel {
    let hls = HlsSettings { segment_duration: 1, playlist_window: 5 };
    let channel = NewChannel { recording: true, ..NewChannel::named("spool", hls) }
        .into_channel(time::OffsetDateTime::now_utc(), streamstack_core::Playback::Public)
        .expect("valid channel");
    store.create(&channel).await.expect("store channel");
    channel
}

#[tokio::test]
async fn sigkill_during_an_outage_then_restart_uploads_every_spooled_segment() {
    let aws = aws().await;
    let table = unique("channels");
    let store = DynamoChannelStore::new(aws.dynamodb.clone(), table.clone());
    store.create_table_if_missing().await.expect("create table");
    let bucket = bucket(&aws).await;
    let channel = recording_channel(&store).await;
    let moto: SocketAddr = endpoint().trim_start_matches("http://").parse().expect("moto addr");
    let proxy = Proxy::start(moto).await;
    let s3_endpoint = format!("http://{}", proxy.addr);
    let spool = tempdir().join("spool");
    let spool_dir = spool.to_string_lossy().into_owned();
    let output = format!("s3://{bucket}");
    let args = ["--output", output.as_str()];
    let env = [("AWS_ENDPOINT_URL_S3", s3_endpoint.as_str()), ("STREAMER_SPOOL_DIR", &spool_dir)];

    let first = StreamerProcess::start(&table, &args, &env).await;
    let listen = first.addr;
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + 3600;
    let url =
        streamstack_core::signing::push_url(&listen.to_string(), &channel.secret, &channel.id, exp);
    let clip = Clip { seconds: 60, realtime: true, ..Clip::default() };
    let publisher = tokio::spawn(async move { ffmpeg_publish(&url, clip).await });

    // Normal operation first, then S3 goes away while the publish goes on.
    wait_for("two segments live", 30, async || {
        playlist(&aws, &bucket, &channel).await.filter(|p| p.segments.len() >= 2)
    })
    .await;
    proxy.set(false);
    let spooled = wait_for("four segments spooled", 30, async || {
        Some(spooled_sequences(&spool)).filter(|s| s.len() >= 4)
    })
    .await;
    first.kill9().await;
    let spooled = spooled_sequences(&spool).union(&spooled).copied().collect::<BTreeSet<_>>();
    let _ = publisher.await;
    proxy.set(true);

    // A new process on the same spool finishes the killed session.
    let second = StreamerProcess::start(&table, &args, &env).await;
    let prefix = format!("live/{}/", channel.id);
    let (live, recording, recording_key, keys) =
        wait_for("the recovered playlists", 60, async || {
            let live = playlist(&aws, &bucket, &channel).await.filter(|p| p.end_list)?;
            let keys = list_keys(&aws, &bucket, &prefix).await;
            let key = keys.iter().find(|k| k.ends_with("/recording.m3u8"))?.clone();
            let recording =
                m3u8_rs::parse_media_playlist_res(&get_object(&aws, &bucket, &key).await)
                    .expect("recording parses");
            recording.end_list.then_some((live, recording, key, keys))
        })
        .await;
    wait_for("the spool to empty", 30, async || spooled_sequences(&spool).is_empty().then_some(()))
        .await;
    assert!(second.log().contains("spool recovery done"), "{}", second.log());
    second.kill9().await;

    let session = recording_key
        .strip_prefix(&prefix)
        .and_then(|k| k.strip_suffix("/recording.m3u8"))
        .expect("recording in the session folder");
    let stored: BTreeSet<u64> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}{session}/"))?.strip_suffix(".ts"))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(spooled.is_subset(&stored), "spooled {spooled:?}, stored {stored:?}");
    let listed: Vec<u64> = recording
        .segments
        .iter()
        .map(|s| s.uri.trim_end_matches(".ts").parse().expect("numbered segment"))
        .collect();
    assert_eq!(listed, stored.iter().copied().collect::<Vec<_>>(), "recording lists every segment");
    assert_eq!(listed, (0..listed.len() as u64).collect::<Vec<_>>(), "no gap");
    assert!(live.segments.iter().all(|s| stored.contains(
        &s.uri.rsplit('/').next().unwrap().trim_end_matches(".ts").parse::<u64>().unwrap()
    )));
    assert_eq!(live.media_sequence + live.segments.len() as u64, listed.len() as u64);
    let _ = std::fs::remove_dir_all(&spool);
}
