//! Tenants: the model a server is built from ([`Tenant`]: a component,
//! loaded or to load on demand, its routes, limits and access), and turning
//! tenants into the table the HTTP side serves from, where a tenant replaced
//! by one of the same name keeps its permits, its CPU share and (for the
//! same file, unchanged) its loaded component.

use std::sync::Arc;

use super::Builder;
use crate::account::Account;
use crate::config::TenantLimits;
use crate::config::WasiAccess;
use crate::http::{
    CarryOver, GuestSource, GuestTasks, InternalTenants, LiveTenant, Loader, ServerParts,
    TenantTable,
};
use crate::routing::{DuplicateRoute, Route, Routes};
use crate::wasm::{ComponentFile, CpuShare, GuestPre, InstanceCap, LogBudget, Sandbox};

/// One tenant of a server: a component, the routes that lead to it, and
/// what its requests may use and reach.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Names the tenant in logs and metrics.
    pub name: String,
    /// Its component.
    pub component: TenantComponent,
    /// Where its requests come from.
    pub routes: Vec<Route>,
    /// What its requests may use.
    pub limits: TenantLimits,
    /// What its guests may reach.
    pub access: WasiAccess,
}

/// A tenant's component: loaded, or loaded when its first request comes.
#[derive(Clone, Debug)]
pub enum TenantComponent {
    /// Loaded: its requests are served at once, and it stays loaded.
    Loaded(GuestPre),
    /// Loaded when the tenant's first request comes (its requests wait for
    /// the load, up to [`LoadSettings::load_timeout`]), unloaded when idle
    /// or past the budget of loaded code, and loaded again by the next
    /// request ([`LoadSettings`]). A load that fails answers the tenant's
    /// requests with 500 until the file changes.
    ///
    /// [`LoadSettings`]: crate::config::LoadSettings
    /// [`LoadSettings::load_timeout`]: crate::config::LoadSettings::load_timeout
    OnDemand(ComponentFile),
}

impl From<GuestPre> for TenantComponent {
    fn from(pre: GuestPre) -> Self {
        Self::Loaded(pre)
    }
}

impl TenantComponent {
    /// Its name in logs: the component's (the file's path).
    pub fn name(&self) -> String {
        match self {
            Self::Loaded(pre) => pre.name().into(),
            Self::OnDemand(file) => file.path.display().to_string(),
        }
    }
}

/// The table of `tenants`, each made live; a tenant of `before` with the
/// same name hands on its permits and CPU share.
pub(super) fn tenant_table(
    builder: &Builder,
    tenants: Vec<Tenant>,
    tasks: &GuestTasks,
    account: &Arc<Account>,
    loader: &Arc<Loader>,
    internal: &InternalTenants,
    before: Option<&TenantTable>,
) -> Result<TenantTable, DuplicateRoute> {
    let routes = Routes::new(
        tenants
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.routes.iter().map(move |r| (r.clone(), i))),
        |i| tenants[i].name.clone(),
    )?;
    let server = ServerParts {
        stop: builder.stop.clone(),
        metrics: builder.metrics.clone(),
        errors: builder.errors.clone(),
        upgrade: builder.upgrade.clone(),
        tasks: tasks.clone(),
        access_log: builder.settings.access_log,
        write_timeout: builder.settings.http.write_timeout,
        account: account.clone(),
    };
    let carried = |name: &str| {
        before
            .and_then(|table| table.tenants.iter().find(|t| t.name() == name))
            .map(|t| t.carry_over())
            .unwrap_or_default()
    };
    let tenants = tenants
        .into_iter()
        .map(|tenant| {
            let before = carried(&tenant.name);
            Arc::new(go_live(builder, &server, loader, internal, tenant, before))
        })
        .collect();
    Ok(TenantTable::new(routes, tenants))
}

/// A tenant made live, with what the same tenant until now hands on
/// (`before`): its permits and its CPU share.
fn go_live(
    builder: &Builder,
    server: &ServerParts,
    loader: &Arc<Loader>,
    internal: &InternalTenants,
    tenant: Tenant,
    before: CarryOver,
) -> LiveTenant {
    let name: Arc<str> = tenant.name.into();
    let limits = &tenant.limits;
    let cpu = builder
        .settings
        .max_tenant_workers
        .map(|workers| before.cpu.clone().unwrap_or_else(|| CpuShare::new(workers)));
    let sandbox = Sandbox {
        tenant: name.clone(),
        limits: limits.instance,
        opened: Sandbox::open_dirs(&tenant.access),
        log_budget: Arc::new(LogBudget::new(limits.max_log_lines_per_second)),
        outbound_connections: Default::default(),
        access: tenant.access,
        cpu,
        upstream: builder.upstream.clone(),
        tenants: Some(Arc::new(internal.clone())),
        max_instances: limits.max_concurrent_requests,
        instance_cap: InstanceCap::carried(before.instance_cap.as_ref(), limits.instances()),
        account: match &before.account {
            Some(account) if account.limit() == limits.max_host_memory => account.clone(),
            _ => Account::under(&server.account, limits.max_host_memory),
        },
        events: Some(Arc::new(crate::metrics::TenantInstances::new(
            builder.metrics.clone(),
            name.clone(),
        ))),
    };
    builder.metrics.track_account(&name, &sandbox.account);
    let component = tenant.component.name();
    let source = match tenant.component {
        TenantComponent::Loaded(pre) => GuestSource::Loaded(pre),
        TenantComponent::OnDemand(file) => GuestSource::OnDemand {
            file,
            loader: loader.clone(),
        },
    };
    LiveTenant::new(name, &component, limits, source, sandbox, server, before)
}
