//! The frames that come out of complete PES packets: one H.264 access unit per video PES,
//! the ADTS frames of an audio PES within [`MAX_AUDIO_PES_TICKS`] and within `max_jump` of
//! the video, audio held until the first video frame of its epoch.

use super::{ticks, Pes, Streams, MAX_HELD};
use crate::ingest::mpegts::es::{adts_frames, VideoAu};
use crate::ingest::mpegts::{signed33, DemuxStats, MAX_AUDIO_PES_TICKS};
use crate::media::{Frame, MediaEvent, Track, VideoConfig, CLOCK_HZ};
use bytes::Bytes;

impl Streams {
    /// `raw` (33 bits) unwrapped against the previous timestamp of any track, and kept as
    /// the reference for the next one.
    fn unwrap(&mut self, raw: u64) -> i64 {
        let unwrapped = self.unwrapped(raw);
        self.clock = Some((raw, unwrapped));
        unwrapped
    }

    /// `raw` (33 bits) unwrapped against the previous timestamp of any track, without
    /// making it the reference (for audio that may be dropped).
    fn unwrapped(&self, raw: u64) -> i64 {
        match self.clock {
            None => raw as i64,
            Some((last_raw, last)) => last + signed33(raw, last_raw),
        }
    }

    fn announce(&mut self, out: &mut Vec<MediaEvent>) {
        if self.announced.as_ref() != Some(&self.tracks) {
            self.announced = Some(self.tracks.clone());
            out.push(MediaEvent::Tracks(self.tracks.clone()));
        }
    }

    pub(super) fn video_frame(
        &mut self,
        pes: Pes,
        out: &mut Vec<MediaEvent>,
        stats: &mut DemuxStats,
    ) {
        let Some(pts_raw) = pes.pts else {
            stats.dropped_pes += 1;
            if !std::mem::replace(&mut self.warned.no_pts, true) {
                tracing::warn!("dropping H.264 PES packets without PTS");
            }
            return;
        };
        if !self.admit(pes.epoch, stats) {
            return;
        }
        let dts_raw = pes.dts.unwrap_or(pts_raw);
        let dts = self.unwrap(dts_raw);
        let pts = dts + signed33(pts_raw, dts_raw).max(0);
        let au = VideoAu::parse(&pes.data);
        let limit = self.limits.max_parameter_set_bytes;
        match au.parameter_sets(limit) {
            Some(Ok(sets))
                if self.tracks.video.as_ref().map(|v| &v.parameter_sets) != Some(&sets) =>
            {
                self.tracks.video = Some(VideoConfig { parameter_sets: sets });
            }
            Some(Err(bytes)) if !std::mem::replace(&mut self.warned.big_sets, true) => {
                tracing::warn!(bytes, limit, "ignoring in-band SPS/PPS over the limit");
            }
            _ => {}
        }
        let Some(video) = self.tracks.video.as_ref() else {
            if !std::mem::replace(&mut self.warned.before_idr, true) {
                tracing::info!("dropping H.264 frames until an IDR with SPS and PPS");
            }
            return;
        };
        let Some(data) = au.annex_b(&video.parameter_sets) else {
            return;
        };
        let discontinuity = pes.epoch > self.emitted_epoch();
        self.video_at = Some((pes.epoch, dts));
        self.announce(out);
        stats.frames += 1;
        out.push(MediaEvent::Frame(Frame {
            track: Track::Video,
            dts: ticks(dts),
            pts: ticks(pts),
            idr: au.idr,
            discontinuity,
            data,
        }));
        self.release_held(out, stats);
    }

    /// After a video frame: emits the held audio of its epoch from its DTS on (up to
    /// `max_jump` ahead), drops that of older epochs, keeps that of later ones.
    fn release_held(&mut self, out: &mut Vec<MediaEvent>, stats: &mut DemuxStats) {
        let Some((epoch, dts)) = self.video_at else {
            return;
        };
        let (from, to) = (ticks(dts), ticks(dts.saturating_add(self.max_jump)));
        for (frame_epoch, frame) in std::mem::take(&mut self.held) {
            if frame_epoch > epoch {
                self.held.push_back((frame_epoch, frame));
            } else if frame_epoch < epoch || frame.dts < from {
                stats.early_audio_frames += 1;
            } else if frame.dts > to {
                stats.distant_audio_frames += 1;
            } else {
                stats.frames += 1;
                out.push(MediaEvent::Frame(frame));
            }
        }
    }

    /// The ADTS frames of an audio PES: the first [`MAX_AUDIO_PES_TICKS`] of them (the rest
    /// counted in [`DemuxStats::excess_audio_frames`]), each emitted if the video of its
    /// epoch went out and it lies within `max_jump` of that video frame's DTS (else counted
    /// in [`DemuxStats::distant_audio_frames`]), held if that video has not gone out yet.
    pub(super) fn audio_frames(
        &mut self,
        pes: Pes,
        out: &mut Vec<MediaEvent>,
        stats: &mut DemuxStats,
    ) {
        if !self.admit(pes.epoch, stats) {
            return;
        }
        let base = match pes.pts {
            Some(raw) => self.unwrapped(raw),
            None => match self.next_audio {
                Some(next) => next,
                None => return,
            },
        };
        let data = Bytes::from(pes.data);
        let mut frames = adts_frames(&data);
        let mut samples = 0;
        let mut placed = false;
        for frame in frames.by_ref() {
            let offset = (samples * CLOCK_HZ / frame.sample_rate) as i64;
            samples += frame.samples;
            self.next_audio =
                Some(base.saturating_add((samples * CLOCK_HZ / frame.sample_rate) as i64));
            if offset >= MAX_AUDIO_PES_TICKS {
                stats.excess_audio_frames += 1;
                continue;
            }
            let at = base.saturating_add(offset);
            let video = self.video_at.filter(|&(epoch, _)| epoch == pes.epoch);
            if video.is_some_and(|(_, dts)| at.abs_diff(dts) > self.max_jump.unsigned_abs()) {
                stats.distant_audio_frames += 1;
                continue;
            }
            placed = true;
            self.tracks.audio = Some(frame.config);
            let frame = Frame {
                track: Track::Audio,
                dts: ticks(at),
                pts: ticks(at),
                idr: false,
                discontinuity: false,
                data: data.slice(frame.range),
            };
            if video.is_none() {
                // Before the first video frame of its epoch: held, as that frame's PES ends
                // later. A copy, so a held frame does not keep its whole PES alive.
                if self.held.len() == MAX_HELD {
                    self.held.pop_front();
                    stats.early_audio_frames += 1;
                }
                let frame = Frame { data: Bytes::copy_from_slice(&frame.data), ..frame };
                self.held.push_back((pes.epoch, frame));
                continue;
            }
            self.announce(out);
            stats.frames += 1;
            out.push(MediaEvent::Frame(frame));
        }
        if frames.rest() > 0 && !std::mem::replace(&mut self.warned.adts, true) {
            tracing::warn!(
                bytes = frames.rest(),
                "dropping audio PES bytes that are not whole ADTS frames"
            );
        }
        if let (Some(raw), true) = (pes.pts, placed) {
            self.clock = Some((raw, base));
        }
    }
}
