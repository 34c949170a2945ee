//! [`AuditLog`]: the append-only, hash-chained audit trail of a data directory, kept in
//! segments (`audit/segment-NNNNNN.db`, [`crate::segment`]) and written by one background
//! thread.
//!
//! - Each committed batch is one block of the chain; its hash covers the records themselves
//!   and the block before ([`crate::chain::BlockHasher`]), across segments.
//! - The segment being written is sealed, and the next one started, when it reaches
//!   [`AuditConfig::segment_bytes`] or [`AuditConfig::segment_age`]; sealed segments never
//!   change and can be copied elsewhere (an archive) and checked there with
//!   [`crate::verify_with_archives`].
//! - With [`AuditConfig::retention`], sealed segments whose newest event is older are removed;
//!   each removal is first written to `audit/removed` (segment, seqs, end hash), so that the
//!   chain of what is left still verifies from there.
//! - `audit/head` records the last committed block outside the segments, so that removing the
//!   newest entries is detected too.
//!
//! What a crash may lose: nothing that [`AuditLog::flush`] returned for — a flush commits
//! what is queued, syncs it to disk and moves the head. An access is answered once its record
//! is queued. A write's record (and any record but a read's or a search's) is committed as
//! soon as the writer is free; reads' records gather for `READ_WINDOW` (1 ms) first. Commits
//! do not wait for the disk (`synchronous=NORMAL`): the writer syncs the segment's WAL when
//! it moves the head file, at most every `ANCHOR_EVERY` (100 ms), at every flush and on close
//! (and SQLite syncs it before each checkpoint). So a crash of the process loses only the
//! records queued but not yet committed (about 1 ms of reads, one commit's time of others; the
//! operating system keeps what was written); a power failure may also lose the blocks
//! committed since the last sync, at most about 100 ms of records. Before (the eleventh
//! session) every commit was synced and reads' records did not wait: a power failure lost one
//! commit's time. The head file never names a block that was not synced, and a tail cut off
//! within the last 100 ms is not detected by `verify` (those entries are still chained, and
//! reported as "after the anchored seq"); the chain itself and everything older are checked
//! as before.

use crate::AuditError;
use crate::chain::{self, Hash, SegHead, ZERO};
use crate::directory::{Directory, Kind};
use crate::event::to_audit_event;
use crate::queue::{Anchor, Queue};
use crate::record::AuditRecord;
use crate::segment::{self, Active, Query, Reader, SEGMENTS_DIR, Sealed};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How the audit trail's segments rotate and how long they are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Seal the segment being written once it holds this many bytes.
    pub segment_bytes: u64,
    /// Seal the segment being written once it is this old (at its next record).
    pub segment_age: Duration,
    /// Remove sealed segments whose newest event is older than this (None: keep all).
    pub retention: Option<Duration>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            segment_bytes: 1 << 30,
            segment_age: Duration::from_secs(30 * 86_400),
            retention: None,
        }
    }
}

/// The ledger of segments removed by retention, in the segments' directory.
pub const REMOVED_FILE: &str = "removed";

/// A segment as searches see it.
#[derive(Debug, Clone)]
struct Info {
    number: u32,
    path: PathBuf,
    first_seq: i64,
    /// None while it is being written.
    sealed: Option<Sealed>,
}

/// The segments, shared by the writer (which adds and removes them) and the readers.
type Segments = Arc<RwLock<Vec<Info>>>;

/// The audit trail of one data directory (the `audit` directory and `audit.lock` in it).
///
/// Share it behind an `Arc`: [`AuditLog::record`] only queues the record for the writer
/// thread. Dropping the log writes what was queued.
pub struct AuditLog {
    dir: PathBuf,
    queue: Queue,
    segments: Segments,
    readers: Mutex<HashMap<u32, Reader>>,
    /// Which sealed segments mention whom (`crate::directory`), for searches.
    directory: Mutex<Option<Directory>>,
    /// Held for the log's lifetime: one writer per chain.
    _lock: std::fs::File,
}

/// The lock file beside the log; an exclusive lock on it is held while a log is open.
pub const LOCK_FILE: &str = "audit.lock";

