//! The label sets of catshost's metrics, and the label values a client or a
//! guest chooses, bounded to a fixed set ([`Bounded`]).

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestProtocolLabels {
    pub(super) tenant: Arc<str>,
    pub(super) protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DirectionLabels {
    pub(super) tenant: Arc<str>,
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CloseLabels {
    pub(super) tenant: Arc<str>,
    pub(super) code: Bounded,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) tenant: Arc<str>,
    pub(super) status: Bounded,
    pub(super) protocol: &'static str,
}

/// A number a client or a guest chooses (a response status, a WebSocket
/// close code), as a label value from a fixed set: a registered one as
/// itself, any other as its bucket. Without it, a guest answering with
/// every status from 100 to 999, or clients closing with every code from
/// 3000 to 4999, would each make a series per value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum Bounded {
    Value(u16),
    Bucket(&'static str),
}

impl Bounded {
    /// A response status: a registered one (RFC 9110 and IANA's registry,
    /// as the `http` crate knows them) as itself, another by its class.
    pub(super) fn status(status: u16) -> Self {
        match http::StatusCode::from_u16(status) {
            Ok(code) if code.canonical_reason().is_some() => Self::Value(status),
            _ => Self::Bucket(match status {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                500..=599 => "5xx",
                _ => "other",
            }),
        }
    }

    /// A WebSocket close code: one of RFC 6455's and IANA's 1000-1015 as
    /// itself, the registered (3000-3999) and private (4000-4999) ranges as
    /// one bucket each.
    pub(super) fn close_code(code: u16) -> Self {
        match code {
            1000..=1015 => Self::Value(code),
            3000..=3999 => Self::Bucket("3xxx"),
            4000..=4999 => Self::Bucket("4xxx"),
            _ => Self::Bucket("other"),
        }
    }
}

impl EncodeLabelValue for Bounded {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Self::Value(value) => value.encode(encoder),
            Self::Bucket(bucket) => bucket.encode(encoder),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LatencyLabels {
    pub(super) tenant: Arc<str>,
    pub(super) protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TenantLabels {
    pub(super) tenant: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FaultLabels {
    pub(super) tenant: Arc<str>,
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RejectionLabels {
    pub(super) tenant: Arc<str>,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}
