//! Middleware chains: WASI 0.3 `wasi:http/middleware` components in front of
//! a tenant's handler, linked at run time inside one store.
//!
//! A middleware imports `wasi:http/handler@0.3.x` (the next hop) and exports
//! it. wasmtime 48's component linker cannot plug one instance's export into
//! another's import, so each middleware is pre-instantiated with a linker
//! of its own position in the chain, whose `handle` is a host function that
//! calls the next hop's exported `handle` in the same store
//! ([`GuestCtx::next_hop`]). Requests, responses and their body streams are
//! resources of that one store: a hop hands them on without a copy, and a
//! body streams through every hop. The chain is one sandbox: one store,
//! one memory limit for every hop's memories, one deadline, one instance
//! permit. The compiled code of a middleware is shared by every chain that
//! uses it (docs/architecture.md, "Middleware").

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Accessor, Component, Linker, Resource};
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::p3;

use super::component::{P3_HANDLER, Wasi};
use super::engine::{Precompiled, read_component};
use super::{Engine, GuestPre};
use crate::error::Error;
use crate::wasm::guest::GuestCtx;

/// The interface a middleware imports (its next hop) and every hop exports.
pub(crate) const HANDLER: &str = "wasi:http/handler@0.3.0";

/// A middleware component, compiled: [`Engine::load_middleware_file`]
/// makes one, [`Engine::chain`] puts it in front of a handler.
///
/// [`Engine::load_middleware_file`]: super::Engine::load_middleware_file
/// [`Engine::chain`]: super::Engine::chain
#[derive(Clone)]
pub struct Middleware {
    pub(super) name: Arc<str>,
    pub(super) component: Component,
}

impl Middleware {
    /// The name it was loaded under (its path for files).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of its compiled code image in bytes.
    pub fn code_size(&self) -> usize {
        let image = self.component.image_range();
        (image.end as usize).saturating_sub(image.start as usize)
    }
}

impl std::fmt::Debug for Middleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Middleware")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `base` with `wasi:http/handler@0.3.0` defined for the middleware at
/// `position`: its `handle` calls the next hop's.
pub(super) fn linker_at(
    base: &Linker<GuestCtx>,
    position: usize,
) -> wasmtime::Result<Linker<GuestCtx>> {
    let mut linker = base.clone();
    linker.instance(HANDLER)?.func_wrap_concurrent(
        "handle",
        move |accessor: &Accessor<GuestCtx>, (request,): (Resource<p3::Request>,)| {
            Box::pin(async move {
                let next = accessor.with(|mut store| store.get().next_hop(position));
                let Some(next) = next else {
                    // Every hop is instantiated before the chain takes a
                    // request: a missing one is the host's bug.
                    wasmtime::bail!("the middleware chain has no hop after position {position}");
                };
                next.call_concurrent(accessor, (request,)).await
            })
        },
    )?;
    Ok(linker)
}

impl Engine {
    /// Loads the middleware component at `path`: a WASI 0.3 component that
    /// exports `wasi:http/handler@0.3.x` and imports it (the
    /// `wasi:http/middleware` world). Compiled once (and cached like any
    /// component); linked only when [`Engine::chain`] puts it in front of a
    /// handler.
    pub fn load_middleware_file(&self, path: &Path) -> Result<Middleware, Error> {
        let bytes = read_component(path)?;
        self.load_middleware_bytes(&path.display().to_string(), &bytes)
    }

    /// [`Engine::load_middleware_file`] from memory; `name` names it in
    /// errors and logs.
    pub fn load_middleware_bytes(&self, name: &str, bytes: &[u8]) -> Result<Middleware, Error> {
        let (wasi, component) = self.compile(name, bytes, Precompiled::Refuse)?;
        let not_middleware = |reason: &str| Error::NotMiddleware {
            name: name.into(),
            reason: reason.into(),
        };
        if wasi != Wasi::P3 {
            return Err(not_middleware(
                "it does not export wasi:http/handler@0.3.x (a middleware is a WASI 0.3 \
                 component of the wasi:http/middleware world)",
            ));
        }
        let engine = &self.wasi_engine(wasi)?.engine;
        if !imports_handler(engine, &component) {
            return Err(not_middleware(
                "it exports wasi:http/handler@0.3.x but does not import it, so it has no next \
                 hop to call (a wasi:http/service component: serve it as the handler)",
            ));
        }
        Ok(Middleware {
            name: name.into(),
            component,
        })
    }

    /// `middleware`, in order, in front of `handler`: the first sees each
    /// request first, the handler last. Each must link at its place (its
    /// imports provided, its `wasi:http/handler` import of the type the
    /// host's is); the handler must be a WASI 0.3 one.
    pub fn chain(&self, middleware: &[Middleware], handler: &GuestPre) -> Result<GuestPre, Error> {
        let Some((first, rest)) = middleware.split_first() else {
            return Ok(handler.clone());
        };
        let chain_error = |name: &str, reason: String| Error::Chain {
            handler: handler.name().into(),
            name: name.into(),
            reason,
        };
        let ProxyPre::P3(last) = handler.proxy() else {
            return Err(chain_error(
                handler.name(),
                "is a WASI 0.2 component: middleware stands only in front of a WASI 0.3 \
                 handler (wasi:http/handler@0.3.x); catshost has no bridge between the two \
                 request types"
                    .into(),
            ));
        };
        let wasi_engine = self.wasi_engine(Wasi::P3)?;
        let link = |position: usize, hop: &Middleware| {
            let linker = wasi_engine.middleware_linker(position)?;
            match wasi_engine.pre_instantiate_with(&linker, &hop.name, &hop.component, Wasi::P3) {
                Ok(ProxyPre::P3(pre)) => Ok(pre),
                Ok(ProxyPre::P2(_)) => unreachable!("pre-instantiated as WASI 0.3"),
                Err(error) => Err(chain_error(
                    &hop.name,
                    format!(
                        "cannot stand at position {} of the chain: {}",
                        position + 1,
                        crate::log::chain(&error)
                    ),
                )),
            }
        };
        let first_pre = link(0, first)?;
        let mut next = Vec::with_capacity(middleware.len());
        for (i, hop) in rest.iter().enumerate() {
            next.push(link(i + 1, hop)?);
        }
        next.push(last.clone());
        let code =
            middleware.iter().map(Middleware::code_size).sum::<usize>() + handler.code_size();
        let names = middleware.iter().map(|m| m.name.clone()).collect();
        Ok(GuestPre::chain(first_pre, next, names, code, handler))
    }
}

/// Whether `component` imports `wasi:http/handler@0.3.x` (a middleware's
/// next hop).
pub(super) fn imports_handler(engine: &wasmtime::Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with(P3_HANDLER))
}
