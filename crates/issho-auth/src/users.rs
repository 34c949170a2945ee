//! Users of the deployment: argon2id password hashes, sign-in with a lock after repeated
//! failures.

use crate::{Auth, AuthError, FAILURE_WINDOW, MAX_FAILURES, Result, User, now};
use issho_access::{Role, Scopes};
use rusqlite::{OptionalExtension, params};

impl Auth {
    /// Add or replace a user; the password is stored as an argon2id hash.
    pub fn put_user(&self, user: &User, password: &str) -> Result<()> {
        if user.name.is_empty() || password.len() < 8 {
            return Err(AuthError::Invalid(
                "a user needs a name and a password of at least 8 characters".into(),
            ));
        }
        Scopes::parse(&user.scopes).map_err(AuthError::Invalid)?;
        use argon2::PasswordHasher;
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| AuthError::Storage(e.to_string()))?
            .to_string();
        self.conn().execute(
            "INSERT OR REPLACE INTO auth_users (name, password, role, patient, organization, fhir_user, scopes, display) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                user.name,
                hash,
                user.role.code(),
                user.patient,
                user.organization,
                user.fhir_user,
                user.scopes,
                user.display
            ],
        )?;
        Ok(())
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, role, patient, organization, fhir_user, scopes, display FROM auth_users WHERE name = ?1",
                [name],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        role: Role::from_code(&r.get::<_, String>(1)?).unwrap_or(Role::Patient),
                        patient: r.get(2)?,
                        organization: r.get(3)?,
                        fhir_user: r.get(4)?,
                        scopes: r.get(5)?,
                        display: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Check a user's password (constant-time comparison inside argon2). The error does not
    /// say whether the user exists.
    pub fn check_password(&self, name: &str, password: &str) -> Result<User> {
        let t = now();
        {
            let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((n, since)) = f.get(name)
                && *n >= MAX_FAILURES
                && t - since < FAILURE_WINDOW
            {
                return Err(AuthError::Invalid(format!(
                    "too many failed sign-ins for this user; try again in {} minutes",
                    (FAILURE_WINDOW - (t - since)) / 60 + 1
                )));
            }
        }
        let r = self.check_password_once(name, password);
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match &r {
            Ok(_) => {
                f.remove(name);
            }
            Err(_) => {
                let e = f.entry(name.to_string()).or_insert((0, t));
                if t - e.1 >= FAILURE_WINDOW {
                    *e = (0, t);
                }
                e.0 += 1;
            }
        }
        r
    }

    fn check_password_once(&self, name: &str, password: &str) -> Result<User> {
        let stored: Option<String> = self
            .conn()
            .query_row(
                "SELECT password FROM auth_users WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        let bad = || AuthError::Invalid("unknown user or wrong password".into());
        let Some(stored) = stored else {
            // Spend comparable time when the user does not exist.
            use argon2::PasswordHasher;
            let _ = argon2::Argon2::default().hash_password(password.as_bytes());
            return Err(bad());
        };
        use argon2::PasswordVerifier;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), stored.as_str())
            .map_err(|_| bad())?;
        self.user(name)?.ok_or_else(bad)
    }
}
