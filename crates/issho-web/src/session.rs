//! Sessions of the web application. A browser signs in through issho's own authorization
//! server (authorization code with PKCE, as the first-party public client `issho-web`); the
//! access token it earns stays on the server, in this table, under a random session id the
//! browser holds in an HttpOnly, SameSite=Strict cookie. Every page acts with that token —
//! verified again on every request, so a revoked or expired token ends the session — through
//! the engine and the access gate, exactly as the same token on `/fhir` would.
//!
//! Every form that changes something carries the session's CSRF token, and the request must
//! come from this origin (`Origin` when the browser sends one).

use issho_access::Role;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lasts without use.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a sign-in may take (from the redirect to the authorization server back).
const SIGNIN: Duration = Duration::from_secs(600);
/// Sign-ins on their way at most.
const PENDING_MOST: usize = 10_000;
/// Sessions at most (beyond: the least recently used ends).
const LIVE_MOST: usize = 100_000;
/// The cookie binding a sign-in to the browser that started it.
pub const SIGNIN_COOKIE: &str = "issho_signin";
/// The session cookie.
pub const COOKIE: &str = "issho_session";
/// The language cookie.
pub const LANG_COOKIE: &str = "issho_lang";

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access token (never sent to the browser).
    pub token: String,
    pub user: String,
    pub display: String,
    pub role: Role,
    /// A patient user's Patient id.
    pub patient: Option<String>,
    /// The form token.
    pub csrf: String,
    /// The clinician's open record (a Patient id), kept here rather than in URLs.
    pub open: Option<String>,
    /// A message for the next page (after a redirect).
    pub flash: Option<String>,
    last: Instant,
}

/// A sign-in on its way: the PKCE verifier of a `state`.
struct Pending {
    verifier: String,
    started: Instant,
}

/// The sessions and sign-ins of this process (a restart signs everyone out).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// 32 random bytes as 64 hex digits.
pub fn random() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random numbers");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// Start a sign-in: a `state` and its PKCE verifier.
    pub fn begin(&self) -> (String, String) {
        let (state, verifier) = (random(), random());
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= PENDING_MOST {
            p.retain(|_, x| x.started.elapsed() < SIGNIN);
        }
        if p.len() >= PENDING_MOST {
            // Still full: the oldest sign-in gives way (a flood cannot grow the table).
            if let Some(oldest) = p
                .iter()
                .min_by_key(|(_, x)| x.started)
                .map(|(k, _)| k.clone())
            {
                p.remove(&oldest);
            }
        }
        p.insert(
            state.clone(),
            Pending {
                verifier: verifier.clone(),
                started: Instant::now(),
            },
        );
        (state, verifier)
    }

    /// The verifier of `state` (once).
    pub fn finish(&self, state: &str) -> Option<String> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.remove(state)
            .filter(|x| x.started.elapsed() < SIGNIN)
            .map(|x| x.verifier)
    }

    /// A new session: its id.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &self,
        token: String,
        user: String,
        display: String,
        role: Role,
        patient: Option<String>,
    ) -> String {
        let id = random();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.len() >= LIVE_MOST {
            live.retain(|_, s| s.last.elapsed() < IDLE);
        }
        if live.len() >= LIVE_MOST
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            Session {
                token,
                user,
                display,
                role,
                patient,
                csrf: random(),
                open: None,
                flash: None,
                last: Instant::now(),
            },
        );
        id
    }

    /// The session of `id`, if it is live (its idle time starts again).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get_mut(id) {
            Some(s) if s.last.elapsed() < IDLE => {
                s.last = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Change a live session.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Session)) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = live.get_mut(id) {
            change(s);
        }
    }

    /// End a session: its token, to revoke.
    pub fn close(&self, id: &str) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(id).map(|s| s.token)
    }
}

/// A cookie's value from the `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure over TLS; `max_age` 0
/// removes it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: u64) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_state_is_spent_once_and_sessions_end() {
        let s = Sessions::default();
        let (state, verifier) = s.begin();
        assert_eq!(s.finish(&state), Some(verifier));
        assert_eq!(s.finish(&state), None);
        assert_eq!(s.finish("forged"), None);
        let id = s.open("tok".into(), "u".into(), "U".into(), Role::Patient, None);
        assert_eq!(s.get(&id).unwrap().token, "tok");
        assert_ne!(s.get(&id).unwrap().csrf, id);
        assert_eq!(s.close(&id), Some("tok".into()));
        assert!(s.get(&id).is_none());
        assert_eq!(
            cookie(Some("a=1; issho_session=xyz; b=2"), COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie(Some("issho_sessionx=1"), COOKIE), None);
        // A flood of sign-ins keeps the table bounded.
        for _ in 0..PENDING_MOST + 100 {
            s.begin();
        }
        assert!(s.pending.lock().unwrap().len() <= PENDING_MOST);
    }
}
