//! The writer thread every audit log has, whatever keeps it: request threads queue records,
//! the writer appends them in batches (one transaction each) and answers flushes; once an
//! append fails, the log refuses further records (the caller then refuses the access).

use crate::AuditError;
use crate::chain::{self, Hash};
use crate::event::{agent_key, patient_keys};
use crate::record::AuditRecord;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How often an idle writer hands its log an empty batch ([`Anchor::Lazy`]), so that an anchor
/// moved lazily catches up with the last commit.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// Most records committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Whether a batch's commit must also move the chain's anchor (the head file) now: when a
/// flush waits for it, or the writer stops; otherwise a log may move it lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Lazy,
    Now,
}

/// The writer's state as the request threads see it.
#[derive(Default)]
struct Shared {
    failed: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, why: String) {
        tracing::error!("the audit trail stopped: {why}");
        let mut w = self.why.lock().unwrap_or_else(|p| p.into_inner());
        w.get_or_insert(why);
        self.failed.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), String> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let w = self.why.lock().unwrap_or_else(|p| p.into_inner());
        Err(w.clone().unwrap_or_else(|| "unknown failure".into()))
    }
}

/// One entry of the chain, as stored (PostgreSQL's log: one hash per entry).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct Entry {
    pub seq: i64,
    pub time: i64,
    pub agent: String,
    /// The patients concerned (sorted, once each).
    pub patients: Vec<String>,
    /// `patients` one per line, as hashed.
    pub joined: String,
    /// The compact record (the AuditEvent is rendered from it when read).
    pub body: Vec<u8>,
    pub prev: Hash,
    pub hash: Hash,
}

/// The entries continuing the chain after entry `seq` whose hash is `prev`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn chain_on(
    mut seq: i64,
    mut prev: Hash,
    records: &[AuditRecord],
) -> Result<Vec<Entry>, String> {
    let mut out = Vec::with_capacity(records.len());
    for rec in records {
        seq += 1;
        let body = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
        let agent = agent_key(rec);
        let patients = patient_keys(rec);
        let joined = patients.join("\n");
        let hash = chain::entry_hash(
            seq,
            rec.time,
            &prev,
            agent.as_bytes(),
            joined.as_bytes(),
            &body,
        );
        out.push(Entry {
            seq,
            time: rec.time,
            agent,
            patients,
            joined,
            body,
            prev,
            hash,
        });
        prev = hash;
    }
    Ok(out)
}

/// Where a flush waits for the answer of the commit that includes its records.
type Waiter = mpsc::SyncSender<Result<(), String>>;

/// Stores one batch durably, in one transaction (an empty batch only asks for the anchor).
type Append<'a> = dyn FnMut(&[AuditRecord], Anchor) -> Result<(), String> + 'a;

/// What request threads hand the writer.
#[derive(Default)]
struct Inbox {
    records: Vec<AuditRecord>,
    waiters: Vec<Waiter>,
    /// When the oldest record still queued arrived (a window counts from it).
    since: Option<Instant>,
    /// The batch must not wait for the window: a record of anything but a read, search or
    /// history, or a full batch.
    urgent: bool,
    closed: bool,
}

impl Inbox {
    fn due(&self, window: Duration) -> bool {
        self.closed
            || self.urgent
            || !self.waiters.is_empty()
            || self.since.is_some_and(|t| t.elapsed() >= window)
    }
}

