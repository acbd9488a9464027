//! Helpers for tests that speak HTTP to a running server, shared by this
//! crate's tests and the `atp` binary's (feature `testing`): one place for
//! what both test trees would otherwise each copy.

use reqwest::StatusCode;
use serde_json::Value;

/// GETs `url`; its status and its body as JSON (`Null` when the body is
/// not JSON). Panics when the request cannot be sent: callers are tests.
pub async fn get_json(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}
