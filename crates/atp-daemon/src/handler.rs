//! What runs a task: the [`TaskHandler`] trait and the [`Registry`] that
//! maps a task type's handler string to one.
//!
//! A handler string is either an exact name (`builtin:sum`, or any name a
//! Rust program registers) or `exec:PROGRAM ARG…`, which runs an external
//! program (see [`crate::exec`]) when the registry allows it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::context::TaskContext;
pub use crate::error::{HandlerError, HandlerResult};

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;

/// Runs one attempt of a task. Implemented for every
/// `Fn(TaskContext) -> impl Future<Output = HandlerResult>`, so an async
/// function is a handler:
///
/// ```
/// use atp_daemon::{Registry, TaskContext, HandlerResult};
///
/// async fn shout(ctx: TaskContext) -> HandlerResult {
///     let text = ctx.input().as_str().unwrap_or_default().to_uppercase();
///     ctx.set_response(atp_core::Response::new("text/plain", text)).await?;
///     Ok(())
/// }
///
/// let mut registry = Registry::with_builtins();
/// registry.register("app:shout", shout);
/// ```
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs the attempt described by `ctx`.
    fn run(&self, ctx: TaskContext) -> HandlerFuture;
}

impl<F, Fut> TaskHandler for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn run(&self, ctx: TaskContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// The prefix of handler strings that run an external program.
pub const EXEC_PREFIX: &str = "exec:";

/// The handlers a daemon can run.
#[derive(Clone, Default)]
pub struct Registry {
    named: BTreeMap<String, Arc<dyn TaskHandler>>,
    exec: bool,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("named", &self.named.keys().collect::<Vec<_>>())
            .field("exec", &self.exec)
            .finish()
    }
}

impl Registry {
    /// No handlers at all.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Adds (or replaces) the handler for the exact handler string `name`.
    pub fn register(&mut self, name: impl Into<String>, handler: impl TaskHandler) -> &mut Self {
        self.named.insert(name.into(), Arc::new(handler));
        self
    }

    /// Allows or forbids `exec:` handlers.
    pub fn allow_exec(&mut self, allow: bool) -> &mut Self {
        self.exec = allow;
        self
    }

    /// The handler for a type's handler string, if this registry has one.
    pub fn resolve(&self, handler: &str) -> Option<Resolved> {
        if let Some(h) = self.named.get(handler) {
            return Some(Resolved::Named(h.clone()));
        }
        match handler.strip_prefix(EXEC_PREFIX) {
            Some(command) if self.exec => Some(Resolved::Exec(command.to_owned())),
            _ => None,
        }
    }

    /// Whether [`Registry::resolve`] finds a handler.
    pub fn can_run(&self, handler: &str) -> bool {
        self.named.contains_key(handler) || (self.exec && handler.starts_with(EXEC_PREFIX))
    }

    /// What this registry runs, for the daemon's record: every name, and
    /// `exec:*` when external programs are allowed.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.named.keys().cloned().collect();
        if self.exec {
            names.push(format!("{EXEC_PREFIX}*"));
        }
        names
    }
}

/// A handler found for a handler string.
#[derive(Clone)]
pub enum Resolved {
    /// A registered function.
    Named(Arc<dyn TaskHandler>),
    /// An external program: the text after `exec:`.
    Exec(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn noop(_: TaskContext) -> HandlerResult {
        Ok(())
    }

    #[test]
    fn exact_names_and_exec_prefix_resolve() {
        let mut r = Registry::empty();
        r.register("app:noop", noop);
        assert!(r.can_run("app:noop"));
        assert!(!r.can_run("app:other"));
        assert!(!r.can_run("exec:/bin/true"), "exec is off by default");
        r.allow_exec(true);
        assert!(r.can_run("exec:/bin/true"));
        assert!(
            matches!(r.resolve("exec:/bin/echo hi"), Some(Resolved::Exec(c)) if c == "/bin/echo hi")
        );
        assert_eq!(r.names(), vec!["app:noop".to_owned(), "exec:*".to_owned()]);
    }
}
