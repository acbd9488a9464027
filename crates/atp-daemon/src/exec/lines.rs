//! stderr as lines: [`LineSplitter`] cuts the byte stream into lines of at
//! most [`MAX_LINE_BYTES`], and [`Tail`] keeps the last ordinary ones for a
//! failure message.

use std::collections::VecDeque;

/// Longest stderr line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 4 * 1024;

/// How many of the last non-protocol stderr lines make a failure message.
const TAIL_LINES: usize = 20;

/// Longest failure message taken from stderr, in bytes.
const TAIL_BYTES: usize = 2000;

/// Splits stderr into lines, keeping at most [`MAX_LINE_BYTES`] of each.
#[derive(Default)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
    /// The current line was longer than the cap; its rest is dropped.
    overflow: bool,
}

impl LineSplitter {
    /// The lines completed by `bytes`.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (part, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
            if part.len() > room {
                self.overflow = true;
            }
            self.partial
                .extend_from_slice(&part[..part.len().min(room)]);
            match newline {
                Some(i) => {
                    lines.push(self.take());
                    rest = &rest[i + 1..];
                }
                None => rest = &[],
            }
        }
        lines
    }

    /// The last line, if stderr ended without a newline.
    pub(super) fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty() || self.overflow).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        if self.overflow {
            line.push('…');
        }
        self.partial.clear();
        self.overflow = false;
        line
    }
}

/// The last non-protocol stderr lines.
#[derive(Default)]
pub(super) struct Tail(VecDeque<String>);

impl Tail {
    pub(super) fn push(&mut self, line: String) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }

    /// The kept lines, at most [`TAIL_BYTES`] from their end, trimmed;
    /// `None` when nothing but white space is left.
    pub(super) fn message(&self) -> Option<String> {
        let text = self
            .0
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        let text = text.trim();
        let mut cut = text.len().saturating_sub(TAIL_BYTES);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        let kept = text[cut..].trim();
        match (kept.is_empty(), cut > 0) {
            (true, _) => None,
            (false, true) => Some(format!("…{kept}")),
            (false, false) => Some(kept.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_reads_and_capped() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), Vec::<String>::new());
        assert_eq!(s.push(b"c\r\nd\n\ne"), vec!["abc", "d", ""]);
        assert_eq!(s.finish(), Some("e".to_owned()));
        assert_eq!(s.finish(), None);

        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        assert!(s.push(&long).is_empty());
        let lines = s.push(b"xx\nshort\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("{}…", "x".repeat(MAX_LINE_BYTES)));
        assert_eq!(lines[1], "short");
        // Invalid UTF-8 does not panic.
        assert_eq!(s.push(b"\xFF\xFE\n"), vec!["\u{FFFD}\u{FFFD}"]);
    }

    #[test]
    fn the_tail_is_bounded_in_lines_and_bytes() {
        let mut t = Tail::default();
        assert_eq!(t.message(), None);
        t.push("  ".into());
        assert_eq!(t.message(), None);
        for i in 0..30 {
            t.push(format!("line {i}"));
        }
        assert!(t.message().unwrap().starts_with("line 10\n"));
        let mut t = Tail::default();
        for _ in 0..5 {
            t.push("é".repeat(1000));
        }
        let m = t.message().unwrap();
        assert!(m.starts_with('…'));
        assert!(m.len() <= TAIL_BYTES + '…'.len_utf8());
    }
}
