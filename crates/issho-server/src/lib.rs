//! issho's HTTP front end: FHIR R4 REST (http.html) over axum.
//!
//! Handlers only translate HTTP into engine interactions and back: they parse the method,
//! path, headers and body, hand the engine an access context, and render the result with the
//! right status, headers (`ETag`, `Last-Modified`, `Location`, `Content-Type`) and format.
//! Every error leaves as an OperationOutcome. Nothing here touches the store.

mod capability;
mod conn;
mod errors;
mod format;
mod handler;
mod oauth;
pub mod tls;

pub use capability::capability_statement;
pub use conn::{OutcomeIo, OutcomeListener};

use axum::Router;
use issho_engine::Engine;
use std::sync::Arc;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public base URL of the FHIR endpoint (e.g. `https://issho.example.jp/fhir`); when None,
    /// derived from each request's Host header.
    pub base_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// No authentication: every request acts as the development principal.
    pub dev_open: bool,
    /// Keys and users of the deployment: bearer tokens are verified here.
    pub auth: Option<Arc<issho_auth::Auth>>,
    /// Served over TLS (links use https; responses carry Strict-Transport-Security).
    pub tls: bool,
    /// Requests per second each caller (bearer token; anonymous callers share one budget)
    /// may make, with bursts of twice that; `None`: no limit.
    pub rate_limit: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            base_url: None,
            max_body: 32 * 1024 * 1024,
            dev_open: true,
            auth: None,
            tls: false,
            rate_limit: None,
        }
    }
}

pub(crate) struct AppState {
    pub engine: Engine,
    pub config: ServerConfig,
    pub started: std::time::Instant,
    /// Token buckets by caller (see `ServerConfig::rate_limit`).
    pub buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
    /// The CapabilityStatement as served, per registry.
    pub metadata: handler::MetadataCache,
}

impl AppState {
    /// Take one request from `caller`'s bucket; `Err(seconds)` to wait when it is empty.
    pub(crate) fn admit(&self, caller: &str) -> Result<(), u64> {
        let Some(rate) = self.config.rate_limit.filter(|r| *r > 0) else {
            return Ok(());
        };
        let rate = f64::from(rate);
        let now = std::time::Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 60);
        }
        let (tokens, last) = b.entry(caller.to_string()).or_insert((2.0 * rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(2.0 * rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The application: `/healthz` and the FHIR base at `/fhir`. Serve it on an
/// [`OutcomeListener`] so that the errors hyper answers by itself carry an OperationOutcome too.
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let tls = config.tls;
    let state = Arc::new(AppState {
        engine: engine.clone(),
        config,
        started: std::time::Instant::now(),
        buckets: Default::default(),
        metadata: Default::default(),
    });
    // The web application, where users sign in (not with --dev-open: it has no accounts), on
    // the same rate budget per token as /fhir.
    let web = match (&state.config.auth, state.config.dev_open) {
        (Some(auth), false) => {
            let s = state.clone();
            let admit: issho_web::Admit = Arc::new(move |caller: &str| s.admit(caller));
            match issho_web::Web::new(engine, auth.clone(), tls, Some(admit)) {
                Ok(w) => Some(Arc::new(w)),
                Err(e) => {
                    tracing::error!(error = %e, "the web application could not register its client");
                    None
                }
            }
        }
        _ => None,
    };
    let app = Router::new()
        .route("/healthz", axum::routing::get(handler::healthz))
        .route(
            "/auth/authorize",
            axum::routing::get(oauth::authorize).post(oauth::authorize),
        )
        .route("/auth/token", axum::routing::post(oauth::token))
        .route("/auth/revoke", axum::routing::post(oauth::revoke))
        .route("/auth/introspect", axum::routing::post(oauth::introspect))
        .route("/auth/register", axum::routing::post(oauth::register))
        .route("/auth/launch", axum::routing::post(oauth::launch))
        .route("/cds-services", axum::routing::get(handler::cds_discovery))
        .route(
            "/cds-services/{id}",
            axum::routing::post(handler::cds_service),
        )
        .route("/fhir", axum::routing::any(handler::fhir))
        .route("/fhir/", axum::routing::any(handler::fhir))
        .route("/fhir/{*rest}", axum::routing::any(handler::fhir))
        .fallback(handler::not_found)
        .with_state(state);
    let app = match web {
        Some(w) => app.merge(issho_web::router(w)),
        None => app,
    };
    let app = app
        .layer(axum::middleware::map_response(errors::outcome_net))
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .br(true),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            handler::panic_response,
        ))
        .layer(cors())
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "no-referrer"));
    if tls {
        app.layer(header("strict-transport-security", "max-age=31536000"))
    } else {
        app
    }
}

/// A response header set unless the handler set it.
fn header(
    name: &'static str,
    value: &'static str,
) -> tower_http::set_header::SetResponseHeaderLayer<axum::http::HeaderValue> {
    tower_http::set_header::SetResponseHeaderLayer::if_not_present(
        axum::http::HeaderName::from_static(name),
        axum::http::HeaderValue::from_static(value),
    )
}

/// CORS for browser SMART apps: any origin may call with a bearer token (no cookies are
/// used, so no credentials mode), with the FHIR request headers, and read the FHIR response
/// headers.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            HeaderName::from_static("if-none-exist"),
            HeaderName::from_static("prefer"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::CONTENT_LOCATION,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(std::time::Duration::from_secs(600))
}
