//! cors: a WASI 0.3 middleware (`wasi:http/middleware@0.3.0`) for
//! cross-origin requests.
//!
//! ```text
//! OPTIONS with Access-Control-Request-Method   204 with the CORS headers,
//!                                              answered here: the next hop
//!                                              never sees a preflight
//! anything else     handed to the next hop; its response comes back with
//!                   Access-Control-Allow-Origin (the request's Origin, or *)
//!                   and `x-middleware: cors` added, its body streamed through
//! ```

wit_bindgen::generate!({
    path: "../../../wit/p3",
    world: "catshost:guest-p3/middleware",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::handler;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response};

struct Cors;

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "authorization, content-type";

impl Guest for Cors {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let headers = request.get_headers();
        let origin = headers
            .get("origin")
            .into_iter()
            .next()
            .unwrap_or_else(|| b"*".to_vec());
        let preflight = !headers.get("access-control-request-method").is_empty();
        if matches!(request.get_method(), Method::Options) && preflight {
            let headers = Fields::from_list(&[
                ("access-control-allow-origin".into(), origin),
                ("access-control-allow-methods".into(), ALLOW_METHODS.into()),
                ("access-control-allow-headers".into(), ALLOW_HEADERS.into()),
                ("access-control-max-age".into(), b"600".to_vec()),
                ("vary".into(), b"origin".to_vec()),
                ("x-middleware".into(), b"cors".to_vec()),
            ])
            .map_err(|_| internal("headers"))?;
            let (_, trailers) = wit_future::new(|| Ok(None));
            let (response, _) = Response::new(headers, None, trailers);
            response.set_status_code(204).map_err(|()| internal("status"))?;
            return Ok(response);
        }
        let response = handler::handle(request).await?;
        with_headers(
            response,
            &[
                ("access-control-allow-origin", &origin),
                ("vary", b"origin"),
                ("x-middleware", b"cors"),
            ],
        )
    }
}

/// `response` with `added` headers: the same status, the same body and
/// trailers streamed through (a response's headers cannot be changed in
/// place).
fn with_headers(response: Response, added: &[(&str, &[u8])]) -> Result<Response, ErrorCode> {
    let mut headers = response.get_headers().copy_all();
    headers.extend(added.iter().map(|(n, v)| (n.to_string(), v.to_vec())));
    let status = response.get_status_code();
    let (_, res) = wit_future::new(|| Ok(()));
    let (body, trailers) = Response::consume_body(response, res);
    let headers = Fields::from_list(&headers).map_err(|_| internal("headers"))?;
    let (response, _) = Response::new(headers, Some(body), trailers);
    response.set_status_code(status).map_err(|()| internal("status"))?;
    Ok(response)
}

fn internal(what: &str) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("cors: bad {what}")))
}

export!(Cors);
