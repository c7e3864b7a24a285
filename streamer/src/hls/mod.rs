//! HLS output (RFC 8216): [`Segmenter`] cuts frames into MPEG-TS segments on IDR frames,
//! [`LivePlaylist`] renders media playlists, [`Uploader`] writes each segment before the
//! playlist that names it, holding segments in a local [`Spool`] until they are stored, and
//! [`recover`] finishes what a crashed run left in the spool. A session's live playlist
//! continues the one an earlier session (a killed process) left at the same key, its media
//! sequence never going back (RFC 8216 §6.2.1; [`LivePlaylist::continue_from`]).

mod continuity;
mod fence;
mod playlist;
mod recover;
mod segmenter;
mod spool;
mod uploader;

pub use fence::LiveFence;
pub use playlist::{LivePlaylist, PreviousPlaylistError};
pub use recover::{recover, AlwaysEndLive, LivePlaylistGuard, RecoveryReport};
pub use segmenter::{Segment, SegmentError, Segmenter};
pub use spool::{
    default_dir as default_spool_dir, Leftover, SegmentEntry, SessionManifest, SessionSpool, Spool,
    SpoolConfig, SpoolError, SpooledSegment, DEFAULT_BUDGET_BYTES,
};
pub use uploader::{RetryPolicy, SubmitError, UploadReport, Uploader, UploaderConfig};