/// Take the exclusive lock of the audit trail in `dir`, or say that another process holds it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, AuditError> {
    let io = |e: std::io::Error| AuditError::Io(format!("{}: {e}", dir.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Io(format!(
            "the data directory {} is in use by another issho process (stop it first)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// How long a batch of reads' (and searches') records gathers after its first one: a commit
/// per millisecond at most under read load instead of one per record or two (the audit
/// writer's CPU during `wrk` reads fell from 485 to about 195 ticks per 10 s together with
/// unsynced commits, BENCHMARKS.md).
const READ_WINDOW: Duration = Duration::from_millis(1);

/// How often, at most, the head file moves while nobody waits for it (each move is a file
/// written, synced and renamed): it always moves when a flush waits and when the log closes.
const ANCHOR_EVERY: Duration = Duration::from_millis(100);

/// Readers kept open at once (searches over years of segments open the older ones again).
const MAX_READERS: usize = 64;

impl AuditLog {
    /// Open (creating if needed) the audit log in `dir` with the default [`AuditConfig`].
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(dir, AuditConfig::default())
    }

    /// Open (creating if needed) the audit log in `dir`. Refuses a log whose segments
    /// disagree with its head file (entries removed from the end, or rewritten) or miss one
    /// in the middle: appending to it would bury the evidence. A log of the first format
    /// (`audit.db`) is checked and converted into the first segment (kept as `audit.v1.db`).
    /// Holds an exclusive lock on `audit.lock` until dropped: a second opening (another
    /// process on the same data directory) is refused before it reads or writes anything.
    pub fn open_with(dir: &Path, config: AuditConfig) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| AuditError::Io(format!("{}: {e}", dir.display())))?;
        // Before anything is read or written: a refused process must leave the chain alone.
        let lock = lock_dir(dir)?;
        crate::convert::convert_v1(dir)?;
        let segdir = dir.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&segdir)
            .map_err(|e| AuditError::Io(format!("{}: {e}", segdir.display())))?;
        let (infos, active) = open_segments(&segdir)?;
        let directory = open_directory(&segdir, &infos);
        let reading = Directory::open(&segdir)
            .inspect_err(|e| tracing::warn!("audit directory not read: {e}"))
            .ok();
        let segments: Segments = Arc::new(RwLock::new(infos));
        let mut writer = Writer {
            segdir,
            config,
            active: Some(active),
            segments: segments.clone(),
            directory,
            anchored_at: Instant::now(),
            unanchored: false,
        };
        writer.sweep().map_err(AuditError::Io)?;
        // Reads' records gather for READ_WINDOW; any other record, or a flush, commits at once.
        let queue = Queue::start(READ_WINDOW, move |records, anchor| {
            writer.append(records, anchor)
        })?;
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            queue,
            segments,
            readers: Mutex::new(HashMap::new()),
            directory: Mutex::new(reading),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queue one record; it is durable after the writer's next commit ([`AuditLog::flush`]
    /// waits for that). Fails — and logs at error level — once the writer has failed: the
    /// caller must then refuse the access it was about to record.
    pub fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        self.queue.record(rec)
    }

    /// Wait until every record queued so far is committed (and anchored in the head file).
    pub fn flush(&self) -> Result<(), AuditError> {
        self.queue.flush()
    }

    /// Ok while the writer works; the failure otherwise (for health checks).
    pub fn health(&self) -> Result<(), AuditError> {
        self.queue.health()
    }

    /// Write what is queued, stop the writer and report whether everything was stored.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.queue.stop()
    }

    /// The segments' numbers, oldest first (for tools and tests).
    pub fn segment_numbers(&self) -> Vec<u32> {
        let list = self.segments.read().unwrap_or_else(|p| p.into_inner());
        list.iter().map(|i| i.number).collect()
    }

    /// A person's own access log: the events concerning `patient` (`Patient/id`), newest
    /// first, recorded at or after `since` (microseconds since the epoch), at most `limit`.
    pub fn for_patient(
        &self,
        patient: &str,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        self.search(None, Some(patient), since, None, limit)
    }

    /// Events by `agent` (the [`crate::Agent::id`]) and/or concerning `patient`, recorded in
    /// `[since, until)` (microseconds since the epoch), newest first, at most `limit` — from
    /// the newest segment back, skipping sealed ones outside the time range.
    pub fn search(
        &self,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        let infos = self
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let skip = self.segments_without(agent, patient);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        readers.retain(|n, _| infos.iter().any(|i| i.number == *n));
        let mut out = Vec::new();
        for info in infos.iter().rev() {
            if out.len() >= limit {
                break;
            }
            if let Some(s) = info.sealed
                && (since.is_some_and(|t| s.max_time < t)
                    || until.is_some_and(|t| s.min_time >= t)
                    || skip.contains(&info.number))
            {
                continue;
            }
            if !readers.contains_key(&info.number) {
                if readers.len() >= MAX_READERS {
                    readers.clear();
                }
                let r = match Reader::open(&info.path) {
                    Ok(r) => r,
                    // Removed by the retention period since the list was read.
                    Err(_) if !self.segment_numbers().contains(&info.number) => continue,
                    Err(e) => return Err(AuditError::Io(e)),
                };
                readers.insert(info.number, r);
            }
            let reader = readers.get_mut(&info.number).expect("just opened");
            let q = Query {
                agent,
                patient,
                since,
                until,
                limit: limit - out.len(),
            };
            for (seq, rec) in reader.search(&q).map_err(AuditError::Io)? {
                out.push(to_audit_event(&rec, &seq.to_string()));
            }
        }
        Ok(out)
    }
}

