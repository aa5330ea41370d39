//! Grading logs: bounded in size, free of NUL bytes and of terminal escape sequences.
//!
//! A notebook that prints in a loop must not make `grader` hold gigabytes, so the buffer keeps
//! the first and the last part of what it is given and replaces the middle with a marker.
//! Student code also decides what its output contains: escape sequences (colours, cursor
//! movement, window titles, hyperlinks) would act on the terminal of whoever reads the log,
//! and could hide or rewrite lines there, so they are removed as the bytes arrive (also when a
//! sequence is split between two chunks). Everything else, UTF-8 text, newlines, tabs and
//! carriage returns included, is kept.

use std::collections::VecDeque;

/// A log collector that keeps at most about `cap` bytes: the head and the tail, with a marker
/// saying how much was left out in between.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
    escape: Escapes,
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// The longest escape sequence removed; a longer one is cut off there and what follows is
/// kept, so an unterminated sequence cannot hide the rest of a log.
const MAX_SEQUENCE: usize = 4096;

/// Where the byte stream is with respect to escape sequences (ECMA-48): in text, or inside
/// a sequence being removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum EscapeState {
    #[default]
    Text,
    /// After ESC.
    Esc,
    /// ESC followed by intermediate bytes (`ESC ( B`), until a final byte.
    Intermediate,
    /// A control sequence `ESC [` with parameters, until its final byte (`ESC [ 1 ; 31 m`).
    Csi,
    /// A control string (`ESC ]` OSC, `ESC P` DCS, `ESC X`, `ESC ^`, `ESC _`), until BEL or
    /// `ESC \`; also ended by a newline, so that an unterminated one hides one line at most.
    String,
    /// ESC inside a control string: `\` ends it, anything else starts a new sequence.
    StringEsc,
}

/// Removes escape sequences and NUL bytes from a byte stream, one byte at a time.
#[derive(Debug, Clone, Copy, Default)]
struct Escapes {
    state: EscapeState,
    /// Bytes of the current sequence so far.
    len: usize,
}

impl Escapes {
    /// The byte to keep for input byte `b`, if any.
    fn feed(&mut self, b: u8) -> Option<u8> {
        use EscapeState::*;
        let keep = |b: u8| (b != 0).then_some(b);
        if self.state != Text {
            self.len += 1;
            if self.len > MAX_SEQUENCE {
                self.state = Text;
                return keep(b);
            }
        }
        match self.state {
            Text if b == ESC => self.start(),
            Text => return keep(b),
            Esc => match b {
                b'[' => self.state = Csi,
                b']' | b'P' | b'X' | b'^' | b'_' => self.state = String,
                0x20..=0x2f => self.state = Intermediate,
                0x30..=0x7e => self.state = Text,
                ESC => self.start(),
                // A control character or a byte that is not ASCII: the lone ESC goes, the
                // byte stays (never cut a UTF-8 sequence).
                _ => {
                    self.state = Text;
                    return keep(b);
                }
            },
            Intermediate | Csi => match b {
                0x20..=0x2f => {}
                0x30..=0x3f if self.state == Csi => {}
                0x30..=0x7e => self.state = Text,
                ESC => self.start(),
                _ => {
                    self.state = Text;
                    return keep(b);
                }
            },
            String => match b {
                BEL => self.state = Text,
                ESC => self.state = StringEsc,
                b'\n' => {
                    self.state = Text;
                    return keep(b);
                }
                _ => {}
            },
            StringEsc if b == b'\\' => self.state = Text,
            StringEsc => {
                self.start();
                return self.feed(b);
            }
        }
        None
    }

    fn start(&mut self) {
        self.state = EscapeState::Esc;
        self.len = 0;
    }
}

impl LogBuffer {
    /// A buffer that keeps at most `cap` bytes (at least 64).
    pub fn new(cap: usize) -> Self {
        LogBuffer {
            cap: cap.max(64),
            head: Vec::new(),
            tail: VecDeque::new(),
            dropped: 0,
            escape: Escapes::default(),
        }
    }

    /// Appends bytes; NUL bytes and terminal escape sequences are removed, also a sequence
    /// that began in an earlier push.
    pub fn push(&mut self, bytes: &[u8]) {
        let head_cap = self.cap / 2;
        let tail_cap = self.cap - head_cap;
        for &b in bytes {
            let Some(b) = self.escape.feed(b) else {
                continue;
            };
            if self.head.len() < head_cap {
                self.head.push(b);
                continue;
            }
            if self.tail.len() == tail_cap {
                self.tail.pop_front();
                self.dropped += 1;
            }
            self.tail.push_back(b);
        }
    }

