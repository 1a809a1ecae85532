//! HTTP/2 frames written by hand, so a client can break rules a real client
//! library enforces.

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The preface and an empty SETTINGS frame.
pub fn start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    out
}

/// SETTINGS with SETTINGS_INITIAL_WINDOW_SIZE 0: the server may send
/// no DATA on any stream.
pub fn settings_zero_window(out: &mut Vec<u8>) {
    frame(out, SETTINGS, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]);
}

/// A header block for `GET path` on authority `a` (HPACK, no Huffman).
fn get_block(path: &str, extra: Option<(&str, usize)>) -> Vec<u8> {
    // :method GET (2), :scheme http (6), then literal :path and :authority.
    let mut block = vec![0x82, 0x86];
    literal(&mut block, 4, path.as_bytes());
    literal(&mut block, 1, b"a");
    if let Some((name, size)) = extra {
        // Literal name, literal value, not indexed.
        block.push(0x00);
        string(&mut block, name.as_bytes());
        string(&mut block, &vec![b'v'; size]);
    }
    block
}

fn literal(block: &mut Vec<u8>, index: u8, value: &[u8]) {
    // Literal header field without indexing, indexed name (4-bit prefix).
    block.push(index);
    string(block, value);
}

fn string(block: &mut Vec<u8>, value: &[u8]) {
    // A 7-bit prefixed length, no Huffman.
    let mut len = value.len();
    if len < 127 {
        block.push(len as u8);
    } else {
        block.push(127);
        len -= 127;
        while len >= 128 {
            block.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        block.push(len as u8);
    }
    block.extend_from_slice(value);
}

/// A complete GET on `stream`.
pub fn get(out: &mut Vec<u8>, stream: u32, path: &str) {
    frame(
        out,
        HEADERS,
        END_STREAM | END_HEADERS,
        stream,
        &get_block(path, None),
    );
}

/// A GET on `stream` with one header of `size` bytes, split into
/// CONTINUATION frames of 16 KiB.
pub fn get_with_huge_header(out: &mut Vec<u8>, stream: u32, path: &str, size: usize) {
    let block = get_block(path, Some(("x-huge", size)));
    let mut chunks = block.chunks(16 << 10).peekable();
    let first = chunks.next().unwrap_or_default();
    let only = chunks.peek().is_none();
    frame(
        out,
        HEADERS,
        END_STREAM | if only { END_HEADERS } else { 0 },
        stream,
        first,
    );
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        frame(
            out,
            CONTINUATION,
            if last { END_HEADERS } else { 0 },
            stream,
            chunk,
        );
    }
}

/// An extended CONNECT (RFC 8441) that opens a WebSocket at `path` on
/// `authority`, its stream left open (no END_STREAM).
pub fn extended_connect(out: &mut Vec<u8>, stream: u32, path: &str, authority: &str) {
    // :method CONNECT (a literal value of static entry 2), :scheme http,
    // :path, :authority, then :protocol and the version (literal names).
    let mut block = Vec::new();
    literal(&mut block, 2, b"CONNECT");
    block.push(0x86);
    literal(&mut block, 4, path.as_bytes());
    literal(&mut block, 1, authority.as_bytes());
    for (name, value) in [(":protocol", "websocket"), ("sec-websocket-version", "13")] {
        block.push(0x00);
        string(&mut block, name.as_bytes());
        string(&mut block, value.as_bytes());
    }
    frame(out, HEADERS, END_HEADERS, stream, &block);
}

/// RST_STREAM(CANCEL) on `stream`.
pub fn reset(out: &mut Vec<u8>, stream: u32) {
    frame(out, RST_STREAM, 0, stream, &0x8u32.to_be_bytes());
}
