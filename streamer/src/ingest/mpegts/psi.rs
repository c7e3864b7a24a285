//! PAT and PMT (ISO/IEC 13818-1 §2.4.4.3–§2.4.4.4, §2.4.4.8–§2.4.4.9) and the program choice:
//! the first program whose PMT lists H.264 (in the order PMTs arrive, which is PAT order for
//! muxers that repeat their tables in order), or the one asked for.
//!
//! Sections are reassembled by [`super::section`]; their content is read with
//! `mpeg2ts-reader`'s `psi::pat::PatSection` and `psi::pmt::PmtSection`, which take any
//! stream type (a `StreamType(u8)`): a type we do not know is just another stream, never a
//! reason to refuse the PMT. Only the current table is used (`current_next_indicator` 1), and
//! of a PAT split into several sections only section 0 (one holds 253 programs).

use super::section::Assembler;
use super::{DemuxError, DemuxStats, Header, PACKET_SIZE};
use mpeg2ts_reader::psi::pat::{PatSection, ProgramDescriptor};
use mpeg2ts_reader::psi::pmt::PmtSection;
use mpeg2ts_reader::psi::{CurrentNext, SectionCommonHeader, TableSyntaxHeader};
use std::collections::HashMap;

/// `stream_type` of H.264 video (Table 2-34).
pub const H264: u8 = 0x1B;
/// `stream_type` of H.265 video.
pub const H265: u8 = 0x24;
/// `stream_type` of AAC in ADTS.
pub const ADTS_AAC: u8 = 0x0F;
/// `table_id` of a PAT section (Table 2-31).
const PAT_TABLE: u8 = 0x00;
/// `table_id` of a PMT section.
const PMT_TABLE: u8 = 0x02;
/// `PCR_PID` 0x1FFF: no PCR (§2.4.4.9).
const NO_PCR: u16 = 0x1FFF;

/// A PMT section's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmt {
    /// `program_number`.
    pub program: u16,
    /// `version_number` (5 bits).
    pub version: u8,
    /// `PCR_PID`, `None` for 0x1FFF.
    pub pcr: Option<u16>,
    /// (`stream_type`, `elementary_PID`) of each elementary stream, in PMT order.
    pub streams: Vec<(u8, u16)>,
}

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
    /// Section reassembly of the PAT PID and each PMT PID of the PAT.
    sections: HashMap<u16, Assembler>,
    /// Stream types of each program's PMT seen while choosing.
    seen: HashMap<u16, Vec<u8>>,
    /// The chosen program, its PMT PID and version.
    chosen: Option<(Selection, u16, u8)>,
    warned_audio: bool,
    warned_tables: bool,
    warned_pat_sections: bool,
}

/// Audio stream types we drop: MPEG-1/2 audio, LATM AAC, LPCM, AC-3/E-AC-3/DTS/TrueHD.
fn other_audio(t: u8) -> bool {
    matches!(t, 0x03 | 0x04 | 0x11 | 0x80..=0x87)
}

/// The programs of a PAT section's `body` (between `last_section_number` and CRC_32):
/// (program_number, PMT PID), network PID entries left out.
fn pat_programs(body: &[u8]) -> Vec<(u16, u16)> {
    PatSection::new(body)
        .programs()
        .filter_map(|p| match p {
            ProgramDescriptor::Program { program_number, pid } => {
                Some((program_number, u16::from(pid)))
            }
            ProgramDescriptor::Network { .. } => None,
        })
        .collect()
}

/// The PMT in `body` (the section between `last_section_number` and CRC_32); `None` if its
/// `program_info_length` runs past it.
fn pmt(program: u16, version: u8, body: &[u8]) -> Option<Pmt> {
    let section = PmtSection::from_bytes(body).ok()?;
    let pcr = u16::from(section.pcr_pid());
    Some(Pmt {
        program,
        version,
        pcr: (pcr != NO_PCR).then_some(pcr),
        streams: section
            .streams()
            .map(|es| (es.stream_type().into(), u16::from(es.elementary_pid())))
            .collect(),
    })
}

impl Programs {
    /// Chooses `want`, or the first program with H.264.
    pub fn new(want: Option<u16>) -> Self {
        Self {
            want,
            pat: Vec::new(),
            sections: HashMap::new(),
            seen: HashMap::new(),
            chosen: None,
            warned_audio: false,
            warned_tables: false,
            warned_pat_sections: false,
        }
    }

    /// Whether `pid` carries the PAT (PID 0) or a PMT of the PAT.
    pub fn is_psi(&self, pid: u16) -> bool {
        pid == 0 || self.pat.iter().any(|&(_, p)| p == pid)
    }

    /// One packet of a PID [`Self::is_psi`]. Pushes to `changes` the streams to use from now
    /// on, each time they change (`None`: the chosen program went away; the caller drops its
    /// streams and the next choice is a discontinuity). A section dropped (CRC_32, cut off,
    /// malformed) counts in `stats.invalid_packets`, with one warning.
    ///
    /// # Errors
    /// As [`Self::pat`] and [`Self::pmt`].
    pub fn packet(
        &mut self,
        header: &Header,
        p: &[u8; PACKET_SIZE],
        stats: &mut DemuxStats,
        changes: &mut Vec<Option<Selection>>,
    ) -> Result<(), DemuxError> {
        let pid = header.pid;
        let mut assembler = self.sections.remove(&pid).unwrap_or_default();
        let result = assembler.packet(header, p, |section| match section {
            Ok(section) => self.section(pid, section, stats, changes),
            Err(error) => {
                stats.invalid_packets += 1;
                self.table_error(pid, &error);
                Ok(())
            }
        });
        if self.is_psi(pid) {
            self.sections.insert(pid, assembler);
        }
        result
    }

