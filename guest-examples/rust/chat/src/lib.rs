//! chat: a WebSocket chat room and echo (world `catshost:guest/websocket-handler`).
//!
//! ```text
//! ws  /echo          every message comes back to its sender
//! ws  /rooms/NAME    joins the room NAME: every message goes to every other
//!                    socket in it (of this tenant, whatever instance serves it)
//! ws  anything else  refused with 404
//! GET /              200 a chat page (text/html) that opens ws(s)://HOST/rooms/lobby
//! anything else: 404
//! ```
//!
//! The host speaks RFC 6455 and keeps the rooms (`catshost:websocket/sockets`);
//! the guest only remembers what each of its sockets is for, between events,
//! in a map it empties in `on-close`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "catshost:guest/websocket-handler",
    generate_all,
});

use std::cell::RefCell;
use std::collections::HashMap;

use catshost::websocket::sockets::{self, Message, Socket};
use exports::catshost::websocket::handler::{self, OpenRequest};
use exports::wasi::http::incoming_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// What a socket's messages do.
enum Mode {
    /// Back to the sender.
    Echo,
    /// To every other socket in the room.
    Room(String),
}

thread_local! {
    /// The mode of every open socket of this instance (the instance is
    /// single-threaded; its events come one at a time).
    static MODES: RefCell<HashMap<Socket, Mode>> = RefCell::new(HashMap::new());
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>catshost chat</title>
<h1>#lobby</h1>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = document.getElementById("log"), text = document.getElementById("text");
const say = line => { log.textContent += line + "\n"; };
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/rooms/lobby');
ws.onopen = () => say("* joined #lobby");
ws.onmessage = event => say(String(event.data));
ws.onclose = event => say("* closed " + event.code + " " + event.reason);
document.getElementById("form").onsubmit = event => {
  event.preventDefault();
  if (text.value && ws.readyState === WebSocket.OPEN) {
    ws.send(text.value);
    say("me: " + text.value); // the room sends it to every socket but ours
  }
  text.value = "";
};
</script>
"#;

struct Chat;

impl handler::Guest for Chat {
    fn open(socket: Socket, request: OpenRequest) -> Result<Option<String>, u16> {
        let path = request.path_with_query.split('?').next().unwrap_or_default();
        let mode = if path == "/echo" {
            Mode::Echo
        } else if let Some(name) = path.strip_prefix("/rooms/") {
            // An empty or too long name, or a socket in too many rooms.
            sockets::join(socket, name).map_err(|_| 400u16)?;
            Mode::Room(name.to_string())
        } else {
            return Err(404);
        };
        MODES.with(|modes| modes.borrow_mut().insert(socket, mode));
        Ok(None)
    }

    fn on_message(socket: Socket, message: Message) {
        MODES.with(|modes| match modes.borrow().get(&socket) {
            Some(Mode::Echo) => {
                // closed or too-large: nothing to answer to.
                let _ = sockets::send(socket, &message);
            }
            Some(Mode::Room(name)) => {
                sockets::publish(name, &message, socket);
            }
            None => {}
        });
    }

    fn on_close(socket: Socket, _code: u16, _reason: String) {
        // The host takes the socket out of its rooms itself.
        MODES.with(|modes| modes.borrow_mut().remove(&socket));
    }
}

impl incoming_handler::Guest for Chat {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        match (request.method(), path.split('?').next().unwrap_or_default()) {
            (Method::Get, "/") => respond(response_out, 200, "text/html; charset=utf-8", PAGE),
            _ => respond(response_out, 404, "text/plain; charset=utf-8", "no such path\n"),
        }
    }
}

fn respond(response_out: ResponseOutparam, status: u16, content_type: &str, text: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), content_type.into())])
        .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = body.write().expect("the stream is taken once");
    // A client that went away is nothing to answer to; blocking-write-and-flush
    // takes 4096 bytes at most.
    for chunk in text.as_bytes().chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

export!(Chat);
