//! Whether a tenant takes one more request, and on what terms: its permits
//! (requests, WebSockets, upgraded connections), its rate, whether it is in
//! service, and how large a request body may be. A replaced tenant hands
//! its permits on ([`Permits::carried`]), so what it still runs counts
//! against its successor's limits.

use std::sync::Arc;

use http_body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::HostError;
use super::body::{BodyLimit, IncomingBody, LimitedBody};
use crate::bucket::TokenBucket;
use crate::config::TenantLimits;

/// A tenant's permits of one kind: one per request (or socket, or upgraded
/// connection) it may have at once.
#[derive(Clone, Debug)]
pub(crate) struct Permits {
    open: Arc<Semaphore>,
    max: usize,
}

impl Permits {
    /// `max` permits: `before`'s when it had as many (what it still holds
    /// counts on), else new ones.
    pub(crate) fn carried(before: Option<&Permits>, max: usize) -> Self {
        match before {
            Some(before) if before.max == max => before.clone(),
            _ => Self {
                open: Arc::new(Semaphore::new(max)),
                max,
            },
        }
    }

    /// One permit, unless all are taken.
    pub(crate) fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.open.clone().try_acquire_owned().ok()
    }
}

/// How one tenant's requests are admitted: how many run at once, how many a
/// second, whether at all, and how large a body may be.
#[derive(Debug)]
pub(crate) struct Admission {
    /// One permit per request running, held until its guest ends.
    requests: Permits,
    /// Requests admitted per second, when limited.
    rate: Option<RateLimit>,
    out_of_service: bool,
    /// The largest request body, in bytes.
    max_body_size: u64,
}

impl Admission {
    /// The admission of a tenant with `limits`; `before` is its request
    /// permits until now, when it replaces itself.
    pub(crate) fn new(limits: &TenantLimits, before: Option<&Permits>) -> Self {
        Self {
            requests: Permits::carried(before, limits.max_concurrent_requests),
            rate: limits.max_requests_per_second.map(RateLimit::new),
            out_of_service: limits.out_of_service,
            max_body_size: limits.max_body_size,
        }
    }

    /// The request permits, to hand on to a replacement.
    pub(crate) fn requests(&self) -> &Permits {
        &self.requests
    }

    /// Admits one request: its permit, held until its guest ends; or why
    /// not (503 out of service or overloaded, 429 over its rate).
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, HostError> {
        if self.out_of_service {
            return Err(HostError::OutOfService);
        }
        if let Some(rate) = &self.rate
            && !rate.admit()
        {
            return Err(HostError::RateLimited);
        }
        self.requests.try_take().ok_or(HostError::Overloaded)
    }

    /// `body` held to the tenant's limit: a declared length past it is 413
    /// before the guest runs; a body of no declared length is counted as it
    /// streams and cut at the limit, which the returned [`BodyLimit`] then
    /// says.
    pub(crate) fn limit_body(
        &self,
        body: IncomingBody,
    ) -> Result<(LimitedBody, Option<Arc<BodyLimit>>), HostError> {
        let limit = self.max_body_size;
        match body.size_hint().exact() {
            Some(declared) if declared > limit => Err(HostError::BodyTooLarge { limit }),
            Some(_) => Ok((LimitedBody::declared(body), None)),
            None => {
                let body_limit = Arc::new(BodyLimit::new(limit));
                Ok((
                    LimitedBody::counted(body, body_limit.clone()),
                    Some(body_limit),
                ))
            }
        }
    }
}

/// A tenant's requests a second: a token bucket, shared by its connections.
#[derive(Debug)]
pub(crate) struct RateLimit(std::sync::Mutex<TokenBucket>);

impl RateLimit {
    /// `per_second` requests a second, at most a second's worth at once.
    pub(crate) fn new(per_second: u32) -> Self {
        Self(std::sync::Mutex::new(TokenBucket::new(
            per_second,
            tokio::time::Instant::now(),
        )))
    }

    /// Takes a token if there is one.
    pub(crate) fn admit(&self) -> bool {
        let now = tokio::time::Instant::now();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_admits_a_burst_then_its_rate() {
        let limit = RateLimit::new(10);
        assert_eq!((0..20).filter(|_| limit.admit()).count(), 10);
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert_eq!((0..20).filter(|_| limit.admit()).count(), 5);
    }

    #[test]
    fn permits_carry_over_only_when_their_number_is_unchanged() {
        let before = Permits::carried(None, 2);
        let _held = before.try_take().expect("a permit");
        let same = Permits::carried(Some(&before), 2);
        let _second = same.try_take().expect("the other permit");
        assert!(same.try_take().is_none(), "the held permit counts on");
        let more = Permits::carried(Some(&before), 3);
        let taken: Vec<_> = (0..5).filter_map(|_| more.try_take()).collect();
        assert_eq!(taken.len(), 3, "new permits, none held");
    }
}