/// The inbox and the writer's wake-up. Request threads wake the writer only when a batch
/// becomes due or the inbox stops being empty — a read's record during a window costs a
/// lock and a push, not a thread switch.
#[derive(Default)]
struct Mailbox {
    inbox: Mutex<Inbox>,
    wake: Condvar,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The queue and its writer thread.
pub(crate) struct Queue {
    mailbox: Arc<Mailbox>,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Queue {
    /// Start the writer: `append` stores one batch durably (in one transaction) or says why
    /// not; an empty batch with [`Anchor::Now`] only asks that the anchor catch up.
    /// `window`: how long a batch of reads' records gathers after its first one before it is
    /// committed (at once when a flush waits, a record of anything but a read, search or
    /// history arrives, or the batch is full) — zero commits whatever is queued at once; a
    /// window trades how much a crash may lose of reads' records for fewer commits.
    pub(crate) fn start(
        window: Duration,
        mut append: impl FnMut(&[AuditRecord], Anchor) -> Result<(), String> + Send + 'static,
    ) -> Result<Queue, AuditError> {
        let shared = Arc::new(Shared::default());
        let mailbox = Arc::new(Mailbox::default());
        let writer = {
            let (shared, mailbox) = (shared.clone(), mailbox.clone());
            std::thread::Builder::new()
                .name("issho-audit".into())
                .spawn(move || writer_loop(&mut append, &mailbox, shared, window))
                .map_err(|e| AuditError::Io(e.to_string()))?
        };
        Ok(Queue {
            mailbox,
            shared,
            writer: Some(writer),
        })
    }

    /// Queue one record; it is durable after the writer's next commit ([`Queue::flush`]
    /// waits for that). Fails — and logs at error level — once the writer has failed: the
    /// caller must then refuse the access it was about to record.
    pub(crate) fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        if let Err(why) = self.shared.check() {
            tracing::error!(
                interaction = rec.interaction.code(),
                agent = %rec.agent.id,
                "audit record refused: the writer failed: {why}"
            );
            return Err(AuditError::WriterFailed(why));
        }
        let wake = {
            let mut inbox = self.mailbox.lock();
            if inbox.closed || self.writer.as_ref().is_none_or(|w| w.is_finished()) {
                drop(inbox);
                let why = "the audit writer thread has stopped".to_string();
                self.shared.fail(why.clone());
                return Err(AuditError::WriterFailed(why));
            }
            let first = inbox.records.is_empty();
            if first {
                inbox.since = Some(Instant::now());
            }
            if !rec.is_read_only() || inbox.records.len() + 1 >= MAX_BATCH {
                inbox.urgent = true;
            }
            inbox.records.push(rec);
            first || inbox.urgent
        };
        if wake {
            self.mailbox.wake.notify_one();
        }
        Ok(())
    }

    /// Wait until every record queued so far is committed.
    pub(crate) fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let alive = self.writer.as_ref().is_some_and(|w| !w.is_finished());
        let sent = {
            let mut inbox = self.mailbox.lock();
            if inbox.closed || !alive {
                false
            } else {
                inbox.waiters.push(tx);
                true
            }
        };
        let answer = if sent {
            self.mailbox.wake.notify_one();
            rx.recv()
                .unwrap_or_else(|_| Err("the audit writer thread has stopped".into()))
        } else {
            Err("the audit writer thread has stopped".into())
        };
        answer.map_err(|why| {
            self.shared.fail(why.clone());
            AuditError::WriterFailed(why)
        })
    }

    /// Ok while the writer works; the failure otherwise (for health checks).
    pub(crate) fn health(&self) -> Result<(), AuditError> {
        self.shared.check().map_err(AuditError::WriterFailed)?;
        if self.writer.as_ref().is_none_or(|w| w.is_finished()) {
            return Err(AuditError::WriterFailed(
                "the audit writer thread has stopped".into(),
            ));
        }
        Ok(())
    }

