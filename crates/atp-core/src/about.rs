//! What a task type tells its users about itself: a title, a description,
//! keywords, a version, and JSON Schemas for its input and its response.
//! Enough to publish the type as an OGC API – Processes process; of all of
//! it only the input schema changes what a store accepts: every enqueue of
//! the type, on every path, must satisfy it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A type's self-description; all of it optional (`Default` is none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeAbout {
    /// A short human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the type does, for people choosing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Words to find it by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// The version of its interface; readers show [`TypeAbout::DEFAULT_VERSION`]
    /// when it is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A JSON Schema every task input must satisfy (enforced at enqueue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// A JSON Schema of its JSON responses (published, not enforced: a
    /// handler's result is what it is, and refusing it would lose work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// The longest a client may wait for a task of this type to end in one
    /// request (OGC's synchronous execution), in seconds; `None`: clients
    /// must follow the task instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_wait_secs: Option<f64>,
}

/// Limits on a description, so a type row stays a row.
const MAX_TEXT_BYTES: usize = 16 * 1024;
const MAX_KEYWORDS: usize = 64;
const MAX_KEYWORD_BYTES: usize = 128;
const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// The longest synchronous wait a type may allow: ten minutes (a request
/// held longer is better followed as a job).
pub const MAX_SYNC_WAIT_SECS: f64 = 600.0;

impl TypeAbout {
    /// The version shown for a type that set none.
    pub const DEFAULT_VERSION: &'static str = "1.0.0";

    /// True when nothing is set (stores keep no description then).
    pub fn is_empty(&self) -> bool {
        *self == TypeAbout::default()
    }

    /// The version, or [`TypeAbout::DEFAULT_VERSION`].
    pub fn version_or_default(&self) -> &str {
        self.version.as_deref().unwrap_or(Self::DEFAULT_VERSION)
    }

    /// Refuses over-long texts, empty keywords or version, schemas that are
    /// not valid JSON Schemas (or refer to documents elsewhere), and a
    /// synchronous wait that is not a positive number of seconds up to
    /// [`MAX_SYNC_WAIT_SECS`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        for (what, text) in [("title", &self.title), ("description", &self.description)] {
            if let Some(text) = text
                && text.len() > MAX_TEXT_BYTES
            {
                return bad(format!(
                    "the {what} is {} bytes, the limit is {MAX_TEXT_BYTES}",
                    text.len()
                ));
            }
        }
        if self.keywords.len() > MAX_KEYWORDS {
            return bad(format!(
                "{} keywords, the limit is {MAX_KEYWORDS}",
                self.keywords.len()
            ));
        }
        if let Some(k) = self
            .keywords
            .iter()
            .find(|k| k.trim().is_empty() || k.len() > MAX_KEYWORD_BYTES)
        {
            return bad(format!(
                "keyword {k:?} is empty or longer than {MAX_KEYWORD_BYTES} bytes"
            ));
        }
        if let Some(v) = &self.version
            && (v.trim().is_empty() || v.len() > MAX_KEYWORD_BYTES)
        {
            return bad(format!(
                "version {v:?} is empty or longer than {MAX_KEYWORD_BYTES} bytes"
            ));
        }
        if let Some(secs) = self.sync_wait_secs
            && !(secs.is_finite() && secs > 0.0 && secs <= MAX_SYNC_WAIT_SECS)
        {
            return bad(format!(
                "the synchronous wait must be a positive number of seconds up to \
                 {MAX_SYNC_WAIT_SECS}, got {secs}"
            ));
        }
        for (what, schema) in [
            ("input", &self.input_schema),
            ("output", &self.output_schema),
        ] {
            if let Some(schema) = schema {
                let size = schema.to_string().len();
                if size > MAX_SCHEMA_BYTES {
                    return bad(format!(
                        "the {what} schema is {size} bytes, the limit is {MAX_SCHEMA_BYTES}"
                    ));
                }
                InputSchema::compile(schema)
                    .map_err(|e| Error::InvalidArgument(format!("the {what} schema: {e}")))?;
            }
        }
        Ok(())
    }

    /// The revision of the input schema as stores keep it beside the type:
    /// 0 without a schema, else a hash of the schema's canonical text
    /// (never 0). An enqueue states the revision it checked its input
    /// against, and the store refuses it (as [`Error::TypeChanged`]) when
    /// the type's differs: the check and the insert agree on one schema.
    pub fn input_schema_rev(&self) -> i64 {
        self.input_schema.as_ref().map_or(0, schema_rev)
    }
}

