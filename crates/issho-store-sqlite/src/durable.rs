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
pub(crate) fn run(db: &Path, rx: mpsc::Receiver<Vec<Answer>>) {
    let wal = wal_path(db);
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        answer(&wal, db, batches.into_iter().flatten());
    }
}

/// Sync the WAL, then send the answers (an error for each when the sync failed).
pub(crate) fn answer(wal: &Path, db: &Path, answers: impl Iterator<Item = Answer>) {
    let synced = sync(wal, db);
    for (reply, out) in answers {
        let out = match &synced {
            Ok(()) => out,
            Err(e) => Err(StoreError::Db(format!(
                "committed, but the disk did not confirm it ({e}): the write may be lost \
                 in a power failure"
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

/// `fdatasync` of the WAL (the commits' frames are appended there). While the writer's
/// connection is open SQLite keeps the WAL file; were it gone, its pages were checkpointed
/// into the database file, which is synced instead.
fn sync(wal: &Path, db: &Path) -> std::io::Result<()> {
    match std::fs::File::open(wal) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::File::open(db)?.sync_data(),
        Err(e) => Err(e),
    }
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
