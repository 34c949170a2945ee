//! Stable paging: the ordered match list of a search is kept for a while under a token, so
//! that `next`/`previous` links keep pointing at the same result set while data changes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One remembered result set.
#[derive(Debug)]
pub(crate) struct CachedSearch {
    /// Matching rids in result order (at most the cache's row limit).
    pub rids: Vec<i64>,
    /// True when `rids` holds every match; false when the result set was larger.
    pub complete: bool,
    /// Total matches (known exactly when complete, or counted).
    pub total: Option<u64>,
    /// A result in `rid` order that is read a window at a time (then `rids` is unused).
    pub stream: Option<Mutex<Stream>>,
    created: Instant,
}

/// A result set in `rid` order over a snapshot, continued on demand.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The query, restricted to the snapshot (`rid_upto`).
    pub query: issho_search::SearchQuery,
    /// The matches read so far.
    pub rids: Vec<i64>,
    pub complete: bool,
    pub total: Option<u64>,
}

impl CachedSearch {
    pub fn new(rids: Vec<i64>, complete: bool, total: Option<u64>) -> CachedSearch {
        CachedSearch {
            rids,
            complete,
            total,
            stream: None,
            created: Instant::now(),
        }
    }

    /// A result whose first `rids` were read with `query` (snapshot-bounded, `rid` order).
    pub fn streaming(
        rids: Vec<i64>,
        query: issho_search::SearchQuery,
        total: Option<u64>,
    ) -> CachedSearch {
        CachedSearch {
            rids: Vec::new(),
            complete: false,
            total: None,
            stream: Some(Mutex::new(Stream {
                query,
                rids,
                complete: false,
                total,
            })),
            created: Instant::now(),
        }
    }

    /// The total, when known.
    pub fn total(&self) -> Option<u64> {
        match &self.stream {
            Some(s) => s.lock().unwrap_or_else(|e| e.into_inner()).total,
            None => self.total,
        }
    }
}

/// Result sets by token (with the caller they belong to), and the tokens in insertion order.
type Sets = (
    HashMap<String, (String, Arc<CachedSearch>)>,
    VecDeque<String>,
);

/// Result sets by token, oldest evicted first.
#[derive(Debug)]
pub(crate) struct PageCache {
    inner: Mutex<Sets>,
    capacity: usize,
    ttl: Duration,
}

impl PageCache {
    pub fn new(capacity: usize, ttl: Duration) -> PageCache {
        PageCache {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity,
            ttl,
        }
    }

    /// Remember a result set computed for `owner` (see `AccessContext::owner`); returns its
    /// token.
    pub fn insert(&self, set: Arc<CachedSearch>, owner: &str) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while g.1.len() >= self.capacity {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        g.0.insert(token.clone(), (owner.to_string(), set));
        g.1.push_back(token.clone());
        token
    }

    /// The result set of `token`, only for the caller it was computed for: a paging link
    /// used by someone else is treated as expired, never as a way into another's results.
    pub fn get(&self, token: &str, owner: &str) -> Option<Arc<CachedSearch>> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(token)
            .filter(|(o, c)| o == owner && c.created.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }
}
