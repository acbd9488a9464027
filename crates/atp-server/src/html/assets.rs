//! The stylesheet and the script, compiled in and served under `/assets/`.
//!
//! Pages link them with `?v=` and a hash of their content, so a long
//! `immutable` cache is safe: a new build links new addresses.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use atp_core::Status;
use axum::http::header;
use axum::response::IntoResponse;

const CACHE: &str = "public, max-age=31536000, immutable";

/// `atp.css` plus one rule per status setting `--st` to the original's
/// colour, so that [`Status::color`] stays the only place colours are
/// named.
static CSS: LazyLock<String> = LazyLock::new(|| {
    let mut css = include_str!("assets/atp.css").to_owned();
    css.push_str("\n/* Status colours, generated from atp_core::Status::color. */\n");
    for s in Status::ALL {
        let _ = writeln!(
            css,
            "[data-status=\"{}\"] {{ --st: {}; }}",
            s.name(),
            s.color()
        );
    }
    css
});

const JS: &str = include_str!("assets/atp.js");

fn versioned(path: &str, content: &str) -> String {
    let mut h = DefaultHasher::new();
    content.hash(&mut h);
    format!("{path}?v={:016x}", h.finish())
}

/// A small icon, so browsers do not ask for `/favicon.ico` (a 404 in
/// their consoles).
const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#1f2937\"/>\
<circle cx=\"5\" cy=\"8\" r=\"2\" fill=\"brown\"/><circle cx=\"11\" cy=\"8\" r=\"2\" fill=\"#4ade80\"/></svg>";

/// The icon's address.
pub const ICON_HREF: &str = "/assets/favicon.svg";

static CSS_HREF: LazyLock<String> = LazyLock::new(|| versioned("/assets/atp.css", &CSS));
static JS_HREF: LazyLock<String> = LazyLock::new(|| versioned("/assets/atp.js", JS));

/// The stylesheet's address.
pub fn css_href() -> &'static str {
    &CSS_HREF
}

/// The script's address.
pub fn js_href() -> &'static str {
    &JS_HREF
}

/// `GET /assets/atp.css`.
pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        CSS.as_str(),
    )
}

/// `GET /assets/atp.js`.
pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        JS,
    )
}

/// `GET /assets/favicon.svg`.
pub async fn icon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, CACHE),
        ],
        ICON,
    )
}
