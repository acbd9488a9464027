//! Bearer tokens. With none configured every request is let through (the
//! server then only listens on loopback unless told `--insecure`); with one
//! or more, every request but `/healthz`, the login page and the embedded
//! assets needs one of them, in `Authorization: Bearer …` (programs) or in
//! the `atp_token` cookie the login page sets (browsers).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::AppState;
use crate::problem::Problem;

/// The cookie the dashboard's login form sets.
pub const COOKIE: &str = "atp_token";

/// The tokens a server accepts.
#[derive(Clone, Default)]
pub struct Tokens(Vec<String>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// Accepts any of `tokens`; empty ones are ignored.
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Self {
        Tokens(tokens.into_iter().filter(|t| !t.is_empty()).collect())
    }

    /// Whether any token is required.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `candidate` is one of the tokens. Compares every token in
    /// full so the time taken does not tell how much of a guess was right.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.0
            .iter()
            .fold(false, |found, t| found | constant_time_eq(t, candidate))
    }

    /// Whether the request carries an accepted token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        !self.enabled() || presented(headers).is_some_and(|t| self.accepts(&t))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token in the `Authorization` header, else in the cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// The cookie value for `token` (percent-encoded: tokens may hold
/// characters a cookie cannot).
pub fn cookie_value(token: &str) -> String {
    percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Paths anyone may fetch: health checks, the login page, static assets.
fn is_public(path: &str) -> bool {
    path == "/healthz" || path == "/login" || path.starts_with("/assets/")
}

/// Middleware: refuses requests without an accepted token. API clients get
/// a 401 problem; browsers asking for a page are sent to the login page.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_public(path) || state.tokens.admits(request.headers()) {
        return next.run(request).await;
    }
    let wants_html = !path.starts_with("/api/")
        && path != "/metrics"
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        Redirect::to("/login").into_response()
    } else {
        Problem::unauthorized().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn without_tokens_everything_is_admitted() {
        assert!(Tokens::new(Vec::new()).admits(&HeaderMap::new()));
        assert!(Tokens::new(vec![String::new()]).admits(&HeaderMap::new()));
    }

    #[test]
    fn bearer_header_and_cookie_are_checked() {
        let tokens = Tokens::new(vec!["s3cret".into(), "other".into()]);
        assert!(!tokens.admits(&HeaderMap::new()));
        assert!(tokens.admits(&headers(header::AUTHORIZATION, "Bearer s3cret")));
        assert!(tokens.admits(&headers(header::AUTHORIZATION, "bearer other")));
        assert!(!tokens.admits(&headers(header::AUTHORIZATION, "Bearer s3cre")));
        assert!(!tokens.admits(&headers(header::AUTHORIZATION, "Basic s3cret")));
        assert!(tokens.admits(&headers(header::COOKIE, "a=b; atp_token=s3cret")));
        assert!(!tokens.admits(&headers(header::COOKIE, "atp_token=nope")));
        let odd = Tokens::new(vec!["a;b =c".into()]);
        let cookie = format!("{COOKIE}={}", cookie_value("a;b =c"));
        assert!(odd.admits(&headers(header::COOKIE, &cookie)));
    }
}
