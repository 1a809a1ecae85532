//! sum: a small JSON API.
//!
//! `POST /sum` with a JSON array of numbers answers `{"count":N,"sum":S}`;
//! anything that is not such an array gets 400 `{"error":"..."}`; `GET /boom`
//! panics (the host answers 500 and logs the panic message).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "catshost:guest/handler",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use serde_json::{Value, json};
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};
use wasi::io::streams::StreamError;

struct Sum;

impl Guest for Sum {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        log_panics();
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let (status, answer) = match (request.method(), path.as_str()) {
            (_, "/boom") => panic!("boom: a panic the handler does not catch"),
            (Method::Post, "/sum") => match read_body(request).map(|b| total(&b)) {
                Some(Ok(answer)) => (200, answer),
                Some(Err(error)) => (400, json!({ "error": error })),
                None => return, // The client went away.
            },
            (Method::Get, _) => (200, json!({ "usage": "POST /sum [1, 2, 3]" })),
            _ => (405, json!({ "error": "use POST /sum" })),
        };
        respond(response_out, status, &answer);
    }
}

/// Panic messages go to the guest's stderr (the host's log): on
/// wasm32-unknown-unknown std has no stderr of its own.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let stderr = wasi::cli::stderr::get_stderr();
        let _ = stderr.blocking_write_and_flush(format!("{info}\n").as_bytes());
    }));
}

fn read_body(request: IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let stream = body.stream().ok()?;
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(65536) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return None,
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    Some(data)
}

fn total(body: &[u8]) -> Result<Value, String> {
    let numbers: Vec<f64> = serde_json::from_slice(body)
        .map_err(|_| "expected a JSON array of numbers".to_string())?;
    let sum: f64 = numbers.iter().sum();
    if !sum.is_finite() {
        return Err("the sum is too large".to_string());
    }
    // 6, not 6.0, like the other languages' examples.
    let sum = if sum.fract() == 0.0 && sum.abs() < 9e15 {
        json!(sum as i64)
    } else {
        json!(sum)
    };
    Ok(json!({ "count": numbers.len(), "sum": sum }))
}

fn respond(response_out: ResponseOutparam, status: u16, value: &Value) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
        .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = body.write().expect("the stream is taken once");
    let mut payload = value.to_string().into_bytes();
    payload.push(b'\n');
    let _ = stream.blocking_write_and_flush(&payload);
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

export!(Sum);
