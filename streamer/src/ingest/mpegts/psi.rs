//! Program choice from the PAT and PMTs (ISO/IEC 13818-1 §2.4.4.3, §2.4.4.8), as parsed by
//! `mpeg2ts`: the first program whose PMT lists H.264 (in the order PMTs arrive, which is
//! PAT order for muxers that repeat their tables in order), or the one asked for.

use super::DemuxError;
use mpeg2ts::es::StreamType;
use mpeg2ts::ts::payload::{Pat, Pmt};
use std::collections::HashMap;

/// The elementary streams of the chosen program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Program number.
    pub program: u16,
    /// PID of the H.264 stream.
    pub video: u16,
    /// PID of the ADTS AAC stream, if any.
    pub audio: Option<u16>,
    /// PID carrying the program's PCR, if any.
    pub pcr: Option<u16>,
}

/// What the PAT and PMTs say, and which program is used.
#[derive(Debug)]
pub struct Programs {
    want: Option<u16>,
    /// (program_number, PMT PID) of the PAT, network PID entries left out.
    pat: Vec<(u16, u16)>,
    /// Stream types of each program's PMT seen while choosing.
    seen: HashMap<u16, Vec<u8>>,
    /// The chosen program, its PMT PID and version.
    chosen: Option<(Selection, u16, u8)>,
    warned_audio: bool,
    warned_tables: bool,
}

/// Audio stream types we drop: MPEG-1/2 audio, LATM AAC, AC-3/E-AC-3/DTS/TrueHD, LPCM.
fn other_audio(t: StreamType) -> bool {
    use StreamType::*;
    matches!(
        t,
        Mpeg1Audio
            | Mpeg2HalvedSampleRateAudio
            | Mpeg4LoasMultiFormatFramedAudio
            | PcmAudio
            | DolbyDigitalUpToSixChannelAudio
            | Dts6ChannelAudio
            | DolbyTrueHdLosslessAudio
            | DolbyDigitalPlusUpTo16ChannelAudio
            | Dts8ChannelAudio
            | Dts8ChannelLosslessAudio
            | DolbyDigitalPlusUpTo16ChannelAudioForAtsc
    )
}

impl Programs {
    /// Chooses `want`, or the first program with H.264.
    pub fn new(want: Option<u16>) -> Self {
        Self {
            want,
            pat: Vec::new(),
            seen: HashMap::new(),
            chosen: None,
            warned_audio: false,
            warned_tables: false,
        }
    }

    /// Whether `pid` carries a PMT of the PAT.
    pub fn is_pmt(&self, pid: u16) -> bool {
        self.pat.iter().any(|&(_, p)| p == pid)
    }

    /// A new PAT. Returns `Ok(true)` when the chosen program went away (the caller drops its
    /// streams; the next choice is a discontinuity).
    ///
    /// # Errors
    /// [`DemuxError::ProgramNotFound`] when the program asked for is not listed.
    pub fn pat(&mut self, pat: &Pat) -> Result<bool, DemuxError> {
        let table: Vec<(u16, u16)> = pat
            .table
            .iter()
            .filter(|pa| pa.program_num != 0)
            .map(|pa| (pa.program_num, pa.program_map_pid.as_u16()))
            .collect();
        if table == self.pat {
            return Ok(false);
        }
        tracing::debug!(programs = ?table, "PAT");
        self.pat = table;
        self.seen.retain(|n, _| self.pat.iter().any(|&(p, _)| p == *n));
        if let Some(program) = self.want {
            if !self.pat.iter().any(|&(n, _)| n == program) {
                let available = self.pat.iter().map(|&(n, _)| n).collect();
                return Err(DemuxError::ProgramNotFound { program, available });
            }
        }
        let gone = self
            .chosen
            .is_some_and(|(sel, pmt_pid, _)| !self.pat.contains(&(sel.program, pmt_pid)));
        if gone {
            self.chosen = None;
        }
        Ok(gone)
    }

    /// A PMT on `pid`. Returns the streams to use when they are chosen or changed.
    ///
    /// # Errors
    /// [`DemuxError::H265Refused`] / [`DemuxError::NoH264`] when the program asked for (or the
    /// chosen one, or every program once all PMTs were seen) has no H.264 video.
    pub fn pmt(&mut self, pid: u16, pmt: &Pmt) -> Result<Option<Selection>, DemuxError> {
        let program = pmt.program_num;
        if !self.pat.contains(&(program, pid)) {
            return Ok(None);
        }
        let version = pmt.version_number.as_u8();
        let types: Vec<u8> = pmt.es_info.iter().map(|es| es.stream_type as u8).collect();
        let has = |t: StreamType| pmt.es_info.iter().any(|es| es.stream_type == t);
        let wanted = match (self.chosen, self.want) {
            (Some((sel, _, v)), _) if sel.program == program => {
                if v == version {
                    return Ok(None);
                }
                true
            }
            (Some(_), _) => return Ok(None),
            (None, Some(want)) => want == program,
            (None, None) => has(StreamType::H264),
        };
        if !wanted {
            self.seen.insert(program, types);
            if self.pat.iter().all(|(n, _)| self.seen.contains_key(n)) {
                // Every program seen, none with H.264.
                let refused = self.seen.iter().find(|(_, t)| t.contains(&(StreamType::H265 as u8)));
                if let Some((&program, _)) = refused {
                    return Err(DemuxError::H265Refused { program });
                }
                return Err(DemuxError::NoH264 {
                    program,
                    stream_types: self.seen[&program].clone(),
                });
            }
            return Ok(None);
        }
        let Some(video) = pmt.es_info.iter().find(|es| es.stream_type == StreamType::H264) else {
            if has(StreamType::H265) {
                return Err(DemuxError::H265Refused { program });
            }
            return Err(DemuxError::NoH264 { program, stream_types: types });
        };
        let audio = pmt.es_info.iter().find(|es| es.stream_type == StreamType::AdtsAac);
        if let Some(other) = pmt.es_info.iter().find(|es| other_audio(es.stream_type)) {
            if audio.is_none() && !std::mem::replace(&mut self.warned_audio, true) {
                tracing::warn!(
                    program,
                    stream_type = other.stream_type as u8,
                    "dropping audio that is not AAC in ADTS (stream type 0x0F): video goes on without it"
                );
            }
        }
        let selection = Selection {
            program,
            video: video.elementary_pid.as_u16(),
            audio: audio.map(|es| es.elementary_pid.as_u16()),
            pcr: pmt.pcr_pid.map(|p| p.as_u16()),
        };
        tracing::info!(program, video = selection.video, audio = ?selection.audio, stream_types = ?types, "MPEG-TS program chosen");
        let changed = self.chosen.map(|(sel, _, _)| sel) != Some(selection);
        self.chosen = Some((selection, pid, version));
        self.seen.clear();
        Ok(changed.then_some(selection))
    }

    /// A PAT or PMT packet `mpeg2ts` refused (a section spanning packets, a non-zero pointer
    /// field, a stream type it does not know, a CRC error): one warning.
    pub fn table_error(&mut self, pid: u16, error: &mpeg2ts::Error) {
        if !std::mem::replace(&mut self.warned_tables, true) {
            tracing::warn!(pid, error = %error.reason, "ignoring a PAT/PMT that cannot be parsed");
        }
    }
}