impl AuditLog {
    /// The sealed segments the directory knows not to mention `agent` or `patient` (none
    /// without either, or without a readable directory).
    fn segments_without(&self, agent: Option<&str>, patient: Option<&str>) -> HashSet<u32> {
        let keys: Vec<(Kind, &str)> = [(Kind::Agent, agent), (Kind::Patient, patient)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.trim())))
            .collect();
        let dir = self.directory.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(dir), false) = (dir.as_ref(), keys.is_empty()) else {
            return HashSet::new();
        };
        // A covered segment is skipped when it lacks one of the keys.
        let skip = || -> Result<HashSet<u32>, String> {
            let covered = dir.covered()?;
            let mut skip = HashSet::new();
            for (kind, key) in keys {
                let with = dir.segments_with(kind, key)?;
                skip.extend(covered.iter().filter(|n| !with.contains(n)));
            }
            Ok(skip)
        };
        // The directory only narrows a search: unreadable, every segment is searched.
        skip().unwrap_or_else(|e| {
            tracing::warn!("audit directory not read: {e}");
            HashSet::new()
        })
    }
}

/// The directory of sealed segments (`crate::directory`), with the sealed segments it does not
/// cover yet added; None (searches open every segment) when it cannot be written.
fn open_directory(segdir: &Path, infos: &[Info]) -> Option<Directory> {
    let mut dir = Directory::open(segdir)
        .inspect_err(|e| tracing::warn!("audit directory not opened: {e}"))
        .ok()?;
    let sealed: HashSet<u32> = infos
        .iter()
        .filter(|i| i.sealed.is_some())
        .map(|i| i.number)
        .collect();
    if let Err(e) = dir.keep_only(&sealed) {
        // Rows that may not describe the segments: searches open every segment.
        tracing::warn!("audit directory not usable: {e}");
        return None;
    }
    let covered = dir.covered().unwrap_or_default();
    for info in infos.iter().filter(|i| i.sealed.is_some()) {
        if !covered.contains(&info.number)
            && let Err(e) = dir.add(info.number, &info.path)
        {
            tracing::warn!(segment = info.number, "audit directory: {e}");
        }
    }
    Some(dir)
}

/// Open the segments in `segdir`: their list for searches, and the one to write (started
/// when there is none, or the last one was sealed). Checks that none is missing in the
/// middle and that the head file agrees with them, and moves the head to the chain's end.
fn open_segments(segdir: &Path) -> Result<(Vec<Info>, Active), AuditError> {
    let tampered = AuditError::Tampered;
    let head = chain::read_seg_head(segdir).map_err(tampered)?;
    let files = segment::list(segdir).map_err(AuditError::Io)?;
    let mut infos = Vec::with_capacity(files.len() + 1);
    for (i, (n, path)) in files.iter().enumerate() {
        if i > 0 && *n != files[i - 1].0 + 1 {
            return Err(tampered(format!(
                "segment {} is missing (segments {} and {n} are present)",
                files[i - 1].0 + 1,
                files[i - 1].0
            )));
        }
        let r = Reader::open(path).map_err(tampered)?;
        if r.meta.number != *n {
            return Err(tampered(format!(
                "{} says it is segment {}",
                path.display(),
                r.meta.number
            )));
        }
        infos.push(Info {
            number: *n,
            path: path.clone(),
            first_seq: r.meta.first_seq,
            sealed: r.meta.sealed,
        });
    }
    let mut active = match files.last() {
        None => {
            if let Some(h) = head.filter(|h| h.seq > 0) {
                return Err(tampered(format!(
                    "{} records entry {} in segment {} but there are no segments",
                    chain::SEG_HEAD_FILE,
                    h.seq,
                    h.segment
                )));
            }
            Active::create(segdir, 1, 0, ZERO).map_err(AuditError::Io)?
        }
        Some((_, path)) => Active::open(path.clone()).map_err(AuditError::Io)?,
    };
    check_anchor(head, &files, &active).map_err(tampered)?;
    // What a crashed process committed may not be on disk yet (commits are not synced): it is,
    // before the head names it.
    active.sync().map_err(AuditError::Io)?;
    if active.meta.sealed.is_some() {
        // The writer stopped between sealing a segment and starting the next.
        let n = active.meta.number + 1;
        active = Active::create(segdir, n, active.last, active.hash).map_err(AuditError::Io)?;
    }
    if infos.last().is_none_or(|i| i.number != active.meta.number) {
        infos.push(Info {
            number: active.meta.number,
            path: active.path.clone(),
            first_seq: active.meta.first_seq,
            sealed: None,
        });
    }
    // A new log gets its anchor at once (so that a missing head file always means tampering);
    // entries committed before a crash interrupted the head update get theirs.
    let now = active.head();
    if head != Some(now) {
        chain::write_seg_head(segdir, now).map_err(AuditError::Io)?;
    }
    Ok((infos, active))
}

