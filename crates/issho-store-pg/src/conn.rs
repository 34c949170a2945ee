//! A connection with its prepared statements (each statement text is parsed once per
//! connection, not per call).

use postgres::types::ToSql;
use postgres::{Row, Statement};
use std::collections::HashMap;

/// Statements kept per connection, at most (the cache is emptied when it is full).
const MAX_STATEMENTS: usize = 512;

pub struct Conn {
    client: postgres::Client,
    cache: HashMap<String, Statement>,
    /// A statement failed because another transaction got in the way (deadlock,
    /// serialization failure, a key taken meanwhile, a lock not available): the job may be
    /// run again ([`Conn::take_conflict`]).
    conflict: bool,
}

/// The SQLSTATEs of an error that running the job again can cure.
fn is_conflict(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::UNIQUE_VIOLATION,
            SqlState::LOCK_NOT_AVAILABLE,
        ]
        .contains(c)
    })
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    pub fn new(client: postgres::Client) -> Conn {
        Conn {
            client,
            cache: HashMap::new(),
            conflict: false,
        }
    }

    fn note<T>(&mut self, r: Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        if let Err(e) = &r
            && is_conflict(e)
        {
            self.conflict = true;
        }
        r
    }

    /// Whether a statement lost to another transaction since the last call.
    pub fn take_conflict(&mut self) -> bool {
        std::mem::take(&mut self.conflict)
    }

    /// Record a conflict found without a failed statement (a lock not taken).
    pub fn mark_conflict(&mut self) {
        self.conflict = true;
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        if self.cache.len() >= MAX_STATEMENTS {
            self.cache.clear();
        }
        self.cache.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub fn execute(&mut self, sql: &str, p: Params<'_>) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        let r = self.client.execute(&s, p);
        self.note(r)
    }

    pub fn query(&mut self, sql: &str, p: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        let r = self.client.query(&s, p);
        self.note(r)
    }

    pub fn query_opt(&mut self, sql: &str, p: Params<'_>) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        let r = self.client.query_opt(&s, p);
        self.note(r)
    }

    pub fn query_one(&mut self, sql: &str, p: Params<'_>) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        let r = self.client.query_one(&s, p);
        self.note(r)
    }

    /// Statements without parameters (transaction control, DDL).
    pub fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        let r = self.client.batch_execute(sql);
        self.note(r)
    }

    pub fn client(&mut self) -> &mut postgres::Client {
        &mut self.client
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
