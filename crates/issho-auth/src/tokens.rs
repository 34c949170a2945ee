//! SMART access tokens: issued for a user with narrowed scopes, verified (ES256 only, this
//! deployment's keys, issuer, audience, expiry, revocation), introspected and revoked.

use crate::{
    ACCESS_TOKEN_SECONDS, Auth, AuthError, CLOCK_SKEW_SECONDS, OAuthError, Result, User,
    VERIFIED_CACHE, granted_in_context, now, oauth, pkce_s256,
};
use issho_access::{Grant, Role, Scopes};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// Not before: issho sets none, but a token carrying one is refused until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    /// The client the token was issued to (none for an operator's `issho token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

/// The claims of an OpenID Connect `id_token` (OpenID Connect Core §2, SMART App Launch
/// `fhirUser`).
#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    fhir_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl Auth {
    /// An OpenID Connect `id_token` for `user` signed in to `client` (ES256, this
    /// deployment's key, published in the JWKS): `iss` this server, `sub` the user, `aud` the
    /// client, the request's `nonce`, and with `fhir_user` granted the absolute URL of the
    /// user's FHIR resource (`fhirUser`).
    pub(crate) fn id_token(
        &self,
        user: &User,
        client: &str,
        fhir_user: bool,
        nonce: Option<&str>,
    ) -> Result<String> {
        let t = now();
        let fhir_user = user.fhir_user.as_deref().filter(|_| fhir_user).map(|f| {
            if f.starts_with("http://") || f.starts_with("https://") {
                f.to_string()
            } else {
                format!("{}/{f}", self.issuer)
            }
        });
        self.sign(&IdClaims {
            iss: &self.issuer,
            sub: &user.name,
            aud: client,
            iat: t,
            exp: t + ACCESS_TOKEN_SECONDS,
            fhir_user,
            nonce,
        })
    }

    /// RFC 7662 introspection of `token` for the holder of the access token `caller`: a
    /// resource server (a backend service) or an administrator learns about any token;
    /// anyone else only about tokens of their own user and client — any other is
    /// `active: false`, as an unknown one is (§2.2). A `caller` token that does not verify
    /// is an error.
    pub fn introspect(&self, caller: &str, token: &str) -> Result<Value> {
        let who = self.verified_claims(caller)?;
        let Ok(c) = self.verified_claims(token) else {
            return Ok(json!({"active": false}));
        };
        let resource_server = matches!(
            Role::from_code(&who.role),
            Some(Role::Service | Role::Administrator)
        );
        if !resource_server && (who.sub != c.sub || who.client_id != c.client_id) {
            return Ok(json!({"active": false}));
        }
        let mut v = json!({
            "active": true, "token_type": "Bearer", "scope": c.scope, "sub": c.sub,
            "role": c.role, "iss": c.iss, "aud": c.aud, "jti": c.jti, "iat": c.iat, "exp": c.exp,
        });
        if let Some(client) = c.client_id {
            v["client_id"] = json!(client);
        }
        if let Some(p) = c.patient {
            v["patient"] = json!(p);
        }
        if let Some(f) = c.fhir_user {
            v["fhirUser"] = json!(f);
        }
        Ok(v)
    }

    /// RFC 7009 revocation by `client_id` (authenticated by the caller, see
    /// [`Auth::authenticate_client`]): an access token or a refresh token issued to that
    /// client. Any other token — unknown, expired, another client's, an operator's — is left
    /// alone and is not an error (§2.2: the answer does not tell which).
    pub fn revoke_token(&self, token: &str, client_id: &str) -> Result<()> {
        if let Ok(c) = self.verified_claims(token) {
            if c.client_id.as_deref() == Some(client_id) {
                self.revoke(&c.jti)?;
            }
            return Ok(());
        }
        let hash = pkce_s256(token);
        let conn = self.conn();
        let n = conn.execute(
            "DELETE FROM auth_refresh WHERE hash = ?1 AND client = ?2",
            params![hash, client_id],
        )?;
        if n > 0 {
            conn.execute("DELETE FROM auth_refresh_patient WHERE hash = ?1", [&hash])?;
        }
        Ok(())
    }

    // ---- tokens ----------------------------------------------------------------------

    /// An access token for `user` with `requested` scopes narrowed to what the user may have
    /// (all of them when `requested` is `None`), issued to no client (operators' tokens).
    /// Returns the SMART token response.
    pub fn issue_for_user(&self, user: &User, requested: Option<&str>) -> Result<Value> {
        self.issue(user, requested, None)
    }

    /// [`Auth::issue_for_user`] for `client`: the token names it (`client_id`), so that the
    /// client can revoke it and introspection can say whose it is.
    pub(crate) fn issue(
        &self,
        user: &User,
        requested: Option<&str>,
        client: Option<&str>,
    ) -> Result<Value> {
        let allowed = Scopes::parse(&user.scopes).map_err(AuthError::Invalid)?;
        let scopes = match requested {
            Some(r) => Scopes::parse(r)
                .map_err(|e| oauth(OAuthError::InvalidScope, e))?
                .within(&allowed),
            None => allowed,
        };
        let scopes = granted_in_context(scopes, user.patient.is_some());
        if scopes.resources.is_empty() {
            return Err(oauth(
                OAuthError::InvalidScope,
                format!(
                    "none of the requested scopes may be granted to {}",
                    user.name
                ),
            ));
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
            nbf: None,
            client_id: client.map(str::to_string),
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

    /// Verify a bearer token: ES256 only (never `none` or a symmetric algorithm), a key of
    /// this deployment, not expired, not before its `nbf`, issued for this server, not
    /// revoked.
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
        let c = self.verified_claims(token)?;
        let bad = |m: &str| AuthError::InvalidToken(m.to_string());
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

    /// The claims of a token that verifies (see [`Auth::verify`]), without the cache.
    fn verified_claims(&self, token: &str) -> Result<Claims> {
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
        if c.nbf.is_some_and(|nbf| nbf > now() + CLOCK_SKEW_SECONDS) {
            return Err(bad("not valid yet (nbf)"));
        }
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
        if let Some(client) = &c.client_id
            && self.withdrawn(&c.sub, client, c.iat)?
        {
            return Err(bad("the user withdrew this app"));
        }
        Ok(c)
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
}
