//! front: a WASI 0.3 handler that calls another tenant's JSON API in the
//! same process (docs/middleware.md, "Tenant-to-tenant calls").
//!
//! ```text
//! GET /total?a,b,...   POSTs [a, b, ...] to BACK/sum (BACK: the environment
//!                      variable, default http://sum.tenant.internal) and
//!                      answers `back STATUS: BODY`; 502 `error: CODE` when
//!                      the call fails (denied by the allow-list, say)
//! GET /relay/REST      GETs BACK/relay/REST and answers `relayed STATUS: BODY`
//!                      (502 `error: CODE` when the call fails): two tenants
//!                      that relay to each other make a loop, which the host
//!                      cuts (`LoopDetected`)
//! anything else: 404
//! ```
//!
//! Serve it with a config file whose `front` tenant lists the back
//! tenant's internal name in `outbound` (guest-examples/README.md).

wit_bindgen::generate!({
    path: "../../../wit/p3",
    world: "catshost:guest-p3/service",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::cli::environment;
use wasi::http::client;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};

struct Front;

impl Guest for Front {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let back = environment::get_environment()
            .into_iter()
            .find_map(|(k, v)| (k == "BACK").then_some(v))
            .unwrap_or_else(|| "http://sum.tenant.internal".into());
        if path.starts_with("/relay/") {
            return match call(&back, Method::Get, &path, None).await {
                Ok((status, body)) => text(200, format!("relayed {status}: {body}")),
                Err(code) => text(502, format!("error: {code:?}\n")),
            };
        }
        let Some(numbers) = path.strip_prefix("/total?") else {
            return text(404, "not found\n".into());
        };
        let body = format!("[{}]", numbers.replace("%2C", ","));
        match call(&back, Method::Post, "/sum", Some(body)).await {
            Ok((status, body)) => text(200, format!("back {status}: {body}")),
            Err(code) => text(502, format!("error: {code:?}\n")),
        }
    }
}

/// Sends `method` `path` to `back`, with `body` as JSON when given: its
/// status and body.
async fn call(
    back: &str,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), ErrorCode> {
    let (scheme, authority) = match back.split_once("://") {
        Some(("https", authority)) => (Scheme::Https, authority),
        Some((_, authority)) => (Scheme::Http, authority),
        None => (Scheme::Http, back),
    };
    let (contents, headers) = match body {
        Some(body) => {
            let (mut tx, rx) = wit_stream::new();
            wit_bindgen::spawn_local(async move {
                let _ = tx.write_all(body.into_bytes()).await;
            });
            (Some(rx), vec![("content-type".into(), b"application/json".to_vec())])
        }
        None => (None, vec![]),
    };
    let (_, trailers) = wit_future::new(|| Ok(None));
    let headers = Fields::from_list(&headers).map_err(|_| internal("headers"))?;
    let (request, _) = Request::new(headers, contents, trailers, None);
    request.set_method(&method).map_err(|()| internal("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|()| internal("scheme"))?;
    request
        .set_authority(Some(authority.trim_end_matches('/')))
        .map_err(|()| internal("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| internal("path"))?;
    let response = client::send(request).await?;
    let status = response.get_status_code();
    let (_, res) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Response::consume_body(response, res);
    let body = body.collect().await;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A text/plain response whose body a spawned task writes.
fn text(status: u16, body: String) -> Result<Response, ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    wit_bindgen::spawn_local(async move {
        let _ = tx.write_all(body.into_bytes()).await;
    });
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
    ErrorCode::InternalError(Some(format!("front: bad {what}")))
}

export!(Front);