/// Does the head file agree with the segments? The full check is [`crate::verify`]; this one
/// costs a lookup, for opening.
fn check_anchor(
    head: Option<SegHead>,
    files: &[(u32, PathBuf)],
    active: &Active,
) -> Result<(), String> {
    let Some(head) = head else {
        return if active.last == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} is missing while the segments hold {} entries",
                chain::SEG_HEAD_FILE,
                active.last
            ))
        };
    };
    if head.seq == 0 && head.hash == ZERO && files.is_empty() {
        return Ok(());
    }
    if head.seq > active.last {
        return Err(format!(
            "the segments end at entry {} but {} records entry {}: entries were removed",
            active.last,
            chain::SEG_HEAD_FILE,
            head.seq
        ));
    }
    let path = files
        .iter()
        .find(|(n, _)| *n == head.segment)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            format!(
                "{} records segment {}, which is missing",
                chain::SEG_HEAD_FILE,
                head.segment
            )
        })?;
    let r = Reader::open(&path)?;
    // The start of a segment (just after a rotation, or a new log).
    let m = &r.meta;
    if head.seq == m.first_seq - 1 {
        return if head.hash == m.prev {
            Ok(())
        } else {
            Err(format!(
                "segment {} does not start where {} says the chain is",
                m.number,
                chain::SEG_HEAD_FILE
            ))
        };
    }
    if segment::block_hash_at(&r.conn, head.seq)?.as_deref() != Some(&head.hash[..]) {
        return Err(format!(
            "entry {} is not the one recorded in {}",
            head.seq,
            chain::SEG_HEAD_FILE
        ));
    }
    Ok(())
}

/// The writer thread's side: appends, rotates, removes by retention.
struct Writer {
    segdir: PathBuf,
    config: AuditConfig,
    active: Option<Active>,
    segments: Segments,
    /// Which sealed segments mention whom (None: it could not be opened).
    directory: Option<Directory>,
    /// When the head file was last written, and whether blocks were committed since.
    anchored_at: Instant,
    unanchored: bool,
}

impl Writer {
    fn append(&mut self, records: &[AuditRecord], anchor: Anchor) -> Result<(), String> {
        let active = self
            .active
            .as_mut()
            .ok_or("no segment to write (starting the next one failed)")?;
        if !records.is_empty() {
            active.append(records)?;
            self.unanchored = true;
        }
        if self.unanchored && (anchor == Anchor::Now || self.anchored_at.elapsed() >= ANCHOR_EVERY)
        {
            // The head names only blocks on disk.
            active.sync()?;
            chain::write_seg_head(&self.segdir, active.head())?;
            (self.unanchored, self.anchored_at) = (false, Instant::now());
        }
        if records.is_empty() {
            return Ok(());
        }
        self.rotate_if_due()
    }

