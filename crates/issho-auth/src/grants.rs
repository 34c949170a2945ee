//! The apps a user allowed: every authorization-code grant is remembered per user and client
//! (`auth_grants`: scope, first and last time), so that a person can see which apps may act for
//! them and withdraw one. Withdrawing spends the app's refresh tokens for that user and makes
//! every access token issued to it for that user before that moment invalid
//! (`auth_withdrawn`, checked when a token is verified).

use crate::{Auth, Result, now};
use rusqlite::{OptionalExtension, params};

/// One app a user allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedApp {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    /// When it was first and last allowed (seconds since the epoch).
    pub first: i64,
    pub last: i64,
}

pub(crate) const DDL: &str = "
CREATE TABLE IF NOT EXISTS auth_grants (
  user TEXT NOT NULL, client TEXT NOT NULL, scope TEXT NOT NULL,
  first INTEGER NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (user, client));
CREATE TABLE IF NOT EXISTS auth_withdrawn (
  user TEXT NOT NULL, client TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (user, client));
";

impl Auth {
    /// Remember that `user` allowed `client` the `scope` (at a code's exchange).
    pub(crate) fn remember_grant(&self, user: &str, client: &str, scope: &str) -> Result<()> {
        let t = now();
        self.conn().execute(
            "INSERT INTO auth_grants (user, client, scope, first, last) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (user, client) DO UPDATE SET scope = excluded.scope, last = excluded.last",
            params![user, client, scope, t],
        )?;
        Ok(())
    }

    /// The apps `user` allowed (and did not withdraw since), newest first.
    pub fn allowed_apps(&self, user: &str) -> Result<Vec<AllowedApp>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT g.client, COALESCE(c.name, g.client), g.scope, g.first, g.last
             FROM auth_grants g LEFT JOIN auth_clients c ON c.id = g.client
             WHERE g.user = ?1 ORDER BY g.last DESC",
        )?;
        let rows = st.query_map([user], |r| {
            Ok(AllowedApp {
                client_id: r.get(0)?,
                client_name: r.get(1)?,
                scope: r.get(2)?,
                first: r.get(3)?,
                last: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Withdraw what `user` allowed `client`: its refresh tokens for the user are spent and its
    /// access tokens for the user issued until now stop working. Answers whether there was
    /// such a grant.
    pub fn withdraw_app(&self, user: &str, client: &str) -> Result<bool> {
        let t = now();
        let had = {
            let conn = self.conn();
            let n = conn.execute(
                "DELETE FROM auth_grants WHERE user = ?1 AND client = ?2",
                params![user, client],
            )?;
            conn.execute(
                "DELETE FROM auth_refresh WHERE user = ?1 AND client = ?2",
                params![user, client],
            )?;
            conn.execute(
                "INSERT INTO auth_withdrawn (user, client, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user, client) DO UPDATE SET at = excluded.at",
                params![user, client, t],
            )?;
            n > 0
        };
        // Tokens verified before are not trusted from the cache any more.
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(had)
    }

    /// Whether a token of `user` for `client` issued at `iat` was withdrawn since.
    pub(crate) fn withdrawn(&self, user: &str, client: &str, iat: i64) -> Result<bool> {
        let at: Option<i64> = self
            .conn()
            .query_row(
                "SELECT at FROM auth_withdrawn WHERE user = ?1 AND client = ?2",
                params![user, client],
                |r| r.get(0),
            )
            .optional()?;
        Ok(at.is_some_and(|at| iat <= at))
    }
}
