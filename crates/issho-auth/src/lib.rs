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

use issho_access::{Grant, Role, Scopes};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Mutex;

/// Lifetime of an access token.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
/// Keys older than this sign no new tokens (a new key is made); they still verify tokens
/// until `KEY_RETIRE_SECONDS`.
pub const KEY_ROTATE_SECONDS: i64 = 30 * 24 * 3600;
pub const KEY_RETIRE_SECONDS: i64 = KEY_ROTATE_SECONDS + 2 * ACCESS_TOKEN_SECONDS;

#[derive(Debug)]
pub enum AuthError {
    /// The token is missing, malformed, expired, revoked, for another audience, or its
    /// signature does not verify. The text says which, for the `WWW-Authenticate` header
    /// and the OperationOutcome.
    InvalidToken(String),
    /// A user, client or password problem.
    Invalid(String),
    Storage(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::InvalidToken(m) => write!(f, "invalid token: {m}"),
            AuthError::Invalid(m) => f.write_str(m),
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

/// The claims of issho's access tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    scope: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<String>,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    fhir_user: Option<String>,
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

/// A pending authorization (between the login and the code exchange).
#[derive(Debug, Clone)]
struct Pending {
    user: String,
    client: String,
    redirect_uri: String,
    scope: String,
    challenge: String,
    until: i64,
    /// The patient of an EHR launch.
    patient: Option<String>,
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
    verified: Mutex<std::collections::HashMap<String, (Grant, i64)>>,
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

/// A new P-256 key: (PKCS#8 DER private key, base64url x, base64url y).
fn new_p256_key() -> Result<(Vec<u8>, String, String)> {
    let secret = loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AuthError::Storage(e.to_string()))?;
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
    };
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| AuthError::Storage(e.to_string()))?
        .as_bytes()
        .to_vec();
    let point = secret.public_key().to_encoded_point(false);
    let x = b64url(&point.x().map(|x| x.to_vec()).unwrap_or_default());
    let y = b64url(&point.y().map(|y| y.to_vec()).unwrap_or_default());
    Ok((der, x, y))
}

