//! SMART Backend Services: clients with a JWK Set authenticating with `private_key_jwt`, and
//! the `client_credentials` grant.

use crate::{Auth, AuthError, CLOCK_SKEW_SECONDS, Client, OAuthError, Result, User, now, oauth};
use issho_access::{Role, Scopes};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

impl Auth {
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

    /// Authenticate the client of a request to the token, revocation or introspection
    /// endpoint (RFC 6749 §2.3): a backend service — a client with registered keys — by its
    /// `private_key_jwt` assertion (for `audience`, the token endpoint), a public app by its
    /// `client_id`. Answers the client's id, or `invalid_client`.
    pub fn authenticate_client(&self, c: &ClientAuth<'_>, audience: &str) -> Result<String> {
        let bad = |m: &str| oauth(OAuthError::InvalidClient, m);
        if let Some(assertion) = c.assertion {
            let id =
                self.verify_assertion(c.assertion_type.unwrap_or_default(), assertion, audience)?;
            if c.client_id.is_some_and(|given| given != id) {
                return Err(bad("client_id is not the client of the assertion"));
            }
            return Ok(id);
        }
        let id = c
            .client_id
            .ok_or_else(|| bad("the client must identify itself (client_id) or authenticate"))?;
        if self.client(id)?.is_none() {
            return Err(bad("unknown client"));
        }
        if self.client_keys(id)?.is_some() {
            return Err(bad(
                "this client authenticates with a private_key_jwt client assertion",
            ));
        }
        Ok(id.to_string())
    }

    /// The registered JWK Set of a backend service.
    fn client_keys(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT jwks FROM auth_client_keys WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Verify a `private_key_jwt` client assertion (RFC 7523, SMART Backend Services): signed
    /// by one of the client's registered keys, `iss` = `sub` = the client, `aud` =
    /// `audience`, expiring within five minutes, not before a future `nbf`, its `jti` used
    /// once. Answers the client's id; every failure is `invalid_client` (RFC 7523 §3.2).
    fn verify_assertion(
        &self,
        assertion_type: &str,
        assertion: &str,
        audience: &str,
    ) -> Result<String> {
        let bad = |m: &str| oauth(OAuthError::InvalidClient, m);
        if assertion_type != JWT_BEARER {
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
        let jwks = self
            .client_keys(&client_id)?
            .ok_or_else(|| bad("unknown client"))?;
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&jwks).map_err(|_| bad("unknown client"))?;
        let jwk = match &header.kid {
            Some(kid) => jwks.find(kid),
            None => jwks.keys.first(),
        }
        .ok_or_else(|| bad("no registered key for this assertion"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("unusable client key"))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[audience]);
        v.set_issuer(&[&client_id]);
        v.sub = Some(client_id.clone());
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub", "jti"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Value>(assertion, &key, &v)
            .map_err(|e| bad(&format!("client assertion rejected: {e}")))?;
        let exp = data.claims["exp"].as_i64().unwrap_or(0);
        if exp > now() + 300 {
            return Err(bad("client assertions may live five minutes at most"));
        }
        if let Some(nbf) = data.claims.get("nbf") {
            match nbf.as_i64() {
                Some(nbf) if nbf <= now() + CLOCK_SKEW_SECONDS => {}
                Some(_) => return Err(bad("client assertion not valid yet (nbf)")),
                None => return Err(bad("malformed client assertion (nbf)")),
            }
        }
        let jti = data.claims["jti"].as_str().unwrap_or_default().to_string();
        let mut seen = self.assertions.lock().unwrap_or_else(|e| e.into_inner());
        let t = now();
        seen.retain(|_, until| *until > t);
        if seen
            .insert(format!("{client_id}\u{1f}{jti}"), exp + 60)
            .is_some()
        {
            return Err(bad("client assertion replayed (jti already used)"));
        }
        Ok(client_id)
    }

    /// The `client_credentials` grant (SMART Backend Services): the client authenticates with
    /// a `private_key_jwt` assertion whose `aud` is `token_endpoint`, and gets the requested
    /// system scopes it is registered for.
    pub fn client_credentials(
        &self,
        client: &ClientAuth<'_>,
        token_endpoint: &str,
        scope: &str,
    ) -> Result<Value> {
        if client.assertion.is_none() {
            let public = match client.client_id {
                Some(id) => self.client(id)?.is_some() && self.client_keys(id)?.is_none(),
                None => false,
            };
            return Err(if public {
                oauth(
                    OAuthError::UnauthorizedClient,
                    "client_credentials is for backend services (private_key_jwt)",
                )
            } else {
                oauth(OAuthError::InvalidClient, "a client assertion is required")
            });
        }
        let client_id = self.authenticate_client(client, token_endpoint)?;
        let client = self
            .client(&client_id)?
            .ok_or_else(|| oauth(OAuthError::InvalidClient, "unknown client"))?;
        let allowed = Scopes::parse(&client.scopes).map_err(AuthError::Invalid)?;
        let granted = Scopes::parse(scope)
            .map_err(|e| oauth(OAuthError::InvalidScope, e))?
            .within(&allowed);
        if granted.resources.is_empty() {
            return Err(oauth(
                OAuthError::InvalidScope,
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
        self.issue(&service, Some(&granted.to_string()), Some(&client_id))
    }
}

/// How the client of a request authenticated: a `client_id` alone (a public app) and/or a
/// `private_key_jwt` client assertion (a backend service) — the request's form parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientAuth<'a> {
    pub client_id: Option<&'a str>,
    pub assertion_type: Option<&'a str>,
    pub assertion: Option<&'a str>,
}

/// `client_assertion_type` of a `private_key_jwt` assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
