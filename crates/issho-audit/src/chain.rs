//! The hash chain and its external anchor.
//!
//! Entry `seq` has `hash = SHA-256("issho-audit-v1" ‖ seq ‖ time ‖ prev ‖ agent ‖ patients ‖
//! body)`, integers as 8 bytes big-endian, the three texts each preceded by their length (8
//! bytes big-endian), `prev` being the previous entry's hash (32 zero bytes for the first).
//! Editing, removing or reordering any entry therefore breaks the chain from that entry on.
//!
//! Removing the *last* entries leaves a shorter chain that is still consistent; the head
//! file `audit.head` (`<seq> <hash in hex>`, replaced atomically after every committed batch)
//! records the latest entry outside the database so that a truncated tail is detected too.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub type Hash = [u8; 32];

pub const ZERO: Hash = [0; 32];
pub const DB_FILE: &str = "audit.db";
pub const HEAD_FILE: &str = "audit.head";

/// The hash of one entry.
pub fn entry_hash(
    seq: i64,
    time: i64,
    prev: &[u8],
    agent: &[u8],
    patients: &[u8],
    body: &[u8],
) -> Hash {
    let mut h = Sha256::new();
    h.update(b"issho-audit-v1");
    h.update(seq.to_be_bytes());
    h.update(time.to_be_bytes());
    h.update(prev);
    for part in [agent, patients, body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The hash of one block of the segmented log (format v2): `SHA-256("issho-audit-v2" ‖ prev ‖
/// for each record: seq ‖ length ‖ record)`, integers as 8 bytes big-endian, each record as
/// its JSON serialization ([`crate::AuditRecord`]'s fields in declaration order), `prev` the
/// hash of the block before (across segments; 32 zero bytes before the first). The chain
/// covers the records, not how a segment encodes them.
pub struct BlockHasher(Sha256);

impl BlockHasher {
    pub fn new(prev: &Hash) -> BlockHasher {
        let mut h = Sha256::new();
        h.update(b"issho-audit-v2");
        h.update(prev);
        BlockHasher(h)
    }

    pub fn add(&mut self, seq: i64, rec: &crate::AuditRecord) -> Result<(), String> {
        let body = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
        self.0.update(seq.to_be_bytes());
        self.0.update((body.len() as u64).to_be_bytes());
        self.0.update(&body);
        Ok(())
    }

    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = ZERO;
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The anchor: the last entry the writer committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: Hash,
}

pub fn head_path(dir: &Path) -> PathBuf {
    dir.join(HEAD_FILE)
}

/// Read the head file: Ok(None) when it does not exist.
pub fn read_head(dir: &Path) -> Result<Option<Head>, String> {
    let path = head_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut it = text.split_whitespace();
    let parsed = match (it.next(), it.next(), it.next()) {
        (Some(seq), Some(hash), None) => seq
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .zip(unhex(hash))
            .map(|(seq, hash)| Head { seq, hash }),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("{} is not a valid head record", path.display()))
}

/// Replace `dir/name` by `text` durably (temporary file, fsync, rename, fsync of `dir`).
pub(crate) fn write_durably(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// The anchor of the segmented log (format v2): the segment, seq and hash of the last block
/// the writer committed, in `audit/head` as `<segment> <seq> <hash in hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegHead {
    pub segment: u32,
    pub seq: i64,
    pub hash: Hash,
}

/// The segmented log's head file, in the segments' directory.
pub const SEG_HEAD_FILE: &str = "head";

/// Read the segmented log's head file in `segments` (the `audit` directory): Ok(None) when
/// it does not exist.
pub fn read_seg_head(segments: &Path) -> Result<Option<SegHead>, String> {
    let path = segments.join(SEG_HEAD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut it = text.split_whitespace();
    let parsed = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(segment), Some(seq), Some(hash), None) => {
            match (segment.parse::<u32>(), seq.parse::<i64>(), unhex(hash)) {
                (Ok(segment), Ok(seq), Some(hash)) if seq >= 0 => {
                    Some(SegHead { segment, seq, hash })
                }
                _ => None,
            }
        }
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("{} is not a valid head record", path.display()))
}

pub fn write_seg_head(segments: &Path, head: SegHead) -> Result<(), String> {
    write_durably(
        segments,
        SEG_HEAD_FILE,
        &format!("{} {} {}\n", head.segment, head.seq, hex(&head.hash)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_covered() {
        let base = entry_hash(1, 2, &ZERO, b"a", b"Patient/1", b"{}");
        assert_ne!(base, entry_hash(2, 2, &ZERO, b"a", b"Patient/1", b"{}"));
        assert_ne!(base, entry_hash(1, 3, &ZERO, b"a", b"Patient/1", b"{}"));
        assert_ne!(base, entry_hash(1, 2, &[1; 32], b"a", b"Patient/1", b"{}"));
        assert_ne!(base, entry_hash(1, 2, &ZERO, b"b", b"Patient/1", b"{}"));
        assert_ne!(base, entry_hash(1, 2, &ZERO, b"a", b"Patient/2", b"{}"));
        assert_ne!(base, entry_hash(1, 2, &ZERO, b"a", b"Patient/1", b"{ }"));
        // lengths separate the fields
        assert_ne!(base, entry_hash(1, 2, &ZERO, b"aP", b"atient/1", b"{}"));
    }

    #[test]
    fn head_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_head(dir.path()).unwrap(), None);
        let h = Head {
            seq: 17,
            hash: entry_hash(17, 0, &ZERO, b"", b"", b""),
        };
        write_durably(dir.path(), HEAD_FILE, &format!("17 {}\n", hex(&h.hash))).unwrap();
        assert_eq!(read_head(dir.path()).unwrap(), Some(h));
        std::fs::write(head_path(dir.path()), "17 zz\n").unwrap();
        assert!(read_head(dir.path()).is_err());
    }
}
