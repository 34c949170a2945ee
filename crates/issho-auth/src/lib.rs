//! Authentication for one deployment: the server's signing keys (ES256, rotated, published as a
//! JWKS), SMART access tokens (JWTs) issued and verified here, and the users and clients of
//! the deployment with argon2 password hashes.
//!
//! Everything lives in `auth.db` in the data directory, apart from the FHIR store: no FHIR
//! interaction can read or change it. Private keys never leave that file; tokens, passwords
//! and keys are never logged.
//!
//! A token's claims carry what the access gate needs ([`issho_access::Grant`]): subject, role,
//! patient in context, organization, `fhirUser`, scopes and a token id (`jti`) that can be
//! revoked.

mod explain;
mod flows;
mod grants;
mod keys;
mod service;
#[cfg(test)]
mod tests;
mod tokens;
mod users;

pub use explain::explain;
pub use flows::AuthorizationRequest;
pub use grants::AllowedApp;
pub use keys::{new_es256_client_key, sign_es256, verify_es256_with_jwks};
pub use service::{ClientAuth, JWT_BEARER};

use flows::Pending;
use issho_access::{Grant, Role};
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// Lifetime of an access token.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
/// Keys older than this sign no new tokens (a new key is made); they still verify tokens
/// until `KEY_RETIRE_SECONDS`.
pub const KEY_ROTATE_SECONDS: i64 = 30 * 24 * 3600;
pub const KEY_RETIRE_SECONDS: i64 = KEY_ROTATE_SECONDS + 2 * ACCESS_TOKEN_SECONDS;
/// Clock difference tolerated on `nbf` (tokens and client assertions not valid yet).
pub const CLOCK_SKEW_SECONDS: i64 = 60;

#[derive(Debug)]
pub enum AuthError {
    /// The token is missing, malformed, expired, not valid yet, revoked, for another audience,
    /// or its signature does not verify. The text says which, for the `WWW-Authenticate`
    /// header and the OperationOutcome.
    InvalidToken(String),
    /// A user, client or password problem.
    Invalid(String),
    /// A refused OAuth 2.0 request: the error code the endpoint answers with, and why.
    OAuth(OAuthError, String),
    Storage(String),
}

/// The OAuth 2.0 error codes of the token, revocation and introspection endpoints (RFC 6749
/// §5.2, RFC 7009 §2.2.1), each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest,
    /// Client authentication failed (unknown client, no or a bad client assertion).
    InvalidClient,
    /// The code or refresh token is unknown, expired, used, or another client's.
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl OAuthError {
    pub fn code(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
        }
    }

    /// 401 for a client that failed to authenticate, 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            OAuthError::InvalidClient => 401,
            _ => 400,
        }
    }
}

impl AuthError {
    /// What an OAuth endpoint answers for this error: (HTTP status, `error`,
    /// `error_description`).
    pub fn oauth(&self) -> (u16, &'static str, String) {
        match self {
            AuthError::OAuth(e, m) => (e.status(), e.code(), m.clone()),
            AuthError::InvalidToken(_) => (400, "invalid_grant", self.to_string()),
            AuthError::Invalid(m) => (400, "invalid_request", m.clone()),
            AuthError::Storage(_) => (500, "server_error", "internal error".into()),
        }
    }
}

/// An [`AuthError::OAuth`].
pub(crate) fn oauth(e: OAuthError, m: impl Into<String>) -> AuthError {
    AuthError::OAuth(e, m.into())
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::InvalidToken(m) => write!(f, "invalid token: {m}"),
            AuthError::Invalid(m) | AuthError::OAuth(_, m) => f.write_str(m),
            AuthError::Storage(m) => write!(f, "authentication storage: {m}"),
        }
    }
}

