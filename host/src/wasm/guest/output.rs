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

use super::serving::Serving;
use crate::bucket::TokenBucket;
use crate::config::DEFAULT_LOG_LINES_PER_SECOND;

/// A line longer than this is written out in pieces rather than buffered
/// without bound.
const MAX_LINE: usize = 16 * 1024;

/// How many guest output lines a tenant may log: a token bucket of a
/// second's worth. Past it lines are dropped, and their count is logged at
/// most once a second (with the first line logged or dropped a second
/// after the last count), so that one tenant cannot flood the log (and the
/// queue every tenant's lines share), and no line goes uncounted.
#[derive(Debug)]
pub struct LogBudget {
    state: std::sync::Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    lines: TokenBucket,
    dropped: u64,
    reported: tokio::time::Instant,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Line,
    Drop,
    /// Drop it, and say how many were dropped since the last report.
    Report(u64),
    /// Say how many were dropped since the last report, then log it.
    ReportThenLine(u64),
}

impl LogBudget {
    /// `per_second` lines a second (at least 1).
    pub fn new(per_second: u32) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            state: std::sync::Mutex::new(BudgetState {
                lines: TokenBucket::new(per_second, now),
                dropped: 0,
                reported: now,
            }),
        }
    }

    fn admit(&self) -> Admit {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let admitted = state.lines.take(now);
        if !admitted {
            state.dropped += 1;
        }
        let report = state.dropped > 0
            && now.duration_since(state.reported) >= std::time::Duration::from_secs(1);
        if report {
            state.reported = now;
        }
        let mut dropped = || std::mem::take(&mut state.dropped);
        match (admitted, report) {
            (true, false) => Admit::Line,
            (true, true) => Admit::ReportThenLine(dropped()),
            (false, false) => Admit::Drop,
            (false, true) => Admit::Report(dropped()),
        }
    }
}

impl LogBudget {
    /// Whether one more line about `tenant`'s guests may be logged: their
    /// output, or a host line they cause (a denied outgoing request). The
    /// count of dropped lines is logged here when it is due.
    pub(crate) fn take(&self, tenant: &str) -> bool {
        let report = |dropped: u64| {
            tracing::warn!(
                target: "catshost::guest",
                tenant,
                dropped,
                "log lines of the tenant's guests dropped (their output, their denied outgoing \
                 requests): the tenant is over its log budget"
            );
        };
        match self.admit() {
            Admit::Line => true,
            Admit::ReportThenLine(dropped) => {
                report(dropped);
                true
            }
            Admit::Drop => false,
            Admit::Report(dropped) => {
                report(dropped);
                false
            }
        }
    }
}

impl Default for LogBudget {
    fn default() -> Self {
        Self::new(DEFAULT_LOG_LINES_PER_SECOND)
    }
}

/// One of a guest's output streams (`stdout` or `stderr`).
#[derive(Clone)]
pub(crate) struct GuestOutput {
    serving: Arc<Serving>,
    tenant: Arc<str>,
    stream: &'static str,
    budget: Arc<LogBudget>,
}

impl GuestOutput {
    /// `stream` is `stdout` or `stderr`; its lines count against `budget`.
    pub(crate) fn new(
        serving: Arc<Serving>,
        tenant: Arc<str>,
        stream: &'static str,
        budget: Arc<LogBudget>,
    ) -> Self {
        Self {
            serving,
            tenant,
            stream,
            budget,
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
            budget,
        } = &self.output;
        if !budget.take(tenant) {
            self.line.clear();
            return;
        }
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

    #[tokio::test(start_paused = true)]
    async fn a_tenant_logs_its_budget_and_the_count_of_what_it_dropped() {
        let budget = LogBudget::new(3);
        let first: Vec<Admit> = (0..5).map(|_| budget.admit()).collect();
        assert_eq!(
            first,
            [
                Admit::Line,
                Admit::Line,
                Admit::Line,
                Admit::Drop,
                Admit::Drop
            ]
        );
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        // A second later: the count of the two dropped, with the first of
        // three more lines; then one dropped, and not yet counted.
        let next: Vec<Admit> = (0..4).map(|_| budget.admit()).collect();
        assert_eq!(
            next,
            [
                Admit::ReportThenLine(2),
                Admit::Line,
                Admit::Line,
                Admit::Drop,
            ]
        );
        // A second after the count, the next line brings the count of the
        // one dropped since.
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let later: Vec<Admit> = (0..5).map(|_| budget.admit()).collect();
        assert_eq!(
            later,
            [
                Admit::ReportThenLine(1),
                Admit::Line,
                Admit::Line,
                Admit::Drop,
                Admit::Drop,
            ]
        );
        // Past a second with no line to log, a dropped one brings the
        // count (itself included).
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        assert_eq!(budget.admit(), Admit::ReportThenLine(2));
        budget.admit();
        budget.admit();
        tokio::time::advance(std::time::Duration::from_millis(1000)).await;
        // Three tokens came back; spend them at once, with a fourth line.
        let flood: Vec<Admit> = (0..4).map(|_| budget.admit()).collect();
        assert_eq!(
            flood,
            [Admit::Line, Admit::Line, Admit::Line, Admit::Report(1)]
        );
    }

    #[test]
    fn control_characters_of_a_guest_are_escaped() {
        assert_eq!(escape_controls("plain\ttext"), "plain\ttext");
        assert_eq!(escape_controls("a\rb\u{1b}[31mred"), "a\\rb\\u{1b}[31mred");
    }

    #[test]
    fn long_lines_are_split_and_partial_lines_kept() {
        let serving = Arc::new(Serving::new(crate::ids::InstanceId::next()));
        let mut w = GuestOutput::new(serving, "t".into(), "stdout", Default::default()).writer();
        w.push(b"abc");
        assert_eq!(w.line, b"abc");
        w.push(b"def\nxy");
        assert_eq!(w.line, b"xy");
        w.push(&vec![b'z'; MAX_LINE * 2 + 3]);
        assert_eq!(w.line.len(), 5);
    }
}
