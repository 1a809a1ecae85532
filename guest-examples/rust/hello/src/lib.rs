//! hello: answers every request with 200 "hello from rust".

wit_bindgen::generate!({
    path: "../../../wit",
    world: "catshost:guest/handler",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("the stream is taken once");
        // A client that went away is nothing to answer to.
        let _ = stream.blocking_write_and_flush(b"hello from rust\n");
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

export!(Hello);
