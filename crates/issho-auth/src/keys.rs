//! The server's signing keys: ES256 (P-256), rotated, published as a JWKS.

use crate::{Auth, AuthError, KEY_RETIRE_SECONDS, KEY_ROTATE_SECONDS, Result, b64url, now};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

/// A new P-256 key: (PKCS#8 DER private key, base64url x, base64url y).
pub(crate) fn new_p256_key() -> Result<(Vec<u8>, String, String)> {
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
pub(crate) fn sign_with<T: Serialize>(der: &[u8], kid: &str, claims: &T) -> Result<String> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der))
        .map_err(|e| AuthError::Storage(e.to_string()))
}

impl Auth {
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

    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        let (kid, der) = self.signing_key()?;
        sign_with(&der, &kid, claims)
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

/// The claims of an ES256 JWT whose signature verifies with a key of `jwks` (a JWK Set, as
/// published at `jwks.json`), found by the token's `kid`. Only the signature is checked, not
/// the claims: what a relying party does first with an `id_token` (tests and tools).
#[doc(hidden)]
pub fn verify_es256_with_jwks(jwks: &Value, token: &str) -> Result<Value> {
    let bad = |m: &str| AuthError::InvalidToken(m.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
    if header.alg != Algorithm::ES256 {
        return Err(bad("not signed with ES256"));
    }
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|_| bad("not a JWK Set"))?;
    let jwk = header
        .kid
        .as_deref()
        .and_then(|kid| set.find(kid))
        .ok_or_else(|| bad("no key for the token's kid"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| bad("unusable key"))?;
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims::<&str>(&[]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|_| bad("signature does not verify"))
}