    /// Write what is queued and stop the writer; whether everything was stored.
    pub(crate) fn stop(&mut self) -> Result<(), AuditError> {
        self.mailbox.lock().closed = true;
        self.mailbox.wake.notify_one();
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            self.shared.fail("the audit writer thread panicked".into());
        }
        self.shared.check().map_err(AuditError::WriterFailed)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The next batch: waits until one is due (or the inbox closed and is empty: None).
fn next_batch(mailbox: &Mailbox, window: Duration) -> Option<(Vec<AuditRecord>, Vec<Waiter>)> {
    let mut inbox = mailbox.lock();
    loop {
        let empty = inbox.records.is_empty() && inbox.waiters.is_empty();
        if empty && inbox.closed {
            return None;
        }
        if !empty && inbox.due(window) {
            break;
        }
        inbox = match inbox.since.filter(|_| !empty) {
            // Reads gathering: sleep out the rest of the window (or until one is due).
            Some(t) => {
                let left = window.saturating_sub(t.elapsed());
                mailbox
                    .wake
                    .wait_timeout(inbox, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            // Idle: an empty batch now and then lets a lazily moved anchor catch up.
            None => {
                let (guard, waited) = mailbox
                    .wake
                    .wait_timeout(inbox, IDLE_TICK)
                    .unwrap_or_else(|p| p.into_inner());
                if waited.timed_out() && guard.records.is_empty() && guard.waiters.is_empty() {
                    return Some((Vec::new(), Vec::new()));
                }
                guard
            }
        };
    }
    let take = inbox.records.len().min(MAX_BATCH);
    let records: Vec<AuditRecord> = inbox.records.drain(..take).collect();
    let waiters = if inbox.records.is_empty() {
        inbox.since = None;
        inbox.urgent = false;
        std::mem::take(&mut inbox.waiters)
    } else {
        // More than a batch queued: the rest is due at once; waiters wait for it.
        inbox.urgent = true;
        Vec::new()
    };
    Some((records, waiters))
}

fn writer_loop(append: &mut Append, mailbox: &Mailbox, shared: Arc<Shared>, window: Duration) {
    while let Some((records, waiters)) = next_batch(mailbox, window) {
        let anchor = if waiters.is_empty() {
            Anchor::Lazy
        } else {
            Anchor::Now
        };
        if shared.check().is_err() {
            if !records.is_empty() {
                tracing::error!(
                    "{} audit records lost: the writer had failed before",
                    records.len()
                );
            }
        } else {
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| append(&records, anchor)));
            let failure = match run {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("the writer panicked".to_string()),
            };
            if let Some(e) = failure {
                shared.fail(format!("{} records were not stored: {e}", records.len()));
            }
        }
        let answer = shared.check();
        for w in waiters {
            let _ = w.send(answer.clone());
        }
    }
    // Stopping: the anchor catches up with everything committed.
    if shared.check().is_ok()
        && let Err(e) = append(&[], Anchor::Now)
    {
        shared.fail(format!("the anchor was not moved: {e}"));
    }
}

#[cfg(test)]
mod window {
    use super::*;
    use crate::record::Interaction;

    /// The batches a writer committed, as (interactions, when).
    type Batches = Arc<Mutex<Vec<(Vec<String>, Instant)>>>;

    fn queue(window: Duration) -> (Queue, Batches) {
        let seen: Batches = Arc::default();
        let s = seen.clone();
        let q = Queue::start(window, move |records, _| {
            if records.is_empty() {
                return Ok(());
            }
            let names = records
                .iter()
                .map(|r| r.interaction.code().to_string())
                .collect();
            s.lock().unwrap().push((names, Instant::now()));
            Ok(())
        })
        .unwrap();
        (q, seen)
    }

    fn rec(i: Interaction) -> AuditRecord {
        AuditRecord::new(i, "tester", "test")
    }

    /// Reads' records gather for the window and are committed together; a write's record or a
    /// flush ends the gathering at once (generous bounds: the window is long).
    #[test]
    fn reads_gather_writes_and_flushes_do_not_wait() {
        let window = Duration::from_secs(20);
        let (q, seen) = queue(window);
        let t0 = Instant::now();
        q.record(rec(Interaction::Read)).unwrap();
        q.record(rec(Interaction::SearchType)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(seen.lock().unwrap().is_empty(), "reads wait for the window");
        q.record(rec(Interaction::Update)).unwrap();
        while seen.lock().unwrap().is_empty() {
            assert!(
                t0.elapsed() < window / 2,
                "a write's record is not held back"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            seen.lock().unwrap()[0].0,
            ["read", "search-type", "update"],
            "one batch"
        );
        q.record(rec(Interaction::Vread)).unwrap();
        let t1 = Instant::now();
        q.flush().unwrap();
        assert!(
            t1.elapsed() < window / 2,
            "a flush does not wait for the window"
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(seen.lock().unwrap()[1].0, ["vread"]);
    }

    /// Without a window whatever is queued is committed at once.
    #[test]
    fn no_window_commits_reads_at_once() {
        let (q, seen) = queue(Duration::ZERO);
        let t0 = Instant::now();
        q.record(rec(Interaction::Read)).unwrap();
        while seen.lock().unwrap().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
