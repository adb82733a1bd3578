//! A server-sent events parser (the WHATWG `text/event-stream` format), as a plain state machine:
//! bytes in, [`Item`]s out, no I/O.
//!
//! Guarantees:
//! - chunks may split the stream anywhere (inside a line, between `\r` and `\n`, inside a UTF-8
//!   sequence): the items are the same whatever the split;
//! - lines end with LF, CRLF or a lone CR; a leading byte-order mark is skipped;
//! - `data:` lines of one event are joined with `\n`; an event is dispatched at a blank line, and
//!   one left unfinished when the stream ends is never dispatched;
//! - comments (lines starting with `:`) are reported, because Tessera's `: ready` and `: hb` are
//!   what tell the subscriber that the stream is open and alive;
//! - memory is bounded: a line over [`MAX_LINE`] bytes or an event over [`MAX_DATA`] bytes of
//!   data is an error, after which the connection is to be dropped;
//! - bytes that are not UTF-8 are replaced, never a panic.

/// Longest line kept while waiting for its end. A SET is well under 4 KiB.
pub const MAX_LINE: usize = 64 * 1024;
/// Most data kept for one event.
pub const MAX_DATA: usize = 256 * 1024;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// What the stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A comment line, without its `:` and the one space after it.
    Comment(String),
    Event(Event),
}

/// A dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The last event id when this event was dispatched (it carries over from earlier events
    /// that set one, as in the WHATWG algorithm).
    pub id: Option<String>,
    /// The `event:` field, or `message` when there was none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event-stream line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("an event carries more than {MAX_DATA} bytes of data")]
    DataTooLong,
}

