//! Tenants: the model a server is built from ([`Tenant`]: a component, its
//! routes, limits and access), and turning tenants into the table the HTTP
//! side serves from, where a tenant replaced by one of the same name keeps
//! its permits and its CPU share.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::Builder;
use crate::config::TenantLimits;
use crate::config::WasiAccess;
use crate::http::{Admission, GuestTasks, LiveTenant, Recorder, TenantTable, Upgrades, WebSockets};
use crate::routing::{DuplicateRoute, Route, Routes};
use crate::wasm::{CpuShare, GuestPre, Instances, LogBudget, Sandbox, Sockets};

/// One tenant of a server: a component, the routes that lead to it, and
/// what its requests may use and reach.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Names the tenant in logs and metrics.
    pub name: String,
    /// Its component.
    pub component: GuestPre,
    /// Where its requests come from.
    pub routes: Vec<Route>,
    /// What its requests may use.
    pub limits: TenantLimits,
    /// What its guests may reach.
    pub access: WasiAccess,
}

/// The table of `tenants`, each made live; a tenant of `before` with the
/// same name hands on its permits and CPU share.
pub(super) fn table(
    builder: &Builder,
    tenants: Vec<Tenant>,
    tasks: &GuestTasks,
    before: Option<&TenantTable>,
) -> Result<TenantTable, DuplicateRoute> {
    let routes = Routes::new(
        tenants
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.routes.iter().map(move |r| (r.clone(), i))),
        |i| tenants[i].name.clone(),
    )?;
    let before =
        |name: &str| before.and_then(|table| table.tenants.iter().find(|t| t.name() == name));
    let tenants = tenants
        .into_iter()
        .map(|tenant| {
            let before = before(&tenant.name).cloned();
            Arc::new(live(builder, tenant, tasks, before.as_deref()))
        })
        .collect();
    Ok(TenantTable { routes, tenants })
}

/// A tenant made live. With `before`, the same tenant until now, its
/// request permits carry over (when their number is unchanged), so the
/// requests it is still running count against the new one's limits, and so
/// does its CPU share.
fn live(
    builder: &Builder,
    tenant: Tenant,
    tasks: &GuestTasks,
    before: Option<&LiveTenant>,
) -> LiveTenant {
    let settings = &builder.settings;
    let name: Arc<str> = tenant.name.into();
    let max = tenant.limits.max_concurrent_requests;
    let max_upgrades = tenant.limits.max_upgrades;
    let requests = match before {
        Some(before) if before.admission.max_concurrent_requests == max => {
            before.admission.requests.clone()
        }
        _ => Arc::new(Semaphore::new(max)),
    };
    let cpu = settings.max_tenant_workers.map(|workers| {
        before
            .and_then(|b| b.instances.sandbox().cpu.clone())
            .unwrap_or_else(|| CpuShare::new(workers))
    });
    let sandbox = Sandbox {
        tenant: name.clone(),
        limits: tenant.limits.instance,
        opened: Sandbox::open_dirs(&tenant.access),
        log_budget: Arc::new(LogBudget::new(tenant.limits.max_log_lines_per_second)),
        outbound_connections: Default::default(),
        access: tenant.access,
        cpu,
        upstream: builder.upstream.clone(),
        max_instances: max,
        events: Some(Arc::new(crate::metrics::TenantInstances {
            metrics: builder.metrics.clone(),
            tenant: name.clone(),
        })),
    };
    let limits = &tenant.limits;
    let max_websockets = limits.max_websockets;
    let websockets = Sockets::new(
        &tenant.component,
        sandbox.clone(),
        limits.socket_limits(),
        tasks.sockets().clone(),
    )
    .filter(|_| limits.websockets)
    .map(|sockets| WebSockets {
        sockets,
        stop: builder.stop.clone(),
        metrics: builder.metrics.clone(),
        access_log: settings.access_log,
        // A replaced tenant's open sockets count on, when its limit is
        // unchanged.
        open: before
            .and_then(|b| b.websocket_permits())
            .filter(|&(_, max)| max == max_websockets)
            .map(|(open, _)| open.clone())
            .unwrap_or_else(|| Arc::new(Semaphore::new(max_websockets))),
        max_open: max_websockets,
        idle_timeout: limits.websocket_idle_timeout,
        write_timeout: settings.http.write_timeout,
    });
    LiveTenant::new(
        Instances::new(&tenant.component, sandbox),
        tenant.component.name(),
        Admission {
            requests,
            max_concurrent_requests: max,
            rate: tenant
                .limits
                .max_requests_per_second
                .map(|rate| Arc::new(crate::http::RateLimit::new(rate))),
            out_of_service: tenant.limits.out_of_service,
            max_body_size: tenant.limits.max_body_size,
        },
        Recorder::new(name, builder.metrics.clone(), settings.access_log),
        tasks.clone(),
        builder.errors.clone(),
        // Only a tenant allowed to upgrade reaches the hook.
        builder
            .upgrade
            .clone()
            .filter(|_| tenant.limits.allow_upgrade)
            .map(|hook| Upgrades {
                hook,
                stop: builder.stop.clone(),
                metrics: builder.metrics.clone(),
                access_log: settings.access_log,
                // A replaced tenant's open connections count on, when its
                // limit is unchanged.
                open: before
                    .and_then(|b| b.upgrade_permits())
                    .filter(|&(_, max)| max == max_upgrades)
                    .map(|(open, _)| open.clone())
                    .unwrap_or_else(|| Arc::new(Semaphore::new(max_upgrades))),
                max_open: max_upgrades,
            }),
    )
    .with_websockets(websockets)
}
