//! The config file as TOML gives it, before it is checked: every value with
//! the place it is written at. `[server]` and `[defaults]` are tables of
//! keys read through the settings tables ([`super::super::SERVER_SETTINGS`],
//! [`super::super::LIMIT_SETTINGS`]); a tenant's own keys are fields here.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A table of settings: each key and value with its place.
pub(super) type Table = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFile {
    pub(super) server: Table,
    pub(super) defaults: Table,
    #[serde(rename = "tenant")]
    pub(super) tenants: Vec<RawTenant>,
}

/// `[server] tls`, read again with the places of its paths (a [`Table`]
/// keeps only the place of the whole value).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ServerTls {
    #[serde(default)]
    pub(super) server: ServerTlsTable,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ServerTlsTable {
    pub(super) tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: Spanned<String>,
    pub(super) component: Spanned<String>,
    #[serde(default)]
    pub(super) middleware: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub(super) dirs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) dirs_rw: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) outbound: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub(super) unsafe_allow_precompiled: bool,
    // The tenant's limits, by their keys in `LIMIT_SETTINGS` (serde's
    // `flatten` would lose the places and the check for unknown keys).
    pub(super) request_timeout: Option<Spanned<toml::Value>>,
    pub(super) max_memory: Option<Spanned<toml::Value>>,
    pub(super) max_concurrent_requests: Option<Spanned<toml::Value>>,
    pub(super) max_body_size: Option<Spanned<toml::Value>>,
    pub(super) max_instance_reuse_count: Option<Spanned<toml::Value>>,
    pub(super) max_instance_concurrent_reuse_count: Option<Spanned<toml::Value>>,
    pub(super) idle_instance_timeout: Option<Spanned<toml::Value>>,
    pub(super) max_requests_per_second: Option<Spanned<toml::Value>>,
    pub(super) out_of_service: Option<Spanned<toml::Value>>,
    pub(super) max_log_lines_per_second: Option<Spanned<toml::Value>>,
    pub(super) websockets: Option<Spanned<toml::Value>>,
    pub(super) max_websockets: Option<Spanned<toml::Value>>,
    pub(super) max_websockets_per_client: Option<Spanned<toml::Value>>,
    pub(super) max_tenant_host_memory: Option<Spanned<toml::Value>>,
    pub(super) max_websocket_message: Option<Spanned<toml::Value>>,
    pub(super) websocket_idle_timeout: Option<Spanned<toml::Value>>,
    pub(super) websocket_sockets_per_instance: Option<Spanned<toml::Value>>,
    pub(super) preload: Option<Spanned<toml::Value>>,
}

impl RawTenant {
    /// The limits the tenant sets itself, by key.
    pub(super) fn limits(&self) -> impl Iterator<Item = (&'static str, &Spanned<toml::Value>)> {
        [
            ("request_timeout", &self.request_timeout),
            ("max_memory", &self.max_memory),
            ("max_concurrent_requests", &self.max_concurrent_requests),
            ("max_body_size", &self.max_body_size),
            ("max_instance_reuse_count", &self.max_instance_reuse_count),
            (
                "max_instance_concurrent_reuse_count",
                &self.max_instance_concurrent_reuse_count,
            ),
            ("idle_instance_timeout", &self.idle_instance_timeout),
            ("max_requests_per_second", &self.max_requests_per_second),
            ("out_of_service", &self.out_of_service),
            ("max_log_lines_per_second", &self.max_log_lines_per_second),
            ("websockets", &self.websockets),
            ("max_websockets", &self.max_websockets),
            ("max_websockets_per_client", &self.max_websockets_per_client),
            ("max_tenant_host_memory", &self.max_tenant_host_memory),
            ("max_websocket_message", &self.max_websocket_message),
            ("websocket_idle_timeout", &self.websocket_idle_timeout),
            (
                "websocket_sockets_per_instance",
                &self.websocket_sockets_per_instance,
            ),
            ("preload", &self.preload),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.as_ref()?)))
    }
}

/// A setting's value as the text its parser reads: strings as they are,
/// numbers and booleans as written.
pub(super) fn text(value: &toml::Value) -> Result<String, &'static str> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) if *n < 0 => Err("invalid value: it cannot be negative"),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err("invalid type: expected a string, a number or a boolean"),
    }
}

/// A setting's values as the texts its parser reads: for a setting of
/// several values an array of them, each read as [`text`]; else the one.
pub(super) fn texts(value: &toml::Value, list: bool) -> Result<Vec<String>, &'static str> {
    match (value, list) {
        (toml::Value::Array(values), true) => values
            .iter()
            .map(|value| match value {
                toml::Value::String(_) => text(value),
                _ => Err("invalid type: expected an array of strings"),
            })
            .collect(),
        (_, true) => Err("invalid type: expected an array of strings, like [\"10.0.0.0/8\"]"),
        (value, false) => text(value).map(|text| vec![text]),
    }
}
