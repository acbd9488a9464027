//! Validated names and ids. Validation happens once, at construction, so
//! every layer above can trust a `TypeName` or `TaskIdentifier` it is given.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidName {
    /// Which kind of name ("task type", "task identifier", "handler").
    pub what: &'static str,
    /// The refused value, as given.
    pub value: String,
    /// Why, in words a user can act on.
    pub reason: String,
}

/// Checks the rules shared by every name: 1..=max characters, no control
/// characters, no leading or trailing white space, not `.` or `..` (URL
/// clients rewrite those path segments, even percent-encoded, so such a
/// task could not be addressed over HTTP). Everything else ('/', quotes,
/// inner spaces, non-ASCII) is allowed and kept byte for byte.
pub(crate) fn validate(
    what: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<(), InvalidName> {
    let refuse = |reason: String| InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    let chars = value.chars().count();
    if chars == 0 {
        return Err(refuse("must not be empty".into()));
    }
    if chars > max_chars {
        return Err(refuse(format!(
            "is {chars} characters long, the limit is {max_chars}"
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(refuse(format!(
            "contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(refuse("must not start or end with white space".into()));
    }
    if value == "." || value == ".." {
        return Err(refuse(
            "must not be \".\" or \"..\" (no URL can name it)".into(),
        ));
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
                let value = value.into();
                validate($what, &value, Self::MAX_CHARS)?;
                Ok(Self(value))
            }

            /// The value as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The owned value.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidName;
            fn try_from(value: &str) -> Result<Self, InvalidName> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;
            fn try_from(value: String) -> Result<Self, InvalidName> {
                Self::new(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A task type's identifier: 1–64 characters, unique.
    TypeName,
    "task type",
    64
);

validated_name!(
    /// A task's identifier: 1–64 characters, unique within its type.
    TaskIdentifier,
    "task identifier",
    64
);

impl TaskIdentifier {
    /// A new identifier for a producer that has no natural one: a UUIDv7
    /// in its canonical text form (36 characters, lower-case hex and
    /// hyphens, e.g. `0192f0c4-7b1a-7cde-8f00-3a5b6c7d8e9f`).
    ///
    /// Version 7 because its first 48 bits are the Unix time in
    /// milliseconds: identifiers made later sort after earlier ones (as
    /// bytes, as text, in a database index), so they read in the order the
    /// tasks were made. Within one process the order is strict even inside
    /// one millisecond (the `uuid` crate keeps a counter); across hosts it
    /// is as good as their clocks, and uniqueness rests on the 74 random
    /// bits, not on the clock.
    ///
    /// It is made by the producer's side, before any store sees the task,
    /// so the caller knows it before enqueueing: a producer that retries an
    /// enqueue whose answer it lost sends the same identifier again and
    /// gets `DuplicateTask`, not a second task.
    pub fn generate() -> Self {
        let text = uuid::Uuid::now_v7().hyphenated().to_string();
        debug_assert!(validate("task identifier", &text, Self::MAX_CHARS).is_ok());
        TaskIdentifier(text)
    }
}

validated_name!(
    /// What runs a task of a type (`builtin:sum`, `exec:/usr/bin/foo`, a
    /// registered name): 1–1024 characters. The daemon interprets it.
    Handler,
    "handler",
    1024
);

/// A task's numeric id, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A daemon's 64-bit id. Shown as `0x%016X`, as the original did.
///
/// Stored as the signed 64-bit integer with the same bits, because neither
/// engine has an unsigned 64-bit column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DaemonId(pub u64);

impl DaemonId {
    /// The bits as a signed integer, for storage.
    pub const fn to_db(self) -> i64 {
        self.0 as i64
    }

    /// The inverse of [`DaemonId::to_db`].
    pub const fn from_db(raw: i64) -> Self {
        DaemonId(raw as u64)
    }
}

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016X}", self.0)
    }
}

impl Serialize for DaemonId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DaemonId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let hex = raw
            .strip_prefix("0x")
            .or_else(|| raw.strip_prefix("0X"))
            .ok_or_else(|| {
                serde::de::Error::custom("daemon id must look like 0x0123456789ABCDEF")
            })?;
        u64::from_str_radix(hex, 16)
            .map(DaemonId)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_keep_slashes_quotes_spaces_and_unicode() {
        for raw in [
            "a/b",
            "it's \"quoted\"",
            "inner space",
            "ünï€ødé",
            "日本語",
            "%2F",
        ] {
            assert_eq!(TaskIdentifier::new(raw).unwrap().as_str(), raw);
        }
    }

    #[test]
    fn dot_segments_are_refused() {
        for bad in [".", ".."] {
            assert!(TaskIdentifier::new(bad).is_err(), "{bad}");
            assert!(TypeName::new(bad).is_err(), "{bad}");
        }
        for good in ["...", ".a", "a.", "./x"] {
            assert!(TaskIdentifier::new(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn identifiers_are_limited_in_characters_not_bytes() {
        assert!(TaskIdentifier::new("é".repeat(64)).is_ok());
        let err = TaskIdentifier::new("é".repeat(65)).unwrap_err();
        assert!(err.reason.contains("65 characters"), "{err}");
        assert!(Handler::new("h".repeat(1024)).is_ok());
        assert!(Handler::new("h".repeat(1025)).is_err());
    }

    #[test]
    fn empty_control_and_padded_names_are_refused() {
        for bad in [
            "",
            " lead",
            "trail ",
            "tab\there",
            "nl\n",
            "\u{7f}",
            "\u{0}",
        ] {
            assert!(TypeName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<TypeName>("\" x\"").is_err());
        assert_eq!(
            serde_json::from_str::<TypeName>("\"x\"").unwrap().as_str(),
            "x"
        );
    }

    #[test]
    fn generated_identifiers_are_canonical_v7_uuids_that_pass_validation() {
        let id = TaskIdentifier::generate();
        let text = id.as_str();
        assert_eq!(TaskIdentifier::new(text).unwrap(), id);
        let parsed = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(parsed.get_version_num(), 7, "{text}");
        assert_eq!(parsed.hyphenated().to_string(), text, "canonical form");
        assert_eq!(text.len(), 36);
        assert!(
            text.chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f' | '-')),
            "lower-case: {text}"
        );
    }

    /// The Unix time, in milliseconds, a v7 identifier carries.
    fn millis(id: &TaskIdentifier) -> u128 {
        let (secs, nanos) = uuid::Uuid::parse_str(id.as_str())
            .unwrap()
            .get_timestamp()
            .expect("a v7 UUID has a timestamp")
            .to_unix();
        u128::from(secs) * 1_000 + u128::from(nanos / 1_000_000)
    }

    fn now_millis() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    }

    #[test]
    fn identifiers_generated_later_sort_after_earlier_ones() {
        let before = now_millis();
        let first = TaskIdentifier::generate();
        assert!(
            (before..=now_millis()).contains(&millis(&first)),
            "{first} carries the time it was made"
        );
        // Generate until the clock has moved on by a millisecond: many of
        // these share one, and each still sorts after the one before, as a
        // value and as text.
        let mut previous = first.clone();
        let mut made = 1;
        while millis(&previous) == millis(&first) {
            let next = TaskIdentifier::generate();
            assert!(previous < next, "{previous} !< {next}");
            assert!(previous.as_str() < next.as_str());
            previous = next;
            made += 1;
            assert!(made < 100_000_000, "the clock never moved");
        }
        assert!(first < previous);
    }

    #[test]
    fn daemon_id_prints_like_the_original_and_round_trips_through_storage() {
        let id = DaemonId(0xDEAD_BEEF_0000_0001);
        assert_eq!(id.to_string(), "0xDEADBEEF00000001");
        assert_eq!(DaemonId::from_db(id.to_db()), id);
        assert!(id.to_db() < 0);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<DaemonId>(&json).unwrap(), id);
    }
}
