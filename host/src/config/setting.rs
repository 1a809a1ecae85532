//! What one entry of a settings table is ([`Setting`]): a setting's key and
//! flag, its help, and how its text is read and shown. The tables
//! themselves are in `settings.rs`.

use std::time::Duration;

use super::units::show_duration;

/// One setting: its name, its help, and how its text is read into `T`
/// (a [`ServerSettings`](super::ServerSettings) or
/// [`TenantLimits`](super::TenantLimits)). What it means is the doc of the
/// field it sets.
pub struct Setting<T> {
    /// The config key; the flag is `--` and the key with dashes.
    pub key: &'static str,
    /// What the value is, in `--help` (`TIME`, `SIZE`, `N`).
    pub value_name: &'static str,
    /// The `--help` section, if not the main one.
    pub heading: Option<&'static str>,
    /// What it means, in short, for `--help`: the field's doc is the
    /// definition, and this may leave things out but never say otherwise.
    pub help: &'static str,
    /// For a setting of several values: its flag, given once per value
    /// (`--trusted-proxy`); its config key takes an array. `None` for a
    /// setting of one value.
    pub(super) list_flag: Option<&'static str>,
    /// A switch: its flag alone turns it on (`--http3`), `--flag=false`
    /// off; its config key is a boolean.
    pub switch: bool,
    /// Reads one value (of a list: adds it).
    pub(super) set: fn(&mut T, &str) -> Result<(), String>,
    pub(super) show: fn(&T) -> Option<String>,
}

impl<T> Setting<T> {
    /// Reads `text` into `settings`; the error says what is wrong with it.
    /// A setting of several values adds it to those it has.
    pub fn set(&self, settings: &mut T, text: &str) -> Result<(), String> {
        (self.set)(settings, text)
    }

    /// The value in `settings` as it would be written, when it has one
    /// worth showing (`[default: 30s]`).
    pub fn show(&self, settings: &T) -> Option<String> {
        (self.show)(settings)
    }

    /// The flag: `--` and the key with dashes, or the flag of a setting of
    /// several values.
    pub fn flag(&self) -> String {
        match self.list_flag {
            Some(flag) => flag.into(),
            None => self.key.replace('_', "-"),
        }
    }

    /// Whether the setting takes several values: its flag may be given
    /// again, its config key is an array.
    pub fn is_list(&self) -> bool {
        self.list_flag.is_some()
    }
}

/// A table entry: `key: [field path] "VALUE", parse, show, heading, help`;
/// for a list, `key: [field path] each "flag" "VALUE", add, heading,
/// help`, where `add` reads one value into the field; for a switch,
/// `key: [field path] switch, heading, help`.
macro_rules! setting {
    ($key:ident: [$($field:tt)+] switch, $heading:expr, $help:expr) => {
        Setting {
            switch: true,
            ..setting!($key: [$($field)+] "BOOL", super::units::parse_bool, count, $heading,
                $help)
        }
    };
    ($key:ident: [$($field:tt)+] each $flag:literal $value:literal, $add:expr, $heading:expr,
     $help:expr) => {
        Setting {
            key: stringify!($key),
            value_name: $value,
            heading: $heading,
            help: $help,
            list_flag: Some($flag),
            switch: false,
            set: |settings, text| ($add)(&mut settings.$($field)+, text),
            show: |_| None,
        }
    };
    ($key:ident: [$($field:tt)+] $value:literal, $parse:expr, $show:expr, $heading:expr, $help:expr) => {
        Setting {
            key: stringify!($key),
            value_name: $value,
            heading: $heading,
            help: $help,
            list_flag: None,
            switch: false,
            set: |settings, text| {
                settings.$($field)+ = ($parse)(text)?;
                Ok(())
            },
            show: |settings| ($show)(&settings.$($field)+),
        }
    };
}
pub(super) use setting;

pub(super) fn duration(value: &Duration) -> Option<String> {
    Some(show_duration(value))
}

pub(super) fn count<T: ToString>(value: &T) -> Option<String> {
    Some(value.to_string())
}

/// For settings whose default is hyper's, said in their help.
pub(super) fn unset<T>(_: &T) -> Option<String> {
    None
}
