//! streamstack's streamer: real-time ingest into HLS.
//!
//! ```text
//! RTMP publisher ──► rtmp::Server ──► flv::FlvDemuxer ──► media::MediaEvent (Tracks, Frame)
//!                                                            │
//!              hls::Segmenter (cut on IDR at target duration, ts::TsMuxer)
//!                                                            │
//!              hls::Uploader (segment first, then playlist) ──► sink::ObjectSink (S3 | dir)
//! ```
//!
//! Protocol modules produce [`media::Frame`]s; everything after that is shared.

#![warn(missing_docs)]

pub mod cli;
pub mod egress;
pub mod flv;
pub mod health;
pub mod hls;
pub mod ingest;
pub mod media;
pub mod publish;
pub mod pull;
pub mod relay;
pub mod remux;
pub mod sink;
pub mod ts;
