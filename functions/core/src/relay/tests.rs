use super::*;

const YOUTUBE: &str = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop";

fn relay(id: &str, url: &str) -> Relay {
    Relay {
        id: id.to_owned(),
        url: RelayUrl::parse(url).unwrap(),
        enabled: true,
        status: RelayStatus { state: RelayState::Live, bytes_sent: 7, ..Default::default() },
    }
}

fn request(id: Option<&str>, url: Option<&str>, enabled: Option<bool>) -> RelayRequest {
    RelayRequest { id: id.map(str::to_owned), url: url.map(str::to_owned), enabled }
}

#[test]
fn masks_every_secret_part() {
    assert_eq!(mask_url(YOUTUBE), "rtmp://a.rtmp.youtube.com/live2/****");
    assert_eq!(mask_url("rtmps://h:443/app/inst/key?x=1"), "rtmps://h:443/app/inst/****?x=****");
    assert_eq!(mask_url("rtmp://user:pw@h/app/key"), "rtmp://user:****@h/app/****");
    assert_eq!(
        mask_url("srt://10.0.0.1:9000?streamid=%23!::r=live/key&passphrase=secretsecret"),
        "srt://10.0.0.1:9000?streamid=****&passphrase=****"
    );
    // An unencoded `#` starts a fragment: dropped whole.
    assert_eq!(mask_url("srt://h:9000?streamid=#!::r=key"), "srt://h:9000?streamid=****");
    assert_eq!(mask_url("not a url with key"), MASK);
    // An unencoded `/` in a password does not end the userinfo.
    assert_eq!(mask_url("rtmp://u:pa/ss@h/app/k"), "rtmp://u:****@h/app/****");
    let url = RelayUrl::parse(YOUTUBE).unwrap();
    assert!(!format!("{url:?} {url}").contains("abcd"));
    let asked = request(None, Some(YOUTUBE), None);
    assert!(!format!("{asked:?}").contains("abcd"));
    let json = serde_json::to_string(&relay("0123456789ab", YOUTUBE)).unwrap();
    assert!(!json.contains("abcd"), "{json}");
    assert!(json.contains(r#""url":"rtmp://a.rtmp.youtube.com/live2/****""#), "{json}");
    assert!(json.contains(r#""state":"live""#), "{json}");
}

#[test]
fn refuses_bad_urls_without_repeating_them() {
    for bad in [
        "http://h/app/key",
        "rtmp://h/onlyapp",
        "rtmp:///app/key",
        "srt://h?streamid=secretkey",
        "rtmp://h/app/key secretkey",
        "rtmp://h/app/\u{7}key",
        "rtmp://u:pa/secretkey@h/app/k",
        "rtmp://u:secretkey@h/app/k",
        "srt://h:9000?passphrase=short",
        "srt://h:9000?latency=70000",
        "rtmp://h/app/****",
    ] {
        let message = RelayUrl::parse(bad).unwrap_err();
        assert!(!message.contains("secretkey") && !message.contains(bad), "{bad}: {message}");
    }
    let long = format!("rtmp://h/app/{}", "k".repeat(MAX_RELAY_URL_BYTES));
    assert!(RelayUrl::parse(&long).is_err());
    for good in [YOUTUBE, "rtmps://live.example:443/app/key", "srt://127.0.0.1:9000"] {
        RelayUrl::parse(good).unwrap();
    }
}

#[test]
fn resolve_keeps_ids_urls_and_statuses() {
    let current = vec![relay("aaaaaaaaaaaa", YOUTUBE), relay("bbbbbbbbbbbb", "rtmp://h/app/k2")];
    // Toggle by id without the key; add one; an existing URL keeps its id and status.
    let next = resolve_relays(
        &[
            request(Some("aaaaaaaaaaaa"), None, Some(false)),
            request(None, Some("rtmp://h/app/k2"), None),
            request(None, Some("srt://h:9000?streamid=x"), None),
        ],
        &current,
    )
    .unwrap();
    assert_eq!(next[0].id, "aaaaaaaaaaaa");
    assert_eq!(next[0].url.expose(), YOUTUBE);
    assert!(!next[0].enabled);
    // An entry with only an id keeps the destination's `enabled`.
    let kept = resolve_relays(&[request(Some("aaaaaaaaaaaa"), None, None)], &next).unwrap();
    assert!(!kept[0].enabled);
    assert_eq!((next[1].id.as_str(), next[1].status.bytes_sent), ("bbbbbbbbbbbb", 7));
    assert!(next[2].enabled && next[2].id.len() == 12 && next[2].status == RelayStatus::default());
    // A new URL under an id resets its status.
    let next =
        resolve_relays(&[request(Some("aaaaaaaaaaaa"), Some("rtmp://x/a/b"), None)], &current)
            .unwrap();
    assert_eq!((next[0].id.as_str(), next[0].status.bytes_sent), ("aaaaaaaaaaaa", 0));
}

#[test]
fn resolve_refuses_with_the_field_named() {
    let current = vec![relay("aaaaaaaaaaaa", YOUTUBE)];
    let field = |requests: &[RelayRequest]| resolve_relays(requests, &current).unwrap_err().field;
    assert_eq!(field(&[request(Some("ffffffffffff"), None, None)]), "relays[0].id");
    assert_eq!(field(&[request(None, None, Some(true))]), "relays[0].url");
    assert_eq!(field(&[request(None, Some("ftp://h/a/b"), None)]), "relays[0].url");
    assert_eq!(
        field(&[request(None, Some(YOUTUBE), None), request(Some("aaaaaaaaaaaa"), None, None)]),
        "relays[1].url"
    );
    let many = vec![request(None, Some(YOUTUBE), None); MAX_RELAYS + 1];
    assert_eq!(field(&many), "relays");
}
