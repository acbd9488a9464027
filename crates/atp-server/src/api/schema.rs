//! Named schemas for the strings the API validates, so that the document
//! states the rules `atp_core` applies (and a client or a fuzzer can keep to
//! them) instead of a bare `string`. They describe values only: handlers
//! still take `String`s and let `atp_core` judge them.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// The rules of every name `atp_core::id` validates, as an ECMA-262
/// pattern: no control characters, no white space at either end, not `.`
/// or `..`. Lengths (in characters) come with each schema.
pub const NAME_PATTERN: &str =
    r"^(?!\.\.?$)[^\s\x00-\x1F\x7F-\x9F](?:[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F])?$";

fn name(max_chars: usize, description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(NAME_PATTERN))
        .description(Some(description))
        .examples([example])
        .build()
}

macro_rules! named_schema {
    ($(#[$doc:meta])* $ty:ident, $schema:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
        }
    };
}

named_schema!(
    /// A task type's name.
    TypeName,
    name(
        atp_core::TypeName::MAX_CHARS,
        "A task type's name: 1 to 64 characters, no control characters, no white space at either end, not `.` or `..`.",
        "SequenceSum",
    )
);

named_schema!(
    /// A task's identifier.
    TaskIdentifier,
    name(
        atp_core::TaskIdentifier::MAX_CHARS,
        "A task's identifier, unique within its type: 1 to 64 characters, no control characters, no white space at either end, not `.` or `..`.",
        "job-1",
    )
);

named_schema!(
    /// A type's handler.
    Handler,
    name(
        atp_core::Handler::MAX_CHARS,
        "What runs a type's tasks (`builtin:NAME`, `exec:PROGRAM ARGS`, or a name a program registered): 1 to 1024 characters, no control characters, no white space at either end, not `.` or `..`.",
        "builtin:sum",
    )
);

named_schema!(
    /// A log message.
    LogMessage,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[^\x00]*$"))
        .description(Some(
            "A log message: any text up to 64 KiB of UTF-8, without NUL characters.",
        ))
        .examples(["enqueued by the nightly import"])
        .build()
);

named_schema!(
    /// A schedule's name.
    ScheduleName,
    name(
        atp_core::ScheduleName::MAX_CHARS,
        "A schedule's name: 1 to 43 characters (so that `NAME@2026-12-01T10:00:00Z` fits a task identifier), no control characters, no white space at either end, not `.` or `..`.",
        "nightly",
    )
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_the_core_ones() {
        for (schema, max) in [
            (TypeName::schema(), atp_core::TypeName::MAX_CHARS),
            (
                TaskIdentifier::schema(),
                atp_core::TaskIdentifier::MAX_CHARS,
            ),
            (Handler::schema(), atp_core::Handler::MAX_CHARS),
        ] {
            let json = serde_json::to_value(schema).unwrap();
            assert_eq!(json["maxLength"], max);
            assert_eq!(json["minLength"], 1);
            assert_eq!(json["pattern"], NAME_PATTERN);
        }
    }
}
