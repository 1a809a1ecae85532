//! auth: a WASI 0.3 middleware (`wasi:http/middleware@0.3.0`) that lets a
//! request through only with `Authorization: Bearer TOKEN`, TOKEN being the
//! tenant's `AUTH_TOKEN` environment variable.
//!
//! ```text
//! no token, or another one   401 with WWW-Authenticate: Bearer, answered
//!                            here: the next hop never runs
//! AUTH_TOKEN unset           500: the middleware refuses to run open
//! the right token            handed to the next hop; its response comes
//!                            back with `x-middleware: auth` added
//! ```

wit_bindgen::generate!({
    path: "../../../wit/p3",
    world: "catshost:guest-p3/middleware",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::cli::environment;
use wasi::http::handler;
use wasi::http::types::{ErrorCode, Fields, Request, Response};

struct Auth;

impl Guest for Auth {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let Some(token) = environment::get_environment()
            .into_iter()
            .find_map(|(k, v)| (k == "AUTH_TOKEN" && !v.is_empty()).then_some(v))
        else {
            return text(500, "auth: AUTH_TOKEN is not set\n", &[]);
        };
        let expected = format!("Bearer {token}");
        let given = request.get_headers().get("authorization");
        // The same time whatever the token given, up to its length.
        let allowed = given
            .iter()
            .any(|v| v.len() == expected.len() && constant_eq(v, expected.as_bytes()));
        if !allowed {
            return text(
                401,
                "unauthorized\n",
                &[("www-authenticate", b"Bearer".as_slice())],
            );
        }
        let response = handler::handle(request).await?;
        let mut headers = response.get_headers().copy_all();
        headers.push(("x-middleware".into(), b"auth".to_vec()));
        let status = response.get_status_code();
        let (_, res) = wit_future::new(|| Ok(()));
        let (body, trailers) = Response::consume_body(response, res);
        let headers = Fields::from_list(&headers).map_err(|_| internal("headers"))?;
        let (response, _) = Response::new(headers, Some(body), trailers);
        response.set_status_code(status).map_err(|()| internal("status"))?;
        Ok(response)
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A text/plain response of `status`, written by a spawned task.
fn text(status: u16, body: &'static str, extra: &[(&str, &[u8])]) -> Result<Response, ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    wit_bindgen::spawn_local(async move {
        let _ = tx.write_all(body.as_bytes().to_vec()).await;
    });
    let (_, trailers) = wit_future::new(|| Ok(None));
    let mut headers = vec![
        ("content-type".to_string(), b"text/plain; charset=utf-8".to_vec()),
        ("x-middleware".to_string(), b"auth".to_vec()),
    ];
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_vec())));
    let headers = Fields::from_list(&headers).map_err(|_| internal("headers"))?;
    let (response, _) = Response::new(headers, Some(rx), trailers);
    response.set_status_code(status).map_err(|()| internal("status"))?;
    Ok(response)
}

fn internal(what: &str) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("auth: bad {what}")))
}

export!(Auth);
