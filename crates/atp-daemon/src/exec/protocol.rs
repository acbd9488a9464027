//! The `@atp` line protocol: which stderr lines are commands, and what
//! they say. Pure parsing; [`super::session`] carries the commands out.

use atp_core::limits;

/// A protocol command from stderr.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Directive {
    Progress(Option<f64>, String),
    Log(String),
    Pause(String),
    Resume(String),
    Mime(String),
    Heartbeat,
    /// How a failure of this run is retried (`@atp retry never`,
    /// `@atp retry after SECONDS`, `@atp retry policy`).
    Retry(atp_core::Retry),
}

/// What a stderr line is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Line {
    /// Ordinary text, kept for the failure message.
    Text(String),
    /// An `@atp` line: a command, or why it is not one.
    Protocol(Result<Directive, String>),
}

const PREFIX: &str = "@atp";

pub(super) fn classify(line: String) -> Line {
    match line.strip_prefix(PREFIX) {
        Some("") => Line::Protocol(Err("no command".into())),
        Some(rest) if rest.starts_with(' ') => Line::Protocol(parse_directive(rest.trim())),
        _ => Line::Text(line),
    }
}

fn parse_directive(text: &str) -> Result<Directive, String> {
    let (verb, args) = match text.split_once(char::is_whitespace) {
        Some((verb, args)) => (verb, args.trim()),
        None => (text, ""),
    };
    match verb {
        "progress" => {
            let (percent, message) = match args.split_once(char::is_whitespace) {
                Some((p, m)) => (p, m.trim()),
                None => (args, ""),
            };
            let percent = parse_percent(percent)?;
            Ok(Directive::Progress(percent, message.to_owned()))
        }
        "log" if args.is_empty() => Err("log needs a message".into()),
        "log" => Ok(Directive::Log(args.to_owned())),
        "pause" => Ok(Directive::Pause(args.to_owned())),
        "resume" => Ok(Directive::Resume(args.to_owned())),
        "mime" => atp_core::payload::validate_mime(args)
            .map(|()| Directive::Mime(args.to_owned()))
            .map_err(|e| e.to_string()),
        "heartbeat" if args.is_empty() => Ok(Directive::Heartbeat),
        "heartbeat" => Err("heartbeat takes no arguments".into()),
        "retry" => parse_retry(args).map(Directive::Retry),
        "" => Err("no command".into()),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// `never`, `policy`, or `after SECONDS` (a non-negative number, at most
/// about a hundred years).
fn parse_retry(args: &str) -> Result<atp_core::Retry, String> {
    let mut words = args.split_whitespace();
    let retry = match (words.next(), words.next()) {
        (Some("never"), None) => atp_core::Retry::Never,
        (Some("policy"), None) => atp_core::Retry::ByPolicy,
        (Some("after"), Some(secs)) => {
            let delay = secs
                .strip_suffix('s')
                .unwrap_or(secs)
                .parse::<f64>()
                .ok()
                .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
                .filter(|d| *d <= atp_core::Due::MAX_DELAY)
                .ok_or_else(|| format!("retry after needs a number of seconds, got {secs:?}"))?;
            atp_core::Retry::After(delay)
        }
        _ => {
            return Err(format!(
                "retry needs 'never', 'policy' or 'after SECONDS', got {args:?}"
            ));
        }
    };
    match words.next() {
        None => Ok(retry),
        Some(extra) => Err(format!("retry: unexpected {extra:?}")),
    }
}

/// `-` (unknown) or a number from 0 to 100, optionally followed by `%`.
fn parse_percent(text: &str) -> Result<Option<f64>, String> {
    if text == "-" {
        return Ok(None);
    }
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.parse::<f64>() {
        Ok(p) if limits::is_progress_percent(p) => Ok(Some(p)),
        _ => Err(format!(
            "progress needs a percent from 0 to 100 or '-', got {text:?}"
        )),
    }
}

/// Cuts a progress message to what the store accepts.
pub(super) fn progress_message(message: &str) -> String {
    limits::cut_progress_message(message).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        use Directive::*;
        let ok = |s: &str| match classify(s.to_owned()) {
            Line::Protocol(Ok(d)) => d,
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(ok("@atp progress 5"), Progress(Some(5.0), String::new()));
        assert_eq!(
            ok("@atp progress 12.5%  a  b "),
            Progress(Some(12.5), "a  b".into())
        );
        assert_eq!(
            ok("@atp progress - working"),
            Progress(None, "working".into())
        );
        assert_eq!(ok("@atp log hello world"), Log("hello world".into()));
        assert_eq!(ok("@atp retry never"), Retry(atp_core::Retry::Never));
        assert_eq!(ok("@atp retry policy"), Retry(atp_core::Retry::ByPolicy));
        assert_eq!(
            ok("@atp retry after 1.5"),
            Retry(atp_core::Retry::After(std::time::Duration::from_millis(
                1500
            )))
        );
        assert_eq!(
            ok("@atp retry after 30s"),
            Retry(atp_core::Retry::After(std::time::Duration::from_secs(30)))
        );
        for bad in [
            "@atp retry",
            "@atp retry sometimes",
            "@atp retry after",
            "@atp retry after -1",
            "@atp retry after soon",
            "@atp retry after 1e300",
            "@atp retry never again",
        ] {
            assert!(
                matches!(classify(bad.to_owned()), Line::Protocol(Err(_))),
                "{bad}"
            );
        }
        assert_eq!(ok("@atp pause"), Pause(String::new()));
        assert_eq!(ok("@atp resume go on"), Resume("go on".into()));
        assert_eq!(
            ok("@atp mime text/csv; charset=utf-8"),
            Mime("text/csv; charset=utf-8".into())
        );
        assert_eq!(ok("@atp heartbeat"), Heartbeat);
        for bad in [
            "@atp",
            "@atp ",
            "@atp progress",
            "@atp progress 101",
            "@atp progress -1",
            "@atp progress NaN",
            "@atp progress inf",
            "@atp log",
            "@atp mime",
            "@atp mime nonsense",
            "@atp heartbeat now",
            "@atp dance",
        ] {
            assert!(
                matches!(classify(bad.to_owned()), Line::Protocol(Err(_))),
                "{bad:?}"
            );
        }
        for text in ["@atpprogress 5", " @atp progress 5", "error: @atp", ""] {
            assert_eq!(classify(text.to_owned()), Line::Text(text.to_owned()));
        }
    }

    #[test]
    fn progress_messages_are_cut_to_the_store_limit() {
        let long = "ü".repeat(limits::MAX_PROGRESS_CHARS + 10);
        assert_eq!(
            progress_message(&long).chars().count(),
            limits::MAX_PROGRESS_CHARS
        );
        assert_eq!(progress_message("short"), "short");
    }
}
