//! A Server-Sent Events parser for transports that read the raw stream (natively and in
//! process; the browser's `EventSource` parses for itself). Follows the WHATWG rules the
//! server's events need: `event:` and `data:` fields (several `data:` lines join with `\n`),
//! comments (`:`, the keep-alives), LF, CRLF or CR line ends, dispatch on a blank line.

use std::collections::VecDeque;

use super::transport::SseEvent;

/// Feed it chunks as they arrive; take complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an incomplete line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one ends nothing.
    after_cr: bool,
    event: String,
    data: Option<String>,
    ready: VecDeque<SseEvent>,
}

/// An event stream line longer than this is garbage (a misbehaving server): it is dropped.
const MAX_LINE: usize = 1 << 20;

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(),
                b'\r' => {
                    self.end_line();
                    self.after_cr = true;
                }
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&line);
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                let event = std::mem::take(&mut self.event);
                self.ready.push_back(SseEvent {
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    },
                    data,
                });
            } else {
                self.event.clear();
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<(String, String)> {
        std::iter::from_fn(|| p.next_event())
            .map(|e| (e.event, e.data))
            .collect()
    }

    #[test]
    fn parses_named_events_across_chunks_and_line_ends() {
        let mut p = SseParser::new();
        p.push(b": keep-alive\n\nevent: round_opened\ndata: {\"round\":");
        assert!(p.next_event().is_none());
        p.push(b"1}\r");
        p.push(b"\n\r\ndata: a\ndata: b\n\nevent: x\rdata: y\r\r");
        assert_eq!(
            all(&mut p),
            vec![
                ("round_opened".into(), "{\"round\":1}".into()),
                ("message".into(), "a\nb".into()),
                ("x".into(), "y".into()),
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let mut p = SseParser::new();
        p.push(b"event: lonely\n\nevent: real\ndata:\n\n");
        assert_eq!(all(&mut p), vec![("real".into(), String::new())]);
    }
}
