//! Durability off the writer's path: the writer commits without waiting for the disk
//! (`synchronous = NORMAL`), and this thread syncs the WAL before any of those commits is
//! answered. An acknowledged write has reached the disk, as with `synchronous = FULL`, but the
//! writer runs the next group of jobs while the disk is busy: on the machine of BENCHMARKS.md a
//! WAL sync took 1–40 ms, during which the writer used to stand still.
//!
//! What changes: other readers may see a committed write a few milliseconds before it is
//! acknowledged, and a power failure in that window undoes it (with everything committed after
//! it — the WAL is replayed as a prefix). A crash of the process alone loses nothing committed:
//! the operating system keeps the written WAL.

use issho_store::{Result, StoreError};
use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// A job's answer, sent once the commit that holds it is on disk.
pub(crate) type Answer = (super::Reply, Result<Box<dyn Any + Send>>);

/// Answer committed jobs once the WAL is synced: every batch waiting when a sync starts is
/// covered by it (one sync for all). Ends when the writer drops its sender.
///
/// The WAL is opened once, here: a failed write-back is reported to every descriptor open
/// when it happened, so a sync through this one cannot miss an error that the checkpointer's
/// sync saw first (a descriptor opened afresh could). After a failed sync nothing more is
/// confirmed: a WAL is replayed only up to its first bad frame, so later commits would be lost
/// with it.
pub(crate) fn run(db: &Path, rx: mpsc::Receiver<Vec<Answer>>) {
    let wal = wal_path(db);
    let mut file = std::fs::File::open(&wal).ok();
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        if failed.is_none()
            && let Err(e) = sync(&mut file, &wal, db)
        {
            failed = Some(e.to_string());
        }
        send(failed.as_deref(), batches.into_iter().flatten());
    }
}

/// Sync the WAL, then send the answers (an error for each when the sync failed): for a writer
/// without its durability thread.
pub(crate) fn answer(wal: &Path, db: &Path, answers: impl Iterator<Item = Answer>) {
    let synced = sync(&mut None, wal, db).err().map(|e| e.to_string());
    send(synced.as_deref(), answers);
}

fn send(failed: Option<&str>, answers: impl Iterator<Item = Answer>) {
    for (reply, out) in answers {
        let out = match failed {
            None => out,
            Some(e) => Err(StoreError::Db(format!(
                "committed, but the disk did not confirm it ({e}): the write may be lost in a \
                 power failure; restart the server"
            ))),
        };
        let _ = reply.send(out);
    }
}

pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// `fdatasync` of the WAL (the commits' frames are appended there), through `file` when it is
/// open (opened here when it appeared since). While the writer's connection is open SQLite
/// keeps the WAL file; were it gone, its pages were checkpointed into the database file, which
/// is synced instead.
fn sync(file: &mut Option<std::fs::File>, wal: &Path, db: &Path) -> std::io::Result<()> {
    let f = match file {
        Some(f) => f,
        None => match std::fs::File::open(wal) {
            Ok(f) => file.insert(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return std::fs::File::open(db)?.sync_data();
            }
            Err(e) => return Err(e),
        },
    };
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(db: &Path) -> Vec<Result<Box<dyn Any + Send>>> {
        let (tx, rx) = mpsc::channel();
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let (reply, answer) = mpsc::sync_channel(1);
            tx.send(vec![(reply, Ok(Box::new(7u8) as Box<dyn Any + Send>))])
                .unwrap();
            waiting.push(answer);
        }
        drop(tx);
        run(db, rx);
        waiting.into_iter().map(|a| a.recv().unwrap()).collect()
    }

    #[test]
    fn answers_pass_once_the_wal_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("issho.db");
        std::fs::write(wal_path(&db), b"frames").unwrap();
        let got = answered(&db);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|r| r.is_ok()));
    }

    /// Once a sync failed, later commits are not confirmed either, even when the disk seems
    /// to work again (the WAL is replayed only up to its first bad frame).
    #[test]
    fn after_a_failed_sync_nothing_more_is_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("later");
        let db = sub.join("issho.db");
        let (tx, rx) = mpsc::channel();
        let thread = {
            let db = db.clone();
            std::thread::spawn(move || run(&db, rx))
        };
        let ask = |tx: &mpsc::Sender<Vec<Answer>>| {
            let (reply, answer) = mpsc::sync_channel(1);
            tx.send(vec![(reply, Ok(Box::new(1u8) as Box<dyn Any + Send>))])
                .unwrap();
            answer.recv().unwrap()
        };
        assert!(ask(&tx).is_err(), "nothing to sync");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(&db, b"").unwrap();
        std::fs::write(wal_path(&db), b"frames").unwrap();
        assert!(ask(&tx).is_err(), "still not confirmed");
        drop(tx);
        thread.join().unwrap();
    }

    #[test]
    fn without_a_sync_the_answer_says_the_write_may_be_lost() {
        let dir = tempfile::tempdir().unwrap();
        // Neither the WAL nor the database file can be synced.
        let db = dir.path().join("gone").join("issho.db");
        for r in answered(&db) {
            let Err(e) = r else {
                panic!("confirmed without a sync")
            };
            let e = e.to_string();
            assert!(e.contains("did not confirm"), "{e}");
        }
    }
}