/// FNV-1a of the schema's text (`serde_json` writes object keys sorted, so
/// equal schemas write equal text), as a non-zero `i64`.
fn schema_rev(schema: &Value) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match hash as i64 {
        0 => 1,
        rev => rev,
    }
}

/// A compiled input schema: cheap to clone and share between enqueues.
#[derive(Clone)]
pub struct InputSchema(Arc<jsonschema::Validator>);

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputSchema")
    }
}

/// At most this many violations are named in an error.
const MAX_VIOLATIONS: usize = 10;

impl InputSchema {
    /// Compiles a schema (its draft from `$schema`, else 2020-12). Remote
    /// references are not followed: a schema is checked with what it
    /// holds, never by fetching from the network at enqueue time.
    pub fn compile(schema: &Value) -> std::result::Result<InputSchema, String> {
        jsonschema::options()
            .build(schema)
            .map(|v| InputSchema(Arc::new(v)))
            .map_err(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("at {path}: {e}")
                }
            })
    }

    /// Checks a task's input; a violation is [`Error::InputInvalid`], naming
    /// the path of each failing part (JSON Pointer, `""` for the whole).
    pub fn check(&self, task_type: &str, input: &Value) -> Result<()> {
        if self.0.is_valid(input) {
            return Ok(());
        }
        let violations = self
            .0
            .iter_errors(input)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        Err(Error::InputInvalid {
            task_type: task_type.to_owned(),
            violations,
        })
    }
}

/// One way an input fails its type's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Where in the input, as a JSON Pointer (`""`: the input itself).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "at {path}: {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point() -> TypeAbout {
        TypeAbout {
            input_schema: Some(json!({
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
            })),
            ..TypeAbout::default()
        }
    }

    #[test]
    fn a_violation_names_the_failing_path() {
        let schema = InputSchema::compile(point().input_schema.as_ref().unwrap()).unwrap();
        assert!(schema.check("p", &json!({"x": 1, "y": 2.5})).is_ok());
        let Err(Error::InputInvalid {
            task_type,
            violations,
        }) = schema.check("p", &json!({"x": "one", "y": 2}))
        else {
            panic!("a string x must be refused");
        };
        assert_eq!(task_type, "p");
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].path, "/x");
        let err = schema.check("p", &json!({"x": 1})).unwrap_err().to_string();
        assert!(err.contains("\"y\" is a required property"), "{err}");
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused_and_so_are_bad_texts() {
        let bad = TypeAbout {
            input_schema: Some(json!({"type": "no-such-type"})),
            ..TypeAbout::default()
        };
        assert!(bad.validate().is_err());
        assert!(point().validate().is_ok());
        for bad in [
            TypeAbout {
                keywords: vec![" ".into()],
                ..TypeAbout::default()
            },
            TypeAbout {
                version: Some(String::new()),
                ..TypeAbout::default()
            },
            TypeAbout {
                sync_wait_secs: Some(0.0),
                ..TypeAbout::default()
            },
            TypeAbout {
                sync_wait_secs: Some(MAX_SYNC_WAIT_SECS + 1.0),
                ..TypeAbout::default()
            },
            TypeAbout {
                title: Some("t".repeat(MAX_TEXT_BYTES + 1)),
                ..TypeAbout::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_remote_reference_is_never_fetched() {
        let remote = json!({"$ref": "https://example.invalid/schema.json"});
        assert!(InputSchema::compile(&remote).is_err());
    }

    #[test]
    fn the_revision_follows_the_input_schema_only() {
        let a = point();
        assert_ne!(a.input_schema_rev(), 0);
        assert_eq!(TypeAbout::default().input_schema_rev(), 0);
        let titled = TypeAbout {
            title: Some("Point".into()),
            ..point()
        };
        assert_eq!(titled.input_schema_rev(), a.input_schema_rev());
        let other = TypeAbout {
            input_schema: Some(json!({"type": "object"})),
            ..TypeAbout::default()
        };
        assert_ne!(other.input_schema_rev(), a.input_schema_rev());
    }
}