impl std::error::Error for AuthError {}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Storage(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, AuthError>;

/// A user of the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// For a patient: their Patient id.
    pub patient: Option<String>,
    /// For a practitioner: `Organization/id` they act for.
    pub organization: Option<String>,
    /// `Practitioner/id`, `Patient/id`.
    pub fhir_user: Option<String>,
    /// The widest scopes this user may be given.
    pub scopes: String,
    pub display: String,
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS auth_keys (
  kid TEXT PRIMARY KEY, created INTEGER NOT NULL, private_pkcs8 BLOB NOT NULL,
  x TEXT NOT NULL, y TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_users (
  name TEXT PRIMARY KEY, password TEXT NOT NULL, role TEXT NOT NULL, patient TEXT,
  organization TEXT, fhir_user TEXT, scopes TEXT NOT NULL, display TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_revoked (jti TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_clients (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, redirect_uris TEXT NOT NULL, scopes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_client_keys (id TEXT PRIMARY KEY, jwks TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_refresh_patient (hash TEXT PRIMARY KEY, patient TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_refresh (
  hash TEXT PRIMARY KEY, user TEXT NOT NULL, client TEXT NOT NULL, scope TEXT NOT NULL,
  until INTEGER NOT NULL);
";

/// Lifetime of an authorization code.
pub const CODE_SECONDS: i64 = 60;
/// Lifetime of a refresh token (each use replaces it).
pub const REFRESH_SECONDS: i64 = 30 * 24 * 3600;

/// A registered SMART app (a public client: authorization code with PKCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// Exact redirect URIs; a loopback one (`http://127.0.0.1/…`, `http://localhost/…`)
    /// matches on any port (RFC 8252 §7.3).
    pub redirect_uris: Vec<String>,
    /// The widest scopes the app may get.
    pub scopes: String,
}

impl Client {
    /// Whether `uri` is one of this client's redirect URIs.
    pub fn accepts_redirect(&self, uri: &str) -> bool {
        let strip_port = |u: &str| -> Option<String> {
            let rest = u.strip_prefix("http://")?;
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let name = host.split(':').next()?;
            matches!(name, "127.0.0.1" | "localhost" | "[::1]")
                .then(|| format!("http://{name}/{path}"))
        };
        self.redirect_uris.iter().any(|r| {
            r == uri || matches!((strip_port(r), strip_port(uri)), (Some(a), Some(b)) if a == b)
        })
    }
}

/// Lifetime of an EHR launch context.
pub const LAUNCH_SECONDS: i64 = 300;

/// The authentication store of a data directory.
pub struct Auth {
    conn: Mutex<Connection>,
    /// The token issuer and audience: the server's FHIR base URL.
    issuer: String,
    /// Tokens already verified (token → grant, expiry): a signature is checked once per
    /// token, not once per request. Revocation removes entries.
    pub(crate) verified: Mutex<std::collections::HashMap<String, (Grant, i64)>>,
    /// Authorization codes not yet exchanged (short-lived, single use).
    codes: Mutex<std::collections::HashMap<String, Pending>>,
    /// Client assertion ids seen (replay protection), with their expiry.
    assertions: Mutex<std::collections::HashMap<String, i64>>,
    /// Failed sign-ins per user name: (count, window start). Too many lock the name for a
    /// while (password guessing).
    failures: Mutex<std::collections::HashMap<String, (u32, i64)>>,
    /// EHR launch contexts: launch token → (user who launched, patient, until).
    launches: Mutex<std::collections::HashMap<String, (String, String, i64)>>,
}

/// Failed sign-ins allowed per user name within [`FAILURE_WINDOW`] seconds.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: i64 = 900;

/// Most verified tokens remembered.
const VERIFIED_CACHE: usize = 10_000;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Scopes as granted: each once (the first kept, order preserved), and `launch/patient` only
/// when a patient is in context.
fn granted_in_context(s: issho_access::Scopes, patient_in_context: bool) -> issho_access::Scopes {
    let mut seen = std::collections::HashSet::new();
    issho_access::Scopes {
        other: s
            .other
            .into_iter()
            .filter(|o| (patient_in_context || o != "launch/patient") && seen.insert(o.clone()))
            .collect(),
        resources: s
            .resources
            .into_iter()
            .filter(|r| seen.insert(r.to_string()))
            .collect(),
    }
}

/// 32 random bytes, base64url.
fn random_token() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AuthError::Storage(e.to_string()))?;
    Ok(b64url(&b))
}

/// base64url(SHA-256(s)) without padding: the PKCE S256 transform (also used to store
/// refresh tokens by hash).
pub fn pkce_s256(s: &str) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(s.as_bytes()))
}

/// base64url without padding (JWT, JWK, PKCE).
fn b64url(bytes: &[u8]) -> String {
    issho_model::base64::encode(bytes, true)
        .trim_end_matches('=')
        .to_string()
}

impl std::fmt::Debug for Auth {
    /// Never shows keys or hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Auth {
    /// Open (or create) `auth.db` in `dir`; `issuer` is the FHIR base URL tokens are for.
    pub fn open(dir: &Path, issuer: &str) -> Result<Auth> {
        std::fs::create_dir_all(dir).map_err(|e| AuthError::Storage(e.to_string()))?;
        let path = dir.join("auth.db");
        let conn = Connection::open(&path)?;
        // Several processes may share the data directory (on a PostgreSQL store).
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        conn.execute_batch(DDL)?;
        conn.execute_batch(grants::DDL)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        let issuer = issuer.trim_end_matches('/').to_string();
        conn.execute(
            "INSERT OR REPLACE INTO auth_meta (name, value) VALUES ('issuer', ?1)",
            [&issuer],
        )?;
        Ok(Auth::with(conn, issuer))
    }

    fn with(conn: Connection, issuer: String) -> Auth {
        Auth {
            conn: Mutex::new(conn),
            issuer,
            verified: Mutex::default(),
            codes: Mutex::default(),
            assertions: Mutex::default(),
            failures: Mutex::default(),
            launches: Mutex::default(),
        }
    }

    /// Open the store of a data directory with the issuer the server last ran with (for
    /// operator tools such as `issho token`); `None` when the server never ran there.
    pub fn open_existing(dir: &Path) -> Result<Option<Auth>> {
        let path = dir.join("auth.db");
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(DDL)?;
        conn.execute_batch(grants::DDL)?;
        let issuer: Option<String> = conn
            .query_row(
                "SELECT value FROM auth_meta WHERE name = 'issuer'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(issuer.map(|issuer| Auth::with(conn, issuer)))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}
