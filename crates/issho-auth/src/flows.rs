//! The authorization code flow: registered apps, EHR launch contexts, single-use codes bound
//! to client, redirect URI and PKCE challenge, and refresh tokens stored by hash.

use crate::{
    Auth, AuthError, CODE_SECONDS, Client, LAUNCH_SECONDS, OAuthError, REFRESH_SECONDS, Result,
    User, granted_in_context, now, oauth, pkce_s256, random_token,
};
use issho_access::Scopes;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

/// An authorization request (`/auth/authorize`) the user signed in to and agreed to.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationRequest<'a> {
    pub client: &'a Client,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    /// PKCE S256 `code_challenge`.
    pub code_challenge: &'a str,
    /// An EHR launch: the launch token from `/auth/launch`.
    pub launch: Option<&'a str>,
    /// OpenID Connect `nonce`, echoed in the `id_token`.
    pub nonce: Option<&'a str>,
}

/// A pending authorization (between the login and the code exchange).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    user: String,
    client: String,
    redirect_uri: String,
    scope: String,
    challenge: String,
    until: i64,
    /// The patient of an EHR launch.
    patient: Option<String>,
    nonce: Option<String>,
}

impl Auth {
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

    /// Every registered client, by id, and whether it is a backend service (authenticating
    /// with its own keys) rather than an app.
    pub fn clients(&self) -> Result<Vec<(Client, bool)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT c.id, c.name, c.redirect_uris, c.scopes, k.id IS NOT NULL FROM auth_clients c \
             LEFT JOIN auth_client_keys k ON k.id = c.id ORDER BY c.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                Client {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    redirect_uris: r
                        .get::<_, String>(2)?
                        .split(' ')
                        .map(str::to_string)
                        .collect(),
                    scopes: r.get(3)?,
                },
                r.get::<_, bool>(4)?,
            ))
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
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

    /// After the user signed in and agreed: a single-use code for the request's client,
    /// bound to the redirect URI and the PKCE challenge (S256). The scopes are those
    /// requested, narrowed to what both the user and the client may have; `launch` only with
    /// an EHR launch (whose patient the token will carry), `launch/patient` only with a
    /// patient in context (the launch's, or a patient user's own), each scope once.
    pub fn authorization_code(
        &self,
        user: &User,
        req: &AuthorizationRequest<'_>,
    ) -> Result<String> {
        let client = req.client;
        let patient = match req.launch {
            Some(l) => Some(self.launch_patient(l, &user.name)?),
            None => None,
        };
        let requested = Scopes::parse(req.scope).map_err(|e| oauth(OAuthError::InvalidScope, e))?;
        let user_scopes = Scopes::parse(&user.scopes).map_err(AuthError::Invalid)?;
        let client_scopes = Scopes::parse(&client.scopes).map_err(AuthError::Invalid)?;
        let mut granted = requested.within(&user_scopes).within(&client_scopes);
        if patient.is_none() {
            granted.other.retain(|o| o != "launch");
        }
        let granted = granted_in_context(granted, patient.is_some() || user.patient.is_some());
        if granted.resources.is_empty() {
            return Err(oauth(
                OAuthError::InvalidScope,
                format!(
                    "none of the requested scopes may be granted to {} through {}",
                    user.name, client.id
                ),
            ));
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
                redirect_uri: req.redirect_uri.to_string(),
                scope: granted.to_string(),
                challenge: req.code_challenge.to_string(),
                until: t + CODE_SECONDS,
                patient,
                nonce: req.nonce.map(str::to_string),
            },
        );
        Ok(code)
    }

    /// The token endpoint's `authorization_code` grant: the code (once), the same client and
    /// redirect URI, and the PKCE verifier whose S256 hash is the challenge. A code presented
    /// by another client is refused and stays its client's; any other mismatch spends it.
    pub fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<Value> {
        let bad = |m: &str| oauth(OAuthError::InvalidGrant, m);
        if code.is_empty() || client_id.is_empty() || code_verifier.is_empty() {
            return Err(oauth(
                OAuthError::InvalidRequest,
                "code, client_id and code_verifier are required",
            ));
        }
        let pending = {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            match codes.get(code) {
                None => return Err(bad("unknown, used or expired code")),
                Some(p) if p.client != client_id => {
                    return Err(bad("the code was issued to another client"));
                }
                Some(_) => codes.remove(code).expect("present"),
            }
        };
        if pending.until < now() {
            return Err(bad("expired code"));
        }
        if pending.redirect_uri != redirect_uri {
            return Err(bad("the code was issued for another redirect URI"));
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
        self.remember_grant(&user.name, client_id, &pending.scope)?;
        self.token_response(&user, client_id, &pending.scope, pending.nonce.as_deref())
    }

    /// The `refresh_token` grant: a new access token (and a new refresh token; the old one is
    /// spent) with the same or fewer scopes. A refresh token presented by another client is
    /// refused and stays usable by its own.
    pub fn refresh(
        &self,
        refresh_token: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<Value> {
        let bad = |m: &str| oauth(OAuthError::InvalidGrant, m);
        if refresh_token.is_empty() || client_id.is_empty() {
            return Err(oauth(
                OAuthError::InvalidRequest,
                "refresh_token and client_id are required",
            ));
        }
        let requested = scope
            .map(|s| Scopes::parse(s).map_err(|e| oauth(OAuthError::InvalidScope, e)))
            .transpose()?;
        let hash = pkce_s256(refresh_token);
        let (user, granted, launched) = {
            // One lock from the look-up to the deletion: a token is spent once.
            let conn = self.conn();
            let row: Option<(String, String, String, i64)> = conn
                .query_row(
                    "SELECT user, client, scope, until FROM auth_refresh WHERE hash = ?1",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let (user, client, granted, until) =
                row.ok_or_else(|| bad("unknown or used refresh token"))?;
            if client != client_id {
                return Err(bad("the refresh token was issued to another client"));
            }
            let launched: Option<String> = conn
                .query_row(
                    "SELECT patient FROM auth_refresh_patient WHERE hash = ?1",
                    [&hash],
                    |r| r.get(0),
                )
                .optional()?;
            conn.execute("DELETE FROM auth_refresh WHERE hash = ?1", [&hash])?;
            conn.execute("DELETE FROM auth_refresh_patient WHERE hash = ?1", [&hash])?;
            if until < now() {
                return Err(bad("expired refresh token"));
            }
            (user, granted, launched)
        };
        let granted = Scopes::parse(&granted).map_err(AuthError::Invalid)?;
        let scope = match requested {
            Some(r) => r.within(&granted),
            None => granted,
        };
        let mut user = self
            .user(&user)?
            .ok_or_else(|| bad("the user no longer exists"))?;
        if launched.is_some() {
            user.patient = launched;
        }
        // No nonce on refresh (OpenID Connect Core §12.2).
        self.token_response(&user, client_id, &scope.to_string(), None)
    }

    /// A token response for `user` with exactly `scope` (already narrowed): an `id_token`
    /// when `openid` was granted, a refresh token when `offline_access` or `online_access`
    /// was.
    fn token_response(
        &self,
        user: &User,
        client_id: &str,
        scope: &str,
        nonce: Option<&str>,
    ) -> Result<Value> {
        let mut resp = self.issue(user, Some(scope), Some(client_id))?;
        let scope = resp["scope"].as_str().unwrap_or_default().to_string();
        let scopes = Scopes::parse(&scope).map_err(AuthError::Invalid)?;
        if scopes.has("openid") {
            let id = self.id_token(user, client_id, scopes.has("fhirUser"), nonce)?;
            resp["id_token"] = json!(id);
        }
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
}
