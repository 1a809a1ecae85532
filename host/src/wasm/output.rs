//! Guest stdout and stderr: line-buffered, each line a `tracing` event
//! (target `catshost::guest`) carrying the instance id, the request id when
//! it is unambiguous, the tenant and the stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::ctx::Serving;

/// A line longer than this is written out in pieces rather than buffered
/// without bound.
const MAX_LINE: usize = 16 * 1024;

/// One of a guest's output streams (`stdout` or `stderr`).
#[derive(Clone)]
pub(crate) struct GuestOutput {
    serving: Arc<Serving>,
    tenant: Arc<str>,
    stream: &'static str,
}

impl GuestOutput {
    /// `stream` is `stdout` or `stderr`.
    pub(crate) fn new(serving: Arc<Serving>, tenant: Arc<str>, stream: &'static str) -> Self {
        Self {
            serving,
            tenant,
            stream,
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            output: self.clone(),
            line: Vec::new(),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Collects bytes until a newline, then logs the line as one event, so lines
/// of concurrent requests never interleave.
struct LineWriter {
    output: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..end]);
            self.emit();
            bytes = &bytes[end + 1..];
        }
        self.line.extend_from_slice(bytes);
        while self.line.len() >= MAX_LINE {
            let rest = self.line.split_off(MAX_LINE);
            self.emit();
            self.line = rest;
        }
    }

    fn emit(&mut self) {
        let GuestOutput {
            serving,
            tenant,
            stream,
        } = &self.output;
        let text = String::from_utf8_lossy(&self.line);
        let text = escape_controls(text.strip_suffix('\r').unwrap_or(&text));
        tracing::info!(
            target: "catshost::guest",
            request_id = serving.request().map(tracing::field::display),
            instance_id = %serving.instance,
            tenant = &**tenant,
            stream,
            "{text}"
        );
        self.line.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `text` with its control characters but tabs written as escapes
/// (`\u{1b}`), so that a guest cannot forge log lines or drive the
/// terminal that shows them.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => escaped.push(c),
            c if c.is_control() => escaped.extend(c.escape_default()),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_of_a_guest_are_escaped() {
        assert_eq!(escape_controls("plain\ttext"), "plain\ttext");
        assert_eq!(escape_controls("a\rb\u{1b}[31mred"), "a\\rb\\u{1b}[31mred");
    }

    #[test]
    fn long_lines_are_split_and_partial_lines_kept() {
        let serving = Arc::new(Serving::new(crate::ids::InstanceId::next()));
        let mut w = GuestOutput::new(serving, "t".into(), "stdout").writer();
        w.push(b"abc");
        assert_eq!(w.line, b"abc");
        w.push(b"def\nxy");
        assert_eq!(w.line, b"xy");
        w.push(&vec![b'z'; MAX_LINE * 2 + 3]);
        assert_eq!(w.line.len(), 5);
    }
}