#[derive(Debug, Default)]
pub struct Parser {
    /// The bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last byte seen was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// A first line has been seen (the byte-order mark may only open the stream).
    started: bool,
    event: String,
    data: String,
    /// The id buffer: set by `id:` fields, kept across events.
    id: Option<String>,
    /// The id as of the last dispatch.
    last_id: Option<String>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Parses `chunk`, pushing every item it completes to `out`. After an error the parser's
    /// state is unspecified: drop the stream.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push_bytes(&rest[..end])?;
            self.end_line(out)?;
            let was_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    // The LF of a CRLF may come in the next chunk.
                    None => self.after_cr = true,
                }
            }
        }
        self.push_bytes(rest)
    }

    /// The id of the last dispatched event, or of the last block that set one and ended.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Item>) -> Result<(), SseError> {
        let raw = std::mem::take(&mut self.line);
        let mut bytes = &raw[..];
        if !self.started {
            self.started = true;
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        let result = self.field(&String::from_utf8_lossy(bytes), out);
        // Keep the allocation for the next line.
        self.line = raw;
        self.line.clear();
        result
    }

    fn field(&mut self, line: &str, out: &mut Vec<Item>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(strip_one_space(comment).to_owned()));
            return Ok(());
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, strip_one_space(value)),
            None => (line, ""),
        };
        match name {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_DATA {
                    return Err(SseError::DataTooLong);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with a NUL is ignored, as the format says.
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry:` is ignored: the subscriber has its own backoff. Unknown fields too.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        self.last_id.clone_from(&self.id);
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        out.push(Item::Event(Event {
            id: self.last_id.clone(),
            event: if event.is_empty() { "message".to_owned() } else { event },
            data,
        }));
    }
}

fn strip_one_space(s: &str) -> &str {
    s.strip_prefix(' ').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Item> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    fn event(id: Option<&str>, event: &str, data: &str) -> Item {
        Item::Event(Event {
            id: id.map(str::to_owned),
            event: event.into(),
            data: data.into(),
        })
    }

    const TESSERA: &[u8] =
        b": ready\n\nid: 7\nevent: revocation\ndata: a.b.c\n\n: hb\n\nid: 9\nevent: reset\ndata: d.e.f\n\n";

    fn tessera_items() -> Vec<Item> {
        vec![
            Item::Comment("ready".into()),
            event(Some("7"), "revocation", "a.b.c"),
            Item::Comment("hb".into()),
            event(Some("9"), "reset", "d.e.f"),
        ]
    }

    #[test]
    fn tesseras_stream_gives_its_comments_and_events() {
        assert_eq!(parse(&[TESSERA]), tessera_items());
    }

    #[test]
    fn every_split_of_the_stream_gives_the_same_items() {
        for cut in 0..=TESSERA.len() {
            assert_eq!(
                parse(&[&TESSERA[..cut], &TESSERA[cut..]]),
                tessera_items(),
                "cut at {cut}"
            );
        }
        let mut bytes: Vec<&[u8]> = TESSERA.chunks(1).collect();
        assert_eq!(parse(&bytes), tessera_items());
        // Empty chunks (a transport may deliver them) change nothing.
        bytes = bytes.into_iter().flat_map(|b| [b, &b""[..]]).collect();
        assert_eq!(parse(&bytes), tessera_items());
    }

    #[test]
    fn crlf_and_lone_cr_end_lines_too_even_across_chunks() {
        let crlf = String::from_utf8_lossy(TESSERA).replace('\n', "\r\n");
        let cr = String::from_utf8_lossy(TESSERA).replace('\n', "\r");
        for text in [&crlf, &cr] {
            let bytes = text.as_bytes();
            assert_eq!(parse(&[bytes]), tessera_items());
            for cut in 0..=bytes.len() {
                assert_eq!(parse(&[&bytes[..cut], &bytes[cut..]]), tessera_items(), "cut at {cut}");
                assert_eq!(
                    parse(&[&bytes[..cut], b"", &bytes[cut..]]),
                    tessera_items(),
                    "cut at {cut}, an empty chunk between"
                );
            }
        }
    }

    #[test]
    fn data_lines_are_joined_and_a_missing_event_name_is_message() {
        assert_eq!(
            parse(&[b"data: one\ndata:two\ndata\n\n"]),
            vec![event(None, "message", "one\ntwo\n")]
        );
        // Only one space after the colon is dropped.
        assert_eq!(parse(&[b"data:  x\n\n"]), vec![event(None, "message", " x")]);
    }

    #[test]
    fn the_id_carries_over_and_an_id_only_block_moves_it() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        p.feed(b"id: 3\ndata: a\n\ndata: b\n\n", &mut out).unwrap();
        assert_eq!(
            out,
            vec![event(Some("3"), "message", "a"), event(Some("3"), "message", "b")]
        );
        assert_eq!(p.last_event_id(), Some("3"));
        out.clear();
        p.feed(b"id: 4\n\n", &mut out).unwrap();
        assert!(out.is_empty(), "no data: nothing dispatched");
        assert_eq!(p.last_event_id(), Some("4"));
        // An id whose block has not ended yet is not the last event id.
        p.feed(b"id: 5\ndata: c\n", &mut out).unwrap();
        assert_eq!(p.last_event_id(), Some("4"));
        p.feed(b"id: x\0y\n\n", &mut out).unwrap();
        assert_eq!(out, vec![event(Some("5"), "message", "c")], "an id with NUL is ignored");
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse(&[b"retry: 10\nfoo: bar\nevent: revocation\ndata: a.b.c\n"]),
            vec![]
        );
        assert_eq!(
            parse(&[b"event: x\n\ndata: y\n\n"]),
            vec![event(None, "message", "y")],
            "the event name is reset at every blank line"
        );
    }

    #[test]
    fn a_leading_bom_is_skipped_once() {
        let mut stream = BOM.to_vec();
        stream.extend_from_slice(b"data: a\n\n");
        assert_eq!(parse(&[&stream[..1], &stream[1..]]), vec![event(None, "message", "a")]);
        let mut later = b"data: a\n\n".to_vec();
        later.extend_from_slice(BOM);
        later.extend_from_slice(b"data: b\n\n");
        assert_eq!(
            parse(&[&later]).len(),
            1,
            "a BOM after the start makes an unknown field"
        );
    }

    #[test]
    fn oversized_lines_and_data_are_errors_and_bad_utf8_is_replaced() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        assert_eq!(p.feed(&vec![b'x'; MAX_LINE + 1], &mut out), Err(SseError::LineTooLong));
        let mut p = Parser::new();
        let line = format!("data: {}\n", "x".repeat(MAX_LINE / 2));
        let result = (0..10).try_for_each(|_| p.feed(line.as_bytes(), &mut out));
        assert_eq!(result, Err(SseError::DataTooLong));
        assert_eq!(
            parse(&[b"data: \xff\xfe\n\n"]),
            vec![event(None, "message", "\u{fffd}\u{fffd}")]
        );
    }
}