    /// A whole section on `pid` whose CRC_32 is right.
    fn section(
        &mut self,
        pid: u16,
        section: &[u8],
        stats: &mut DemuxStats,
        changes: &mut Vec<Option<Selection>>,
    ) -> Result<(), DemuxError> {
        let common = SectionCommonHeader::new(&section[..SectionCommonHeader::SIZE]);
        let syntax = TableSyntaxHeader::new(&section[SectionCommonHeader::SIZE..]);
        if syntax.current_next_indicator() == CurrentNext::Next {
            return Ok(()); // not applicable yet
        }
        let body = &section[SectionCommonHeader::SIZE + TableSyntaxHeader::SIZE..section.len() - 4];
        match common.table_id {
            PAT_TABLE if pid == 0 => {
                if syntax.last_section_number() != 0
                    && !std::mem::replace(&mut self.warned_pat_sections, true)
                {
                    tracing::warn!(
                        sections = u16::from(syntax.last_section_number()) + 1,
                        "PAT in several sections: only the programs of section 0 are used"
                    );
                }
                if syntax.section_number() == 0 && self.pat(pat_programs(body))? {
                    changes.push(None);
                }
            }
            PMT_TABLE if pid != 0 => {
                let Some(pmt) = pmt(syntax.id(), syntax.version(), body) else {
                    stats.invalid_packets += 1;
                    self.table_error(pid, &"program_info_length past the section's end");
                    return Ok(());
                };
                if let Some(selection) = self.pmt(pid, &pmt)? {
                    changes.push(Some(selection));
                }
            }
            _ => {} // other tables (private sections on a PMT PID)
        }
        Ok(())
    }

    /// A new PAT: (program_number, PMT PID) without network PID entries. Returns `Ok(true)`
    /// when the chosen program went away.
    ///
    /// # Errors
    /// [`DemuxError::ProgramNotFound`] when the program asked for is not listed.
    pub fn pat(&mut self, table: Vec<(u16, u16)>) -> Result<bool, DemuxError> {
        if table == self.pat {
            return Ok(false);
        }
        tracing::debug!(programs = ?table, "PAT");
        self.pat = table;
        self.seen.retain(|n, _| self.pat.iter().any(|&(p, _)| p == *n));
        let pat = &self.pat;
        self.sections.retain(|&pid, _| pid == 0 || pat.iter().any(|&(_, p)| p == pid));
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
        let program = pmt.program;
        if !self.pat.contains(&(program, pid)) {
            return Ok(None);
        }
        let types: Vec<u8> = pmt.streams.iter().map(|&(t, _)| t).collect();
        let find = |t: u8| pmt.streams.iter().find(|&&(st, _)| st == t).map(|&(_, pid)| pid);
        let wanted = match (self.chosen, self.want) {
            (Some((sel, _, v)), _) if sel.program == program => {
                if v == pmt.version {
                    return Ok(None);
                }
                true
            }
            (Some(_), _) => return Ok(None),
            (None, Some(want)) => want == program,
            (None, None) => types.contains(&H264),
        };
        if !wanted {
            self.seen.insert(program, types);
            if self.pat.iter().all(|(n, _)| self.seen.contains_key(n)) {
                // Every program seen, none with H.264.
                if let Some((&program, _)) = self.seen.iter().find(|(_, t)| t.contains(&H265)) {
                    return Err(DemuxError::H265Refused { program });
                }
                return Err(DemuxError::NoH264 {
                    program,
                    stream_types: self.seen[&program].clone(),
                });
            }
            return Ok(None);
        }
        let Some(video) = find(H264) else {
            if types.contains(&H265) {
                return Err(DemuxError::H265Refused { program });
            }
            return Err(DemuxError::NoH264 { program, stream_types: types });
        };
        let audio = find(ADTS_AAC);
        if let Some(&other) = types.iter().find(|&&t| other_audio(t)) {
            if audio.is_none() && !std::mem::replace(&mut self.warned_audio, true) {
                tracing::warn!(
                    program,
                    stream_type = other,
                    "dropping audio that is not AAC in ADTS (stream type 0x0F): video goes on without it"
                );
            }
        }
        let selection = Selection { program, video, audio, pcr: pmt.pcr };
        tracing::info!(program, video, audio = ?audio, stream_types = ?types, "MPEG-TS program chosen");
        let changed = self.chosen.map(|(sel, _, _)| sel) != Some(selection);
        self.chosen = Some((selection, pid, pmt.version));
        self.seen.clear();
        Ok(changed.then_some(selection))
    }

    /// A PAT or PMT section dropped: one warning (the demuxer's damage report counts them).
    fn table_error(&mut self, pid: u16, error: &dyn std::fmt::Display) {
        if !std::mem::replace(&mut self.warned_tables, true) {
            tracing::warn!(pid, %error, "ignoring a PAT/PMT section that cannot be used");
        }
    }
}
