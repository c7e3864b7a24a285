//! HLS output (RFC 8216): [`Segmenter`] cuts frames into MPEG-TS segments on IDR frames,
//! [`LivePlaylist`] renders media playlists, and [`Uploader`] writes each segment before the
//! playlist that names it.

mod playlist;
mod segmenter;
mod uploader;

pub use playlist::LivePlaylist;
pub use segmenter::{Segment, Segmenter};
pub use uploader::{RetryPolicy, SubmitError, UploadReport, Uploader, UploaderConfig};
