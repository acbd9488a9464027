//! The page shell every view shares, and the small pieces many views use:
//! status badges, times, the counts bar.
//!
//! Status colours come from [`Status::color`] only: elements carry
//! `data-status="NAME"` and the stylesheet's generated rules (see
//! `assets.rs`) set the colour for each name.

use atp_core::Status;
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;

use super::assets;
use super::snapshot::{Snapshot, statuses};
use crate::wire::rfc3339;

/// Which main navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The dashboard and task pages.
    Tasks,
    /// The daemons page.
    Daemons,
    /// The types page.
    Types,
    /// What ended badly (`/failed`).
    Failed,
    /// The schedules page.
    Schedules,
}

/// The frame of a dashboard page.
pub struct Chrome<'a> {
    /// The `<title>` (suffixed with "· ATP").
    pub title: &'a str,
    /// `data-page` on `<body>`, for scripts and tests.
    pub page: &'a str,
    /// The current navigation entry.
    pub nav: Nav,
    /// For live pages: the counts and change token at render time; the
    /// script then follows `/events` and refreshes `[data-live]` parts.
    pub live: Option<&'a Snapshot>,
    /// Show the log-out button (the server has tokens).
    pub logout: bool,
}

/// When a page reloads itself every 15 s, as the original's views did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Never,
    Always,
    /// Live pages follow `/events`; without JavaScript they reload.
    WithoutScript,
}

fn head(title: &str, script: bool, refresh: Refresh) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @match refresh {
                Refresh::Never => {}
                Refresh::Always => { meta http-equiv="refresh" content="15"; }
                Refresh::WithoutScript => {
                    noscript { meta http-equiv="refresh" content="15"; }
                }
            }
            title { (title) " · ATP" }
            link rel="icon" href=(assets::ICON_HREF) type="image/svg+xml";
            link rel="stylesheet" href=(assets::css_href());
            @if script {
                script src=(assets::js_href()) defer {}
            }
        }
    }
}

/// A dashboard page: header, navigation, counts (live pages) and `main`.
pub fn page(chrome: &Chrome<'_>, main: Markup) -> Markup {
    let current = |nav: Nav| (chrome.nav == nav).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(chrome.title, true, if chrome.live.is_some() { Refresh::WithoutScript } else { Refresh::Never }))
            body data-page=(chrome.page)
                data-events=[chrome.live.map(|_| "/events")]
                data-token=[chrome.live.map(|s| s.token.as_str())] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "ATP" }
                    nav.main-nav aria-label="Main" {
                        a href="/" aria-current=[current(Nav::Tasks)] { "Tasks" }
                        a href="/types" aria-current=[current(Nav::Types)] { "Types" }
                        a href="/schedules" aria-current=[current(Nav::Schedules)] { "Schedules" }
                        a href="/failed" aria-current=[current(Nav::Failed)] { "Failed" }
                        a href="/daemons" aria-current=[current(Nav::Daemons)] { "Daemons" }
                        a href="/process/task" { "Original views" }
                        a href="/api/v1/openapi.json" { "API" }
                    }
                    span #live-status .live-status role="status" aria-live="polite" {}
                    @if chrome.logout {
                        form.logout method="post" action="/logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                @if let Some(snapshot) = chrome.live {
                    (counts(snapshot))
                }
                main #main { (main) }
            }
        }
    }
}

/// A page of the original's views: its 15 s refresh, no script.
pub fn original(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false, Refresh::Always))
            body data-page="process" {
                header.top {
                    a.brand href="/" { "ATP" }
                    nav.main-nav aria-label="Original views" {
                        a href="/process/task" { "Tasks" }
                        a href="/process/status" { "Status log" }
                        a href="/" { "Dashboard" }
                    }
                }
                main #main { (main) }
            }
        }
    }
}

/// A page with no navigation state: errors and the login form.
pub fn bare(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false, Refresh::Never))
            body data-page="message" {
                header.top { a.brand href="/" { "ATP" } }
                main #main { (main) }
            }
        }
    }
}

/// A status name in its colour.
/// The state and pause/resume cells of a row that can be paused (a type,
/// a schedule): `active` names the unpaused state, `action_url` the POST
/// target of an action ("pause" or "resume") for `name`.
pub fn pause_cells(
    paused: bool,
    active: &str,
    name: &str,
    action_url: impl Fn(&str, &str) -> String,
) -> Markup {
    let (action, label) = if paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    html! {
        td data-field="state" {
            span.type-state data-paused=(paused) {
                @if paused { "Paused" } @else { (active) }
            }
        }
        td {
            form class=(format!("action-{action}")) method="post" action=(action_url(name, action)) {
                button type="submit" aria-label=(format!("{label} {name}")) { (label) }
            }
        }
    }
}

pub fn status(s: Status) -> Markup {
    html! { span.status data-status=(s.name()) { (s.name()) } }
}

/// A time: RFC 3339 UTC to the second, the full value in `datetime` (the
/// script shows it in local time, keeping UTC in the tooltip).
pub fn time(t: OffsetDateTime) -> Markup {
    let full = rfc3339(t);
    let short = rfc3339(t.replace_nanosecond(0).unwrap_or(t));
    html! { time datetime=(full) { (short) } }
}

/// Counts by status, each a link filtering the task table.
pub fn counts(snapshot: &Snapshot) -> Markup {
    html! {
        nav #counts .counts aria-label="Tasks by status" {
            a.count.count-total href="/" {
                span.count-n data-count="TOTAL" { (snapshot.counts.total()) }
                span.count-label { "all tasks" }
            }
            @for s in statuses() {
                a.count href={ "/?status=" (s.name()) } data-status=(s.name()) {
                    span.count-n data-count=(s.name()) { (snapshot.counts.status(s)) }
                    span.count-label { (s.name()) }
                }
            }
        }
    }
}
