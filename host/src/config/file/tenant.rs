//! One `[[tenant]]` checked: its component, routes, limits, what its guests
//! may reach, and its certificate.

use std::ops::Range;

use super::raw::RawTenant;
use super::{ConfigError, Source, TenantConfig, is_whole_host};
use crate::config::{LIMIT_SETTINGS, TenantLimits};
use crate::config::{Origin, Outbound, Preopen, WasiAccess};
use crate::routing::Route;

impl Source<'_> {
    /// The tenant, and where each of its routes is written.
    pub(super) fn check_tenant(
        &self,
        raw: RawTenant,
        defaults: &TenantLimits,
    ) -> Result<(TenantConfig, Vec<Range<usize>>), ConfigError> {
        let name = raw.name.get_ref().clone();
        let in_tenant =
            |span: Range<usize>, what: String| self.error(span, format!("tenant '{name}': {what}"));
        let component_at = self.location(raw.component.span());
        let component = self.resolve(raw.component.get_ref());
        if !component.is_file() {
            return Err(in_tenant(
                raw.component.span(),
                format!("the component '{}' is not a file", component.display()),
            ));
        }
        let mut middleware = Vec::with_capacity(raw.middleware.len());
        for text in &raw.middleware {
            let path = self.resolve(text.get_ref());
            if !path.is_file() {
                return Err(in_tenant(
                    text.span(),
                    format!("the middleware '{}' is not a file", path.display()),
                ));
            }
            middleware.push(path);
        }
        let (routes, spans) = self.routes(&raw, &in_tenant)?;
        let mut limits = *defaults;
        for (key, value) in raw.limits() {
            let setting = LIMIT_SETTINGS
                .iter()
                .find(|s| s.key == key)
                .expect("every tenant limit is in LIMIT_SETTINGS");
            self.set(setting, &mut limits, value)?;
        }
        let access = self.access(&raw, &in_tenant)?;
        let tls = match raw.tls {
            Some(tls) if !routes.iter().any(is_whole_host) => {
                return Err(in_tenant(
                    tls.span(),
                    "it has a certificate but no route of a whole host (HOST or *.DOMAIN, \
                     without a path) to choose it by (SNI)"
                        .into(),
                ));
            }
            tls => tls.map(|tls| self.check_tls(tls)).transpose()?,
        };
        let tenant = TenantConfig {
            name,
            component,
            component_at,
            middleware,
            routes,
            limits,
            access,
            tls,
            unsafe_allow_precompiled: raw.unsafe_allow_precompiled,
        };
        Ok((tenant, spans))
    }

    /// The tenant's routes, none twice, with where each is written.
    fn routes(
        &self,
        raw: &RawTenant,
        in_tenant: &impl Fn(Range<usize>, String) -> ConfigError,
    ) -> Result<(Vec<Route>, Vec<Range<usize>>), ConfigError> {
        if raw.routes.is_empty() {
            return Err(in_tenant(
                raw.name.span(),
                "no routes: give it at least one (HOST, HOST/PREFIX or /PREFIX)".into(),
            ));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
        let mut spans: Vec<Range<usize>> = Vec::with_capacity(raw.routes.len());
        for text in &raw.routes {
            let route = Route::parse(text.get_ref())
                .map_err(|error| in_tenant(text.span(), error.to_string()))?;
            if let Some(i) = routes.iter().position(|r| *r == route) {
                let first = self.location(spans[i].clone());
                return Err(in_tenant(
                    text.span(),
                    format!("the route '{route}' is given twice (also at {first})"),
                ));
            }
            routes.push(route);
            spans.push(text.span());
        }
        Ok((routes, spans))
    }

    /// What the tenant's guests may reach: environment, directories and
    /// outbound origins.
    fn access(
        &self,
        raw: &RawTenant,
        in_tenant: &impl Fn(Range<usize>, String) -> ConfigError,
    ) -> Result<WasiAccess, ConfigError> {
        let mut access = WasiAccess::default();
        for (key, value) in &raw.env {
            let (key_text, value) = (key.get_ref(), value.get_ref());
            if key_text.is_empty() || key_text.contains(['=', '\0']) || value.contains('\0') {
                return Err(in_tenant(
                    key.span(),
                    format!("'{key_text}' cannot be an environment variable"),
                ));
            }
            access.env.push((key_text.clone(), value.clone()));
        }
        for (list, writable) in [(&raw.dirs, false), (&raw.dirs_rw, true)] {
            for text in list {
                let (host, guest) = text
                    .get_ref()
                    .split_once("::")
                    .unwrap_or((text.get_ref(), text.get_ref()));
                let host = self.resolve(host);
                let spec = format!("{}::{guest}", host.display());
                let dir =
                    Preopen::parse(&spec, writable).map_err(|why| in_tenant(text.span(), why))?;
                access.dirs.push(dir);
            }
        }
        let mut origins = Vec::with_capacity(raw.outbound.len());
        for text in &raw.outbound {
            origins.push(
                Origin::parse(text.get_ref())
                    .map_err(|error| in_tenant(text.span(), error.to_string()))?,
            );
        }
        access.outbound = Outbound::new(origins);
        Ok(access)
    }
}
