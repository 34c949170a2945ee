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
    created: Instant,
}

impl CachedSearch {
    pub fn new(rids: Vec<i64>, complete: bool, total: Option<u64>) -> CachedSearch {
        CachedSearch {
            rids,
            complete,
            total,
            created: Instant::now(),
        }
    }
}

/// Result sets by token, and the tokens in insertion order.
type Sets = (HashMap<String, Arc<CachedSearch>>, VecDeque<String>);

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

    /// Remember a result set; returns its token.
    pub fn insert(&self, set: Arc<CachedSearch>) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut g = self.inner.lock().unwrap();
        while g.1.len() >= self.capacity {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        g.0.insert(token.clone(), set);
        g.1.push_back(token.clone());
        token
    }

    pub fn get(&self, token: &str) -> Option<Arc<CachedSearch>> {
        let g = self.inner.lock().unwrap();
        g.0.get(token)
            .filter(|c| c.created.elapsed() < self.ttl)
            .cloned()
    }
}
