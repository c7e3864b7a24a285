//! Tests of the spool: budget, lock, crash leftovers, record formats.

use super::*;

pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spool-test-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn manifest() -> SessionManifest {
    SessionManifest {
        prefix: "live/ch1".into(),
        session: "1700000000000-0badcafe".into(),
        target_secs: 4,
        window: 5,
        recording: true,
        sink: "s3://media".into(),
    }
}

#[test]
fn budget_refuses_what_does_not_fit_and_frees_on_commit() {
    let dir = temp_dir("budget");
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 250 }).unwrap();
    let session = spool.session(manifest());
    let e = |sequence| SegmentEntry { sequence, duration: 4.0, discontinuity: false };
    let first = session.write_segment(e(0), &[1; 100]).unwrap();
    session.write_segment(e(1), &[2; 100]).unwrap();
    assert!(matches!(
        session.write_segment(e(2), &[3; 100]),
        Err(SpoolError::Full { budget: 250, used: 200, needed: 100 })
    ));
    assert_eq!(spool.used_bytes(), 200);
    session.commit(e(0), Some(&first)).unwrap();
    assert_eq!(spool.used_bytes(), 100);
    session.write_segment(e(2), &[3; 100]).unwrap();
    session.remove().unwrap();
    assert_eq!(spool.used_bytes(), 0);
    assert!(!session.dir().exists());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_process_is_locked_out_and_a_restart_finds_the_session() {
    let dir = temp_dir("reopen");
    let config = SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 };
    let spool = Spool::open(&config).unwrap();
    assert!(matches!(Spool::open(&config), Err(SpoolError::Locked(_))));
    let session = spool.session(manifest());
    assert!(!session.dir().exists(), "nothing written before the first segment");
    let e0 = SegmentEntry { sequence: 0, duration: 4.004, discontinuity: false };
    let e1 = SegmentEntry { sequence: 1, duration: 3.5, discontinuity: true };
    let s0 = session.write_segment(e0, b"zero").unwrap();
    session.write_segment(e1, b"one").unwrap();
    session.commit(e0, Some(&s0)).unwrap();
    // A torn log line and a half-written segment, as a crash would leave them.
    let mut log = OpenOptions::new().append(true).open(session.dir().join(LOG)).unwrap();
    log.write_all(b"0000000002 40").unwrap();
    fs::write(session.dir().join("0000000002_4000000_0.ts.part"), b"tor").unwrap();
    drop((session, spool));

    let spool = Spool::open(&config).unwrap();
    assert_eq!(spool.used_bytes(), 3);
    let dirs = spool.take_leftovers();
    assert_eq!(dirs.len(), 1);
    assert!(spool.take_leftovers().is_empty());
    let left = SessionSpool::reopen(&spool, &dirs[0]).unwrap();
    assert_eq!(left.session.manifest(), &manifest());
    assert_eq!(left.logged, vec![e0]);
    assert_eq!(left.spooled.iter().map(|s| s.entry).collect::<Vec<_>>(), vec![e1]);
    assert_eq!(&left.session.read_segment(&left.spooled[0]).unwrap()[..], b"one");
    assert!(!dirs[0].join("0000000002_4000000_0.ts.part").exists());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn entries_round_trip_through_names_and_log_lines() {
    let e = SegmentEntry { sequence: 42, duration: 1.999_999, discontinuity: true };
    assert_eq!(SegmentEntry::parse(&e.fields('_'), '_'), Some(e));
    assert_eq!(SegmentEntry::parse(&e.fields(' '), ' '), Some(e));
    for bad in ["", "1 2", "1 2 3", "x 1 0", "1 2 0 4"] {
        assert_eq!(SegmentEntry::parse(bad, ' '), None, "{bad}");
    }
    assert_eq!(SessionManifest::parse(&manifest().render()), Ok(manifest()));
    assert!(SessionManifest::parse("prefix=x").is_err());
}