/// An ES256 JWT of `claims` signed with the PKCS#8 key `der`, naming `kid`.
fn sign_with<T: Serialize>(der: &[u8], kid: &str, claims: &T) -> Result<String> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der))
        .map_err(|e| AuthError::Storage(e.to_string()))
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
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        conn.execute_batch(DDL)?;
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
        conn.execute_batch(DDL)?;
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

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key that signs new tokens: the newest, or a new one when it is older than
    /// [`KEY_ROTATE_SECONDS`] (or there is none). Older keys keep verifying until retired.
    fn signing_key(&self) -> Result<(String, Vec<u8>)> {
        let conn = self.conn();
        let newest: Option<(String, i64, Vec<u8>)> = conn
            .query_row(
                "SELECT kid, created, private_pkcs8 FROM auth_keys ORDER BY created DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((kid, created, der)) = newest
            && now() - created < KEY_ROTATE_SECONDS
        {
            return Ok((kid, der));
        }
        drop(conn);
        self.rotate_key()
    }

    /// Make a new signing key (key rotation); returns its id and PKCS#8 DER.
    pub fn rotate_key(&self) -> Result<(String, Vec<u8>)> {
        let (der, x, y) = new_p256_key()?;
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO auth_keys (kid, created, private_pkcs8, x, y) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![kid, now(), der, x, y],
        )?;
        conn.execute(
            "DELETE FROM auth_keys WHERE created < ?1",
            [now() - KEY_RETIRE_SECONDS],
        )?;
        Ok((kid, der))
    }

    /// The public keys as a JWKS (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Result<Value> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT kid, x, y FROM auth_keys ORDER BY created DESC")?;
        let keys: Vec<Value> = st
            .query_map([], |r| {
                Ok(json!({
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                    "kid": r.get::<_, String>(0)?, "x": r.get::<_, String>(1)?, "y": r.get::<_, String>(2)?
                }))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(json!({ "keys": keys }))
    }

    // ---- users -----------------------------------------------------------------------

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

    // ---- clients and the authorization code flow ---------------------------------------

    pub fn put_client(&self, c: &Client) -> Result<()> {
        if c.id.is_empty() || c.redirect_uris.is_empty() {
            return Err(AuthError::Invalid(
                "a client needs an id and at least one redirect URI".into(),
            ));
        }
        Scopes::parse(&c.scopes).map_err(AuthError::Invalid)?;
        self.conn().execute(
            "INSERT OR REPLACE INTO auth_clients (id, name, redirect_uris, scopes) VALUES (?1, ?2, ?3, ?4)",
            params![c.id, c.name, c.redirect_uris.join(" "), c.scopes],
        )?;
        Ok(())
    }

    pub fn client(&self, id: &str) -> Result<Option<Client>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, name, redirect_uris, scopes FROM auth_clients WHERE id = ?1",
                [id],
                |r| {
                    Ok(Client {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        redirect_uris: r
                            .get::<_, String>(2)?
                            .split(' ')
                            .map(str::to_string)
                            .collect(),
                        scopes: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// An EHR launch: `user` (signed in to the EHR, and able to see the patient — checked by
    /// the caller) opens an app on `patient`; the returned token goes in the app's launch URL.
    pub fn new_launch(&self, user: &str, patient: &str) -> Result<String> {
        let token = random_token()?;
        let mut l = self.launches.lock().unwrap_or_else(|e| e.into_inner());
        let t = now();
        l.retain(|_, (_, _, until)| *until > t);
        l.insert(
            token.clone(),
            (user.to_string(), patient.to_string(), t + LAUNCH_SECONDS),
        );
        Ok(token)
    }

    /// The patient of a launch token, when `user` made it and it is still valid.
    pub fn launch_patient(&self, launch: &str, user: &str) -> Result<String> {
        let l = self.launches.lock().unwrap_or_else(|e| e.into_inner());
        match l.get(launch) {
            Some((u, p, until)) if u == user && *until > now() => Ok(p.clone()),
            Some(_) => Err(AuthError::Invalid(
                "this launch belongs to another user or has expired".into(),
            )),
            None => Err(AuthError::Invalid("unknown launch".into())),
        }
    }

    /// [`Auth::authorization_code`] for an EHR launch: the token's patient is the launch's.
    pub fn authorization_code_for_launch(
        &self,
        user: &User,
        client: &Client,
        redirect_uri: &str,
        requested_scope: &str,
        code_challenge: &str,
        launch: &str,
    ) -> Result<String> {
        let patient = self.launch_patient(launch, &user.name)?;
        let code =
            self.authorization_code(user, client, redirect_uri, requested_scope, code_challenge)?;
        if let Some(p) = self
            .codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&code)
        {
            p.patient = Some(patient);
        }
        Ok(code)
    }

    /// After the user signed in and agreed: a single-use code for `client`, bound to the
    /// redirect URI and the PKCE challenge (S256). The scopes are those requested, narrowed
    /// to what both the user and the client may have.
    pub fn authorization_code(
        &self,
        user: &User,
        client: &Client,
        redirect_uri: &str,
        requested_scope: &str,
        code_challenge: &str,
    ) -> Result<String> {
        let requested = Scopes::parse(requested_scope).map_err(AuthError::Invalid)?;
        let user_scopes = Scopes::parse(&user.scopes).map_err(AuthError::Invalid)?;
        let client_scopes = Scopes::parse(&client.scopes).map_err(AuthError::Invalid)?;
        let granted = requested.within(&user_scopes).within(&client_scopes);
        if granted.resources.is_empty() {
            return Err(AuthError::Invalid(format!(
                "none of the requested scopes may be granted to {} through {}",
                user.name, client.id
            )));
        }
        let code = random_token()?;
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let t = now();
        codes.retain(|_, p| p.until > t);
        codes.insert(
            code.clone(),
            Pending {
                user: user.name.clone(),
                client: client.id.clone(),
                redirect_uri: redirect_uri.to_string(),
                scope: granted.to_string(),
                challenge: code_challenge.to_string(),
                until: t + CODE_SECONDS,
                patient: None,
            },
        );
        Ok(code)
    }

    /// The token endpoint's `authorization_code` grant: the code (once), the same client and
    /// redirect URI, and the PKCE verifier whose S256 hash is the challenge.
    pub fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<Value> {
        let bad = |m: &str| AuthError::Invalid(m.to_string());
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(code)
            .ok_or_else(|| bad("unknown, used or expired code"))?;
        if pending.until < now() {
            return Err(bad("expired code"));
        }
        if pending.client != client_id || pending.redirect_uri != redirect_uri {
            return Err(bad("the code was issued to another client or redirect URI"));
        }
        if pkce_s256(code_verifier) != pending.challenge {
            return Err(bad("code_verifier does not match the code_challenge"));
        }
        let mut user = self
            .user(&pending.user)?
            .ok_or_else(|| bad("the user no longer exists"))?;
        if let Some(p) = pending.patient {
            // EHR launch: the patient in context is the launched one.
            user.patient = Some(p);
        }
        self.token_response(&user, client_id, &pending.scope)
    }

    /// Register a backend service (SMART Backend Services): a client authenticating with
    /// `private_key_jwt` against its public keys (`jwks`: a JWK Set, RS384/ES384/ES256),
    /// allowed the system `scopes`.
    pub fn put_service(&self, id: &str, name: &str, jwks: &Value, scopes: &str) -> Result<()> {
        serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(jwks.clone())
            .map_err(|e| AuthError::Invalid(format!("not a JWK Set: {e}")))?;
        let parsed = Scopes::parse(scopes).map_err(AuthError::Invalid)?;
        if parsed
            .resources
            .iter()
            .any(|r| r.context != issho_access::ScopeContext::System)
        {
            return Err(AuthError::Invalid(
                "a backend service gets system/ scopes only".into(),
            ));
        }
        self.put_client(&Client {
            id: id.to_string(),
            name: name.to_string(),
            redirect_uris: vec!["urn:ietf:wg:oauth:2.0:oob".into()],
            scopes: scopes.to_string(),
        })?;
        self.conn().execute(
            "INSERT OR REPLACE INTO auth_client_keys (id, jwks) VALUES (?1, ?2)",
            params![id, jwks.to_string()],
        )?;
        Ok(())
    }

    /// The `client_credentials` grant with a `private_key_jwt` client assertion (SMART
    /// Backend Services): the assertion is signed by one of the client's registered keys,
    /// `iss` = `sub` = the client, `aud` = the token endpoint, expires within five minutes, and
    /// its `jti` is used once.
    pub fn client_credentials(
        &self,
        assertion_type: &str,
        assertion: &str,
        token_endpoint: &str,
        scope: &str,
    ) -> Result<Value> {
        let bad = |m: &str| AuthError::Invalid(m.to_string());
        if assertion_type != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
            return Err(bad("client_assertion_type must be jwt-bearer"));
        }
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| bad("malformed client assertion"))?;
        if !matches!(
            header.alg,
            Algorithm::RS384 | Algorithm::ES384 | Algorithm::ES256 | Algorithm::RS256
        ) {
            return Err(bad(
                "client assertions must be signed with RS384, ES384, ES256 or RS256",
            ));
        }
        // Who claims to be asking (checked against the signature below).
        let unverified: Value = {
            let payload = assertion
                .split('.')
                .nth(1)
                .ok_or_else(|| bad("malformed client assertion"))?;
            let bytes = issho_model::base64::decode(payload)
                .ok_or_else(|| bad("malformed client assertion"))?;
            serde_json::from_slice(&bytes).map_err(|_| bad("malformed client assertion"))?
        };
        let client_id = unverified["iss"].as_str().unwrap_or_default().to_string();
        let jwks: Option<String> = self
            .conn()
            .query_row(
                "SELECT jwks FROM auth_client_keys WHERE id = ?1",
                [&client_id],
                |r| r.get(0),
            )
            .optional()?;
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&jwks.ok_or_else(|| bad("unknown client"))?)
                .map_err(|_| bad("unknown client"))?;
        let jwk = match &header.kid {
            Some(kid) => jwks.find(kid),
            None => jwks.keys.first(),
        }
        .ok_or_else(|| bad("no registered key for this assertion"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("unusable client key"))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[token_endpoint]);
        v.set_issuer(&[&client_id]);
        v.sub = Some(client_id.clone());
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub", "jti"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Value>(assertion, &key, &v)
            .map_err(|e| AuthError::Invalid(format!("client assertion rejected: {e}")))?;
        let exp = data.claims["exp"].as_i64().unwrap_or(0);
        if exp > now() + 300 {
            return Err(bad("client assertions may live five minutes at most"));
        }
        let jti = data.claims["jti"].as_str().unwrap_or_default().to_string();
        {
            let mut seen = self.assertions.lock().unwrap_or_else(|e| e.into_inner());
            let t = now();
            seen.retain(|_, until| *until > t);
            if seen
                .insert(format!("{client_id}\u{1f}{jti}"), exp + 60)
                .is_some()
            {
                return Err(bad("client assertion replayed (jti already used)"));
            }
        }
        let client = self
            .client(&client_id)?
            .ok_or_else(|| bad("unknown client"))?;
        let allowed = Scopes::parse(&client.scopes).map_err(AuthError::Invalid)?;
        let granted = Scopes::parse(scope)
            .map_err(AuthError::Invalid)?
            .within(&allowed);
        if granted.resources.is_empty() {
            return Err(bad(
                "none of the requested scopes may be granted to this client",
            ));
        }
        let service = User {
            name: client_id.clone(),
            role: Role::Service,
            patient: None,
            organization: None,
            fhir_user: None,
            scopes: client.scopes.clone(),
            display: client.name.clone(),
        };
        self.issue_for_user(&service, Some(&granted.to_string()))
    }

    /// The `refresh_token` grant: a new access token (and a new refresh token; the old one is
    /// spent) with the same or fewer scopes.
    pub fn refresh(
        &self,
        refresh_token: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<Value> {
        let bad = |m: &str| AuthError::Invalid(m.to_string());
        let hash = pkce_s256(refresh_token);
        let row: Option<(String, String, String, i64)> = self
            .conn()
            .query_row(
                "SELECT user, client, scope, until FROM auth_refresh WHERE hash = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (user, client, granted, until) = row.ok_or_else(|| bad("unknown refresh token"))?;
        let launched: Option<String> = self
            .conn()
            .query_row(
                "SELECT patient FROM auth_refresh_patient WHERE hash = ?1",
                [&hash],
                |r| r.get(0),
            )
            .optional()?;
        self.conn()
            .execute("DELETE FROM auth_refresh WHERE hash = ?1", [&hash])?;
        self.conn()
            .execute("DELETE FROM auth_refresh_patient WHERE hash = ?1", [&hash])?;
        if until < now() || client != client_id {
            return Err(bad("expired refresh token, or issued to another client"));
        }
        let granted = Scopes::parse(&granted).map_err(AuthError::Invalid)?;
        let scope = match scope {
            Some(s) => Scopes::parse(s)
                .map_err(AuthError::Invalid)?
                .within(&granted),
            None => granted,
        };
        let mut user = self
            .user(&user)?
            .ok_or_else(|| bad("the user no longer exists"))?;
        if launched.is_some() {
            user.patient = launched;
        }
        self.token_response(&user, client_id, &scope.to_string())
    }

    /// A token response for `user` with exactly `scope` (already narrowed), with a refresh
    /// token when `offline_access` or `online_access` was granted.
    fn token_response(&self, user: &User, client_id: &str, scope: &str) -> Result<Value> {
        let mut resp = self.issue_for_user(user, Some(scope))?;
        let scopes = Scopes::parse(scope).map_err(AuthError::Invalid)?;
        if scopes.has("offline_access") || scopes.has("online_access") {
            let refresh = random_token()?;
            self.conn().execute(
                "INSERT INTO auth_refresh (hash, user, client, scope, until) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![pkce_s256(&refresh), user.name, client_id, scope, now() + REFRESH_SECONDS],
            )?;
            if let Some(p) = &user.patient {
                self.conn().execute(
                    "INSERT OR REPLACE INTO auth_refresh_patient (hash, patient) VALUES (?1, ?2)",
                    params![pkce_s256(&refresh), p],
                )?;
            }
            resp["refresh_token"] = json!(refresh);
        }
        Ok(resp)
    }

    /// RFC 7662 introspection of an access token.
    pub fn introspect(&self, token: &str) -> Value {
        match self.verify(token) {
            Ok(g) => {
                let mut v = json!({
                    "active": true, "scope": g.scopes.to_string(), "sub": g.subject,
                    "role": g.role.code(), "iss": self.issuer, "jti": g.token_id,
                });
                if let Some(p) = g.patient {
                    v["patient"] = json!(p);
                }
                if let Some(f) = g.fhir_user {
                    v["fhirUser"] = json!(f);
                }
                v
            }
            Err(_) => json!({"active": false}),
        }
    }

    /// RFC 7009 revocation: an access token (by its id) or a refresh token. Unknown tokens
    /// are not an error.
    pub fn revoke_token(&self, token: &str) -> Result<()> {
        if let Ok(g) = self.verify(token) {
            return self.revoke(&g.token_id);
        }
        self.conn().execute(
            "DELETE FROM auth_refresh WHERE hash = ?1",
            [pkce_s256(token)],
        )?;
        Ok(())
    }

    // ---- tokens ----------------------------------------------------------------------

    /// An access token for `user` with `requested` scopes narrowed to what the user may have
    /// (all of them when `requested` is `None`). Returns the SMART token response.
    pub fn issue_for_user(&self, user: &User, requested: Option<&str>) -> Result<Value> {
        let allowed = Scopes::parse(&user.scopes).map_err(AuthError::Invalid)?;
        let scopes = match requested {
            Some(r) => Scopes::parse(r)
                .map_err(AuthError::Invalid)?
                .within(&allowed),
            None => allowed,
        };
        if scopes.resources.is_empty() {
            return Err(AuthError::Invalid(format!(
                "none of the requested scopes may be granted to {}",
                user.name
            )));
        }
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.name.clone(),
            aud: self.issuer.clone(),
            iat: now(),
            exp: now() + ACCESS_TOKEN_SECONDS,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            scope: scopes.to_string(),
            role: user.role.code().to_string(),
            patient: user.patient.clone(),
            organization: user.organization.clone(),
            fhir_user: user.fhir_user.clone(),
        };
        let token = self.sign(&claims)?;
        let mut resp = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": claims.scope,
        });
        if let Some(p) = &user.patient {
            resp["patient"] = json!(p);
        }
        if let Some(f) = &user.fhir_user {
            resp["fhirUser"] = json!(f);
        }
        Ok(resp)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        let (kid, der) = self.signing_key()?;
        sign_with(&der, &kid, claims)
    }

    /// Verify a bearer token: ES256 only (never `none` or a symmetric algorithm), a key of
    /// this deployment, not expired, issued for this server, not revoked.
    pub fn verify(&self, token: &str) -> Result<Grant> {
        if let Some((g, exp)) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            && *exp > now()
        {
            return Ok(g.clone());
        }
        let (grant, exp) = self.verify_signed(token)?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            let t = now();
            cache.retain(|_, (_, e)| *e > t);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), (grant.clone(), exp));
        Ok(grant)
    }

    fn verify_signed(&self, token: &str) -> Result<(Grant, i64)> {
        let bad = |m: &str| AuthError::InvalidToken(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
        if header.alg != Algorithm::ES256 {
            return Err(bad("unsupported signature algorithm"));
        }
        let kid = header.kid.ok_or_else(|| bad("no key id"))?;
        let key: Option<(String, String)> = self
            .conn()
            .query_row("SELECT x, y FROM auth_keys WHERE kid = ?1", [&kid], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let (x, y) = key.ok_or_else(|| bad("unknown signing key"))?;
        let dk = DecodingKey::from_ec_components(&x, &y).map_err(|_| bad("bad key"))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[&self.issuer]);
        v.set_issuer(&[&self.issuer]);
        v.leeway = 5;
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &dk, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => bad("expired"),
                K::InvalidAudience => bad("issued for another server"),
                K::InvalidIssuer => bad("issued by another server"),
                K::InvalidSignature => bad("signature does not verify"),
                _ => bad("malformed"),
            }
        })?;
        let c = data.claims;
        let revoked: Option<i64> = self
            .conn()
            .query_row(
                "SELECT until FROM auth_revoked WHERE jti = ?1",
                [&c.jti],
                |r| r.get(0),
            )
            .optional()?;
        if revoked.is_some() {
            return Err(bad("revoked"));
        }
        let role = Role::from_code(&c.role).ok_or_else(|| bad("unknown role"))?;
        let scopes = Scopes::parse(&c.scope).map_err(|_| bad("malformed scope"))?;
        Ok((
            Grant {
                subject: c.sub,
                role,
                patient: c.patient,
                organization: c.organization,
                fhir_user: c.fhir_user,
                scopes,
                token_id: c.jti,
            },
            c.exp,
        ))
    }

    /// Revoke a token (by its `jti`) until it would have expired anyway.
    pub fn revoke(&self, token_id: &str) -> Result<()> {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (g, _)| g.token_id != token_id);
        let conn = self.conn();
        conn.execute(
            "INSERT OR REPLACE INTO auth_revoked (jti, until) VALUES (?1, ?2)",
            params![token_id, now() + ACCESS_TOKEN_SECONDS + 60],
        )?;
        conn.execute("DELETE FROM auth_revoked WHERE until < ?1", [now()])?;
        Ok(())
    }

    /// Sign arbitrary claims (tests of expiry and audience use it).
    #[doc(hidden)]
    pub fn sign_raw(&self, claims: &Value) -> Result<String> {
        self.sign(claims)
    }
}

