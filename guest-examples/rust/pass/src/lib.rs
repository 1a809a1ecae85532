//! pass: a WASI 0.3 middleware (`wasi:http/middleware@0.3.0`) that hands
//! every request to the next hop and its response back, untouched: what a
//! hop costs and nothing more (bench/middleware.sh). One path is its own:
//! `/pass/trap` panics (a trap in a middleware, for tests/middleware.rs).

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
        if request.get_path_with_query().as_deref() == Some("/pass/trap") {
            panic!("pass: asked to trap");
        }
        handler::handle(request).await
    }
}

export!(Pass);
