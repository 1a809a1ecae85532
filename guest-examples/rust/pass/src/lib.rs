//! pass: a WASI 0.3 middleware (`wasi:http/middleware@0.3.0`) that hands
//! every request to the next hop and its response back, untouched: what a
//! hop costs and nothing more (bench/middleware.sh).

wit_bindgen::generate!({
    path: "../../../wit/p3",
    world: "catshost:guest-p3/middleware",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::handler;
use wasi::http::types::{ErrorCode, Request, Response};

struct Pass;

impl Guest for Pass {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        handler::handle(request).await
    }
}

export!(Pass);