/// A key pair for a backend service in tests and tools: (PKCS#8 DER private key, public JWK).
#[doc(hidden)]
pub fn new_es256_client_key(kid: &str) -> Result<(Vec<u8>, Value)> {
    let (der, x, y) = new_p256_key()?;
    let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": x, "y": y});
    Ok((der, jwk))
}

/// Sign a client assertion (tests and tools).
#[doc(hidden)]
pub fn sign_es256(der: &[u8], kid: &str, claims: &Value) -> Result<String> {
    sign_with(der, kid, claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_service_client_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::open(dir.path(), "http://h/fhir").unwrap();
        let (der, jwk) = new_es256_client_key("k1").unwrap();
        let jwks = json!({"keys": [jwk]});
        assert!(
            a.put_service("svc", "Lab system", &jwks, "patient/*.rs")
                .is_err()
        );
        a.put_service(
            "svc",
            "Lab system",
            &jwks,
            "system/*.rs system/Observation.cruds",
        )
        .unwrap();
        let endpoint = "http://h/auth/token";
        let claims = |jti: &str, exp: i64, aud: &str| json!({"iss": "svc", "sub": "svc", "aud": aud, "exp": exp, "jti": jti});
        let t = |c: &Value| sign_es256(&der, "k1", c).unwrap();
        const JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let ok = a
            .client_credentials(
                JWT,
                &t(&claims("j1", now() + 120, endpoint)),
                endpoint,
                "system/*.rs user/*.rs",
            )
            .unwrap();
        assert_eq!(ok["scope"], "system/*.rs");
        let g = a.verify(ok["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(g.role, Role::Service);
        // Replay, wrong audience, too long-lived, expired, another key, unknown client.
        assert!(
            a.client_credentials(
                JWT,
                &t(&claims("j1", now() + 120, endpoint)),
                endpoint,
                "system/*.rs"
            )
            .is_err()
        );
        assert!(
            a.client_credentials(
                JWT,
                &t(&claims("j2", now() + 120, "http://other/token")),
                endpoint,
                "system/*.rs"
            )
            .is_err()
        );
        assert!(
            a.client_credentials(
                JWT,
                &t(&claims("j3", now() + 3600, endpoint)),
                endpoint,
                "system/*.rs"
            )
            .is_err()
        );
        assert!(
            a.client_credentials(
                JWT,
                &t(&claims("j4", now() - 120, endpoint)),
                endpoint,
                "system/*.rs"
            )
            .is_err()
        );
        let (other, _) = new_es256_client_key("k1").unwrap();
        let forged = sign_es256(&other, "k1", &claims("j5", now() + 120, endpoint)).unwrap();
        assert!(
            a.client_credentials(JWT, &forged, endpoint, "system/*.rs")
                .is_err()
        );
        let mut c = claims("j6", now() + 120, endpoint);
        c["iss"] = json!("nobody");
        c["sub"] = json!("nobody");
        assert!(
            a.client_credentials(JWT, &t(&c), endpoint, "system/*.rs")
                .is_err()
        );
        assert!(
            a.client_credentials(
                "password",
                &t(&claims("j7", now() + 120, endpoint)),
                endpoint,
                "system/*.rs"
            )
            .is_err()
        );
    }

    fn user() -> User {
        User {
            name: "hanako".into(),
            role: Role::Patient,
            patient: Some("p1".into()),
            organization: None,
            fhir_user: Some("Patient/p1".into()),
            scopes: "openid fhirUser patient/*.rs".into(),
            display: "花子".into(),
        }
    }

    #[test]
    fn issue_verify_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::open(dir.path(), "http://localhost:8080/fhir").unwrap();
        a.put_user(&user(), "correct horse").unwrap();
        assert!(a.check_password("hanako", "wrong one").is_err());
        assert!(a.check_password("nobody", "correct horse").is_err());
        let u = a.check_password("hanako", "correct horse").unwrap();
        // Password guessing: after MAX_FAILURES wrong ones the name is locked for a while,
        // even for the right password.
        for _ in 0..MAX_FAILURES {
            assert!(a.check_password("hanako", "guess").is_err());
        }
        let locked = a.check_password("hanako", "correct horse").unwrap_err();
        assert!(locked.to_string().contains("too many"), "{locked}");
        let resp = a
            .issue_for_user(&u, Some("patient/Observation.rs patient/Patient.cruds"))
            .unwrap();
        assert_eq!(resp["scope"], "patient/Observation.rs patient/Patient.rs");
        assert_eq!(resp["patient"], "p1");
        let tok = resp["access_token"].as_str().unwrap();
        let g = a.verify(tok).unwrap();
        assert_eq!(g.subject, "hanako");
        assert_eq!(g.patient.as_deref(), Some("p1"));
        assert_eq!(g.role, Role::Patient);
        // Tampered payload: the signature no longer verifies.
        let parts: Vec<&str> = tok.split('.').collect();
        let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
        assert!(a.verify(&forged).is_err());
        // alg=none
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(matches!(a.verify(&none), Err(AuthError::InvalidToken(_))));
        // Expired and wrong audience.
        let base = json!({"iss": a.issuer(), "sub": "hanako", "aud": a.issuer(), "iat": now(),
            "exp": now() + 60, "jti": "j1", "scope": "patient/*.rs", "role": "patient", "patient": "p1"});
        let mut exp = base.clone();
        exp["exp"] = json!(now() - 3600);
        assert!(
            a.verify(&a.sign_raw(&exp).unwrap())
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let mut aud = base.clone();
        aud["aud"] = json!("https://other.example/fhir");
        assert!(
            a.verify(&a.sign_raw(&aud).unwrap())
                .unwrap_err()
                .to_string()
                .contains("another server")
        );
        // A key of another deployment.
        let dir2 = tempfile::tempdir().unwrap();
        let other = Auth::open(dir2.path(), "http://localhost:8080/fhir").unwrap();
        assert!(a.verify(&other.sign_raw(&base).unwrap()).is_err());
        // Revocation.
        a.revoke(&g.token_id).unwrap();
        assert!(a.verify(tok).unwrap_err().to_string().contains("revoked"));
        // Rotation: old tokens keep verifying, new ones use the new key.
        let t1 = a.sign_raw(&base).unwrap();
        a.rotate_key().unwrap();
        assert!(a.verify(&t1).is_ok());
        assert_eq!(a.jwks().unwrap()["keys"].as_array().unwrap().len(), 2);
    }
}
