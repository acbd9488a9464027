//! Stored bytes: task responses and the compression rule.
//!
//! Text is stored as it is so that it stays readable with plain SQL; anything
//! else is zlib-compressed (as the original did, minus its base64: both
//! engines have binary columns). The caller never sees the difference.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A task's output: bytes and their MIME type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// For example `text/plain` or `application/octet-stream`.
    pub mime_type: String,
    /// The bytes exactly as the handler produced them.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the given type and bytes.
    pub fn new(mime_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Response {
            mime_type: mime_type.into(),
            body: body.into(),
        }
    }
}

/// How stored bytes are encoded. The code is what the database keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Stored as given.
    Identity = 0,
    /// zlib (RFC 1950).
    Zlib = 1,
}

impl Encoding {
    /// The stored code.
    pub const fn code(self) -> i16 {
        self as i16
    }

    /// The encoding with this stored code.
    pub fn from_code(code: i64) -> Result<Self> {
        match code {
            0 => Ok(Encoding::Identity),
            1 => Ok(Encoding::Zlib),
            other => Err(Error::Corrupt(format!("unknown payload encoding {other}"))),
        }
    }
}

/// Whether a MIME type is text, and so stored uncompressed: `text/*` and the
/// structured text formats (JSON, XML, their `+json`/`+xml` suffixes, YAML,
/// JavaScript, CSV).
pub fn is_text_mime(mime_type: &str) -> bool {
    let essence = mime_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    top == "text"
        || (top == "application"
            && (matches!(
                sub,
                "json" | "xml" | "javascript" | "yaml" | "x-yaml" | "csv" | "x-ndjson"
            ) || sub.ends_with("+json")
                || sub.ends_with("+xml")))
}

/// Checks a MIME type given by a user: `type/subtype`, printable ASCII,
/// at most 255 characters.
pub fn validate_mime(mime_type: &str) -> Result<()> {
    let ok = !mime_type.is_empty()
        && mime_type.len() <= 255
        && mime_type.is_ascii()
        && !mime_type.chars().any(|c| c.is_ascii_control())
        && mime_type
            .split(';')
            .next()
            .and_then(|e| e.trim().split_once('/'))
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid MIME type {mime_type:?} (expected type/subtype)"
        )))
    }
}

/// Encodes a response body for storage according to the text rule.
pub fn encode(mime_type: &str, body: &[u8]) -> (Encoding, Vec<u8>) {
    if is_text_mime(mime_type) {
        return (Encoding::Identity, body.to_vec());
    }
    let mut encoder =
        ZlibEncoder::new(Vec::with_capacity(body.len() / 2 + 16), Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(|compressed| (Encoding::Zlib, compressed))
        // Writing to a Vec cannot fail; keep the bytes as they are if it does.
        .unwrap_or_else(|_| (Encoding::Identity, body.to_vec()))
}

/// Decodes stored bytes.
pub fn decode(encoding: Encoding, stored: Vec<u8>) -> Result<Vec<u8>> {
    match encoding {
        Encoding::Identity => Ok(stored),
        Encoding::Zlib => {
            let mut out = Vec::with_capacity(stored.len() * 2);
            ZlibDecoder::new(stored.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| Error::Corrupt(format!("stored response does not inflate: {e}")))?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_are_recognised() {
        for t in [
            "text/plain",
            "text/html; charset=utf-8",
            "application/json",
            "application/problem+json",
            "application/gml+xml",
            "TEXT/CSV",
        ] {
            assert!(is_text_mime(t), "{t}");
        }
        for t in [
            "application/octet-stream",
            "image/png",
            "application/zip",
            "garbage",
        ] {
            assert!(!is_text_mime(t), "{t}");
        }
    }

    #[test]
    fn text_is_stored_as_is_and_binary_is_compressed() {
        let (enc, stored) = encode("text/plain", b"hello");
        assert_eq!(enc, Encoding::Identity);
        assert_eq!(stored, b"hello");

        let body = vec![7u8; 10_000];
        let (enc, stored) = encode("application/octet-stream", &body);
        assert_eq!(enc, Encoding::Zlib);
        assert!(stored.len() < body.len() / 10);
        assert_eq!(decode(enc, stored).unwrap(), body);
    }

    #[test]
    fn garbage_does_not_inflate() {
        assert!(matches!(
            decode(Encoding::Zlib, b"not zlib".to_vec()),
            Err(Error::Corrupt(_))
        ));
        assert!(Encoding::from_code(9).is_err());
    }

    #[test]
    fn mime_types_are_validated() {
        assert!(validate_mime("text/plain; charset=utf-8").is_ok());
        for bad in ["", "plain", "text/", "/x", "text/plain\n", "tëxt/plain"] {
            assert!(validate_mime(bad).is_err(), "{bad:?}");
        }
    }
}
