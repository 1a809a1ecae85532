//! echo-p3: a WASI 0.3 (`wasi:http/service@0.3.0`) handler in async Rust.
//!
//! ```text
//! GET  /       200 "hello from Rust (WASI 0.3)"
//! POST /echo   streams the request body back as it arrives (content-type copied)
//! GET  /both   awaits two 50 ms clock waits at once and answers the elapsed
//!              time: about 50 ms, not 100, since both waits overlap
//! anything else: 404
//! ```
//!
//! In WASI 0.3 `handle` is an `async fn` that returns the response; the body
//! is a `stream<u8>` the host reads after that, so whatever writes it is a
//! task spawned in the same component-model task (`wit_bindgen::spawn_local`),
//! which may outlive the return of `handle`. The same guest as
//! `../../python/echo-p3/app.py`.

wit_bindgen::generate!({
    path: "../../../wit/p3",
    world: "catshost:guest-p3/service",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::clocks::monotonic_clock;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response};

struct EchoP3;

impl Guest for EchoP3 {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query();
        match (request.get_method(), path.as_deref()) {
            (Method::Get, Some("/")) => text(200, "hello from Rust (WASI 0.3)\n".into()),

            (Method::Post, Some("/echo")) => {
                // The request body stream becomes the response body
                // unchanged: the host copies it through without the guest
                // touching a byte. The request's trailers future goes along.
                let headers: Vec<_> = request
                    .get_headers()
                    .copy_all()
                    .into_iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                    .collect();
                let headers = Fields::from_list(&headers).map_err(|_| internal("headers"))?;
                // `res` tells the host how reading the body went; the writer
                // dropped here sends its default, Ok.
                let (_, res) = wit_future::new(|| Ok(()));
                let (body, trailers) = Request::consume_body(request, res);
                Ok(Response::new(headers, Some(body), trailers).0)
            }

            (Method::Get, Some("/both")) => {
                let start = monotonic_clock::now();
                futures::future::join(sleep_ms(50), sleep_ms(50)).await;
                let elapsed = (monotonic_clock::now() - start) / 1_000_000;
                text(200, format!("two 50 ms waits took {elapsed} ms\n"))
            }

            _ => text(404, "not found\n".into()),
        }
    }
}

async fn sleep_ms(ms: u64) {
    monotonic_clock::wait_for(ms * 1_000_000).await;
}

/// A text/plain response whose body a spawned task writes once the host reads
/// it.
fn text(status: u16, body: String) -> Result<Response, ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    wit_bindgen::spawn_local(async move {
        // What is left is what a client that went away did not read.
        let _ = tx.write_all(body.into_bytes()).await;
    });
    // No trailers: the writer dropped here sends the default, Ok(None).
    let (_, trailers) = wit_future::new(|| Ok(None));
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .map_err(|_| internal("headers"))?;
    let (response, _) = Response::new(headers, Some(rx), trailers);
    response.set_status_code(status).map_err(|()| internal("status"))?;
    Ok(response)
}

fn internal(what: &str) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("echo-p3: bad {what}")))
}

export!(EchoP3);