    /// Records `n` bytes that were left out without being read (the middle of a large file
    /// whose head and tail are pushed around this call).
    pub fn skip(&mut self, n: u64) {
        self.dropped += n;
    }

    /// Appends a line of text and a newline. The line is `grader`'s own: a sequence the tool's
    /// output left open ends before it instead of swallowing it.
    pub fn push_line(&mut self, line: &str) {
        self.escape = Escapes::default();
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// Bytes given so far that were left out.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept text (invalid UTF-8 replaced), with a marker where bytes were left out.
    pub fn into_string(self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            out.push_str(&format!(
                "\n[... {} bytes of log omitted (log_cap_bytes = {}) ...]\n",
                self.dropped, self.cap
            ));
        }
        let (a, b) = self.tail.as_slices();
        let mut tail = Vec::with_capacity(a.len() + b.len());
        tail.extend_from_slice(a);
        tail.extend_from_slice(b);
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

/// Removes NUL bytes and escape sequences and caps `text` at `cap` bytes the way
/// [`LogBuffer`] does.
pub fn sanitize(text: &str, cap: usize) -> String {
    let mut buf = LogBuffer::new(cap);
    buf.push(text.as_bytes());
    buf.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_logs_pass_through_without_nul() {
        assert_eq!(sanitize("a\0b\nc", 1024), "ab\nc");
    }

    #[test]
    fn large_logs_keep_head_and_tail_with_a_marker() {
        let mut buf = LogBuffer::new(100);
        buf.push(b"START");
        for _ in 0..1000 {
            buf.push(b"xxxxxxxxxx");
        }
        buf.push(b"END");
        assert_eq!(buf.dropped(), 5 + 10_000 + 3 - 100);
        let s = buf.into_string();
        assert!(s.starts_with("START"));
        assert!(s.ends_with("END"));
        assert!(s.contains("bytes of log omitted"));
        assert!(s.len() < 200);
    }

    #[test]
    fn terminal_escape_sequences_are_stripped() {
        // Colours (CSI), a window title (OSC ended by BEL and by ST), cursor keys mode and a
        // charset selection (other ESC sequences), around text that must stay.
        let text = "\x1b[1;31mred\x1b[0m plain \x1b]0;title\x07after\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b=\x1b(Bok\x1b[?25l\n";
        assert_eq!(sanitize(text, 1024), "red plain afterlink ok\n");
    }

    #[test]
    fn stripping_keeps_utf8_and_other_control_characters() {
        let text = "\x1b[32mgrün ✓\x1b[0m\r\tnäch\x1b[Kste\n";
        assert_eq!(sanitize(text, 1024), "grün ✓\r\tnächste\n");
    }

    #[test]
    fn a_sequence_split_across_pushes_is_stripped() {
        let text = "a\x1b[1;31mb\x1b]0;t\x1b\\c\x1b(Bd".as_bytes();
        for split in 0..text.len() {
            let mut buf = LogBuffer::new(1024);
            buf.push(&text[..split]);
            buf.push(&text[split..]);
            assert_eq!(buf.into_string(), "abcd", "split at {split}");
        }
        // Byte by byte too, with a multibyte character inside.
        let mut buf = LogBuffer::new(1024);
        for b in "x\x1b[0mé\x1b[1m".bytes() {
            buf.push(&[b]);
        }
        assert_eq!(buf.into_string(), "xé");
    }

    #[test]
    fn an_unterminated_sequence_hides_at_most_the_rest_of_its_line() {
        assert_eq!(sanitize("a\x1b]0;never ended\nb\n", 1024), "a\nb\n");
        assert_eq!(sanitize("a\x1b[12\nb", 1024), "a\nb");
        let long = format!("a\x1b]{}b", "x".repeat(10_000));
        let kept = sanitize(&long, 1 << 20);
        assert!(
            kept.starts_with('a') && kept.ends_with('b') && kept.len() < 10_000,
            "{}",
            kept.len()
        );
    }

    #[test]
    fn grader_lines_are_not_swallowed_by_a_sequence_the_tool_left_open() {
        let mut buf = LogBuffer::new(1024);
        buf.push(b"tool output\x1b]0;unterminated");
        buf.push_line("grader: killed after 10 s");
        assert_eq!(buf.into_string(), "tool outputgrader: killed after 10 s\n");
    }
}
