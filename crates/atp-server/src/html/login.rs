//! `/login` and `/logout`: the token form for browsers. A right token is
//! kept in the `atp_token` cookie (HttpOnly, SameSite=Strict), which the
//! token check in `auth.rs` reads. Without tokens there is nothing to log
//! in to, and both redirect to the dashboard.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout;
use crate::AppState;
use crate::auth::{COOKIE, cookie_value};

/// The login form's body.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

fn login_page(error: Option<&str>) -> Markup {
    layout::bare(
        "Log in",
        html! {
            h1 { "Log in" }
            p { "This server needs a token. It is kept in a cookie of this browser until you log out." }
            @if let Some(e) = error {
                p #login-error .error-detail role="alert" { (e) }
            }
            form #login-form .login method="post" action="/login" {
                label for="token" { "Token" }
                input #token type="password" name="token" required autocomplete="current-password" autofocus;
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /login`.
pub async fn form(State(state): State<AppState>) -> Response {
    if !state.tokens.enabled() {
        return Redirect::to("/").into_response();
    }
    login_page(None).into_response()
}

/// `POST /login`: sets the cookie and goes to the dashboard, or 401.
pub async fn submit(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !state.tokens.enabled() {
        return Redirect::to("/").into_response();
    }
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    let token = token.trim();
    if !state.tokens.accepts(token) {
        return (
            StatusCode::UNAUTHORIZED,
            login_page(Some("That token is not accepted.")),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        cookie_value(token)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /logout`: forgets the cookie.
pub async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
