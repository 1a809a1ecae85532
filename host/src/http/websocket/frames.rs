//! A socket's frames: its codec's settings, what a client's frame is to its
//! guest, a guest's message as a frame, and the socket's close.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::wasm::SocketMessage;

/// How long a closing socket waits for its client's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The read buffer of a socket: tungstenite's default is 128 KiB, which an
/// idle socket would hold for nothing.
const READ_BUFFER: usize = 4 << 10;
/// What the codec's write buffer may hold past the largest message: frame
/// headers, a pong and a close frame.
const WRITE_SLACK: usize = 1 << 10;

/// What a socket's codec may hold at once, charged to its tenant's account
/// while it is open: its read buffer, a message being put together from
/// its frames, and the slack of its write buffer (the message being sent is
/// charged on its own, from the guest's queue to the socket).
pub(super) fn socket_charge(max_message: usize) -> usize {
    READ_BUFFER + max_message + WRITE_SLACK
}

/// Who closed a socket, and with what.
pub(super) struct SocketClose {
    pub(super) code: u16,
    pub(super) reason: String,
    /// Whether a close frame is still to be sent (the host's or the
    /// guest's close), else it was answered or cannot be.
    pub(super) send: bool,
}

impl SocketClose {
    pub(super) fn host(code: u16, reason: &str) -> Self {
        Self {
            code,
            reason: reason.into(),
            send: true,
        }
    }

    pub(super) fn answered(code: u16, reason: String) -> Self {
        Self {
            code,
            reason,
            send: false,
        }
    }
}

/// The codec of a socket whose messages are at most `max` bytes: its read
/// buffer small, its write buffer flushed at once and capped.
pub(super) fn codec(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(max + WRITE_SLACK)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// What the client's next `frame` is to its socket: a message for the
/// guest, nothing (a ping or pong: tungstenite answers pings itself), or
/// the socket's end.
pub(super) fn from_client(
    frame: Option<Result<Message, tungstenite::Error>>,
) -> Result<Option<SocketMessage>, SocketClose> {
    match frame {
        Some(Ok(Message::Text(text))) => Ok(Some(SocketMessage::Text(text.into()))),
        Some(Ok(Message::Binary(bytes))) => Ok(Some(SocketMessage::Binary(bytes))),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(None),
        Some(Ok(Message::Close(frame))) => Err(match frame {
            Some(frame) => SocketClose::answered(frame.code.into(), frame.reason.to_string()),
            None => SocketClose::answered(1005, String::new()),
        }),
        Some(Err(error)) => Err(protocol_error(&error)),
        None => Err(SocketClose::answered(1006, String::new())),
    }
}

/// A guest's message as a frame to send.
pub(super) fn to_frame(message: SocketMessage) -> Message {
    match message {
        SocketMessage::Text(text) => match tungstenite::Utf8Bytes::try_from(text) {
            Ok(text) => Message::Text(text),
            Err(_) => unreachable!("a guest's text message is UTF-8"),
        },
        SocketMessage::Binary(bytes) => Message::Binary(bytes),
    }
}

/// The end of a socket: the host's (or the guest's) close frame when one
/// is to be sent, within the write timeout, and the client's answer to it
/// within [`CLOSE_TIMEOUT`]; then the connection's end, within the write
/// timeout (each at most [`CLOSE_TIMEOUT`]).
pub(super) async fn close<S, R>(
    closed: &SocketClose,
    sink: &mut S,
    stream: &mut R,
    write_timeout: Duration,
) where
    S: futures_util::Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    if closed.send {
        let frame = CloseFrame {
            code: CloseCode::from(closed.code),
            reason: closed.reason.clone().into(),
        };
        // A client that takes nothing gets no more time than for any
        // other write.
        let sent = tokio::time::timeout(
            write_timeout.min(CLOSE_TIMEOUT),
            sink.send(Message::Close(Some(frame))),
        );
        if matches!(sent.await, Ok(Ok(()))) {
            // The client's close frame, or its end, within the timeout.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Some(Ok(frame)) = stream.next().await {
                    if matches!(frame, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    // The close answered to the client goes out; then the connection ends.
    let _ = tokio::time::timeout(write_timeout.min(CLOSE_TIMEOUT), sink.close()).await;
}

/// The close a protocol error gets (RFC 6455, section 7.4.1): 1009 for a
/// message or frame over the limit, 1007 for text that is not UTF-8, 1002
/// for the rest; a connection that broke gets none (1006).
fn protocol_error(error: &tungstenite::Error) -> SocketClose {
    use tungstenite::error::ProtocolError;
    match error {
        // The connection ended without a close frame.
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            SocketClose::answered(1006, String::new())
        }
        tungstenite::Error::Capacity(_) => SocketClose::host(1009, "message too large"),
        tungstenite::Error::Utf8(_) => SocketClose::host(1007, "invalid UTF-8"),
        tungstenite::Error::Protocol(_) => SocketClose::host(1002, "protocol error"),
        _ => SocketClose::answered(1006, String::new()),
    }
}
