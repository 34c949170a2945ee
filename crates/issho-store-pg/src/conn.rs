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
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    pub fn new(client: postgres::Client) -> Conn {
        Conn {
            client,
            cache: HashMap::new(),
        }
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
        self.client.execute(&s, p)
    }

    pub fn query(&mut self, sql: &str, p: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query(&s, p)
    }

    pub fn query_opt(&mut self, sql: &str, p: Params<'_>) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, p)
    }

    pub fn query_one(&mut self, sql: &str, p: Params<'_>) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_one(&s, p)
    }

    /// Statements without parameters (transaction control, DDL).
    pub fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.batch_execute(sql)
    }

    pub fn client(&mut self) -> &mut postgres::Client {
        &mut self.client
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
