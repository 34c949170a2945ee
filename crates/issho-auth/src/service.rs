//! SMART Backend Services: clients with a JWK Set authenticating with `private_key_jwt`, and
//! the `client_credentials` grant.

use crate::{Auth, AuthError, Client, Result, User, now};
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
}
