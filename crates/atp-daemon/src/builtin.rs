//! The built-in handlers: the original's SequenceSum demo and a few tools
//! for trying, testing and benchmarking the daemon.

use std::time::Duration;

use atp_core::Response;
use serde_json::Value;

use crate::context::TaskContext;
use crate::error::{HandlerError, HandlerResult};
use crate::handler::Registry;

/// The original demo's failure message, kept word for word.
pub const SUM_INPUT_ERROR: &str = "Input must be a sequence of numbers!";

impl Registry {
    /// The built-in handlers (`builtin:sum`, `builtin:sleep`, `builtin:echo`,
    /// `builtin:fail`, `builtin:noop`) and `exec:`. Defined here, beside
    /// them, so that the registry does not depend on its handlers.
    pub fn with_builtins() -> Self {
        let mut registry = Registry::empty();
        registry
            .register("builtin:sum", sum)
            .register("builtin:sleep", sleep)
            .register("builtin:echo", echo)
            .register("builtin:fail", fail)
            .register("builtin:noop", noop)
            .allow_exec(true);
        registry
    }
}

/// The sum of a JSON array of numbers or numeric strings, as `text/plain`.
pub fn sum_of(input: &Value) -> Result<f64, HandlerError> {
    let items = input
        .as_array()
        .ok_or_else(|| HandlerError::permanent(SUM_INPUT_ERROR))?;
    items.iter().try_fold(0.0, |total, item| {
        let x = match item {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() => Ok(total + x),
            _ => Err(HandlerError::permanent(SUM_INPUT_ERROR)),
        }
    })
}

/// Formats a sum as the original did for whole numbers (`6`), and with the
/// shortest exact decimal otherwise (`0.3`).
fn format_sum(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

async fn sum(ctx: TaskContext) -> HandlerResult {
    let total = sum_of(ctx.input())?;
    ctx.finish_with(
        Response::new("text/plain", format_sum(total)),
        "Finished: sum computed",
    )
    .await
}

/// Sleeps `{"seconds": x}` (default 1), reporting progress each second and
/// stopping early when cancelled.
async fn sleep(ctx: TaskContext) -> HandlerResult {
    let seconds = ctx
        .input()
        .get("seconds")
        .map_or(Some(1.0), Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            HandlerError::permanent("input must be {\"seconds\": a non-negative number}")
        })?;
    let total = Duration::from_secs_f64(seconds);
    let started = tokio::time::Instant::now();
    loop {
        let left = total.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
            () = ctx.cancelled() => return Err(HandlerError::new("cancelled while sleeping")),
        }
        let done = started.elapsed().as_secs_f64().min(seconds);
        if done >= seconds {
            // Done: the FINISHED record says so; no progress write.
            return Ok(());
        }
        let percent = done / seconds * 100.0;
        ctx.progress(Some(percent), format!("slept {done:.0} of {seconds} s"))
            .await?;
    }
}

/// The input back, as `application/json`.
async fn echo(ctx: TaskContext) -> HandlerResult {
    let body = serde_json::to_vec(ctx.input())?;
    ctx.finish_with(Response::new("application/json", body), "Finished: echoed")
        .await
}

/// Fails with the input's `message` (or a default).
async fn fail(ctx: TaskContext) -> HandlerResult {
    let message = ctx
        .input()
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("failed on purpose (builtin:fail)");
    Err(HandlerError::new(message))
}

/// Does nothing: for benchmarks.
async fn noop(_: TaskContext) -> HandlerResult {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtins_are_registered() {
        let r = Registry::with_builtins();
        for name in [
            "builtin:sum",
            "builtin:sleep",
            "builtin:echo",
            "builtin:fail",
            "builtin:noop",
        ] {
            assert!(r.can_run(name), "{name}");
        }
        assert!(r.can_run("exec:/bin/true"), "with_builtins allows exec");
    }

    #[test]
    fn sums_numbers_and_numeric_strings() {
        assert_eq!(sum_of(&json!([1, 2, 3])).unwrap(), 6.0);
        assert_eq!(sum_of(&json!(["1.5", 2, " 3 "])).unwrap(), 6.5);
        assert_eq!(sum_of(&json!([])).unwrap(), 0.0);
        assert_eq!(format_sum(6.0), "6");
        assert_eq!(format_sum(-2.0), "-2");
        assert_eq!(format_sum(0.5), "0.5");
    }

    #[test]
    fn anything_else_is_the_original_error() {
        for bad in [
            json!([1, "x"]),
            json!([1, null]),
            json!([[1]]),
            json!({"a": 1}),
            json!("12"),
            json!(["NaN"]),
        ] {
            assert_eq!(
                sum_of(&bad).unwrap_err().message(),
                SUM_INPUT_ERROR,
                "{bad}"
            );
        }
    }
}