    fn rotate_if_due(&mut self) -> Result<(), String> {
        let Some(active) = self.active.as_ref() else {
            return Ok(());
        };
        let age = crate::now_micros().saturating_sub(active.meta.created);
        let due = active.size()? >= self.config.segment_bytes
            || age >= self.config.segment_age.as_micros() as i64;
        if !due || active.is_empty() {
            return Ok(());
        }
        let active = self.active.take().expect("checked");
        let number = active.meta.number;
        let sealed = active.seal()?;
        let next = Active::create(&self.segdir, number + 1, sealed.last, sealed.hash)?;
        {
            let mut list = self.segments.write().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = list.iter_mut().find(|i| i.number == number) {
                i.sealed = Some(sealed);
            }
            list.push(Info {
                number: next.meta.number,
                path: next.path.clone(),
                first_seq: next.meta.first_seq,
                sealed: None,
            });
        }
        // The anchor moves to the new segment's start, so that it never names a segment
        // the retention may remove.
        chain::write_seg_head(&self.segdir, next.head())?;
        (self.unanchored, self.anchored_at) = (false, Instant::now());
        tracing::info!(segment = number, last = sealed.last, "audit segment sealed");
        let path = segment_path(&self.segments, number);
        if let (Some(dir), Some(path)) = (self.directory.as_mut(), path)
            && let Err(e) = dir.add(number, &path)
        {
            // Searches open the segment as before.
            tracing::warn!(segment = number, "audit directory: {e}");
        }
        self.active = Some(next);
        self.sweep()
    }

    /// Remove the sealed segments the retention period has passed, oldest first, each
    /// written to the ledger before its file goes.
    fn sweep(&mut self) -> Result<(), String> {
        let Some(keep) = self.config.retention else {
            return Ok(());
        };
        let cutoff = crate::now_micros().saturating_sub(keep.as_micros() as i64);
        loop {
            let first = {
                let list = self.segments.read().unwrap_or_else(|p| p.into_inner());
                list.first().cloned()
            };
            let Some(info) = first else { return Ok(()) };
            let Some(sealed) = info.sealed.filter(|s| s.max_time < cutoff) else {
                return Ok(());
            };
            append_removed(&self.segdir, &info, &sealed)?;
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", info.path.display()));
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("{}: {e}", p.display())),
                }
            }
            tracing::info!(segment = info.number, "audit segment removed (retention)");
            if let Some(dir) = self.directory.as_mut()
                && let Err(e) = dir.remove(info.number)
            {
                tracing::warn!(segment = info.number, "audit directory: {e}");
            }
            let mut list = self.segments.write().unwrap_or_else(|p| p.into_inner());
            list.retain(|i| i.number != info.number);
        }
    }
}

/// The file of segment `number`.
fn segment_path(segments: &Segments, number: u32) -> Option<PathBuf> {
    let list = segments.read().unwrap_or_else(|p| p.into_inner());
    list.iter()
        .find(|i| i.number == number)
        .map(|i| i.path.clone())
}

/// One line of the ledger of removed segments: `<segment> <first seq> <last seq> <end hash>
/// <newest event time, µs>`.
fn append_removed(segdir: &Path, info: &Info, sealed: &Sealed) -> Result<(), String> {
    let path = segdir.join(REMOVED_FILE);
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    writeln!(
        f,
        "{} {} {} {} {}",
        info.number,
        info.first_seq,
        sealed.last,
        chain::hex(&sealed.hash),
        sealed.max_time
    )
    .map_err(io)?;
    f.sync_all().map_err(io)
}

/// A line of the ledger of removed segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removed {
    pub number: u32,
    pub first_seq: i64,
    pub last: i64,
    pub hash: Hash,
}

/// The ledger of removed segments in `segdir` (empty when there is none).
pub(crate) fn read_removed(segdir: &Path) -> Result<Vec<Removed>, String> {
    let path = segdir.join(REMOVED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [n, first, last, hash, _time] => match (
                n.parse::<u32>(),
                first.parse::<i64>(),
                last.parse::<i64>(),
                chain::unhex(hash),
            ) {
                (Ok(number), Ok(first_seq), Ok(last), Some(hash)) => Some(Removed {
                    number,
                    first_seq,
                    last,
                    hash,
                }),
                _ => None,
            },
            _ => None,
        };
        out.push(parsed.ok_or_else(|| format!("{} line {}: malformed", path.display(), i + 1))?);
    }
    Ok(out)
}

impl crate::AuditTrail for AuditLog {
    fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        AuditLog::record(self, rec)
    }
    fn flush(&self) -> Result<(), AuditError> {
        AuditLog::flush(self)
    }
    fn search(
        &self,
        agent: Option<&str>,
        patient: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Value>, AuditError> {
        AuditLog::search(self, agent, patient, since, until, limit)
    }
}
