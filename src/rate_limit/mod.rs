//! `governor` limiters owned by the application state (never statics): per client (keyed,
//! stale keys evicted on a timer), per form (one direct, lock-free limiter per form, so no
//! keys at all), and the caps on mail to addresses nobody confirmed. Also the one place the
//! client IP is resolved.
//!
//! A client is its IPv4 address, or its IPv6 /64: one subscriber's allocation, so a script
//! rotating addresses inside it is still one client. Mail caps count IPv4 /24s.
//!
//! With `redis.url` set, every limit here has a second tier in Redis ([`shared`]), so
//! several instances share one budget: the local limiter runs first (what it refuses costs no
//! round trip; one instance never lets through more than the whole budget), and Redis decides
//! for the rest. Without Redis each instance limits on its own: N instances behind a balancer
//! let up to N times each limit through.

pub mod shared;

use std::sync::Arc;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::RateLimitSettings;

/// Which limit refused a request, and how long until it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    ClientIp(Duration),
    Form(Duration),
}

impl Limited {
    pub fn retry_after_secs(self) -> u64 {
        let (Limited::ClientIp(d) | Limited::Form(d)) = self;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    pub fn scope(self) -> &'static str {
        match self {
            Limited::ClientIp(_) => "client_ip",
            Limited::Form(_) => "form",
        }
    }
}

/// Which cap held back a message to an unconfirmed address; the text is stored as the
/// message's reason (no address in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailCap {
    Network,
    Recipient,
}

impl MailCap {
    pub fn reason(self) -> &'static str {
        match self {
            MailCap::Network => {
                "not sent: the hourly cap on mail to unconfirmed addresses from one network \
                 (rate_limit.unconfirmed_mail_per_network_per_hour) was reached"
            }
            MailCap::Recipient => {
                "not sent: the hourly cap on mail to this unconfirmed address \
                 (rate_limit.unconfirmed_mail_per_recipient_per_hour) was reached"
            }
        }
    }

    pub fn scope(self) -> &'static str {
        match self {
            MailCap::Network => "mail_network",
            MailCap::Recipient => "mail_recipient",
        }
    }
}

/// The client a request is counted as: an IPv4 address, or an IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// The network mail caps count: IPv4 /24, IPv6 /64.
pub fn mail_network(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        v6 => client_key(v6),
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, from dual-stack sockets) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub struct RateLimits {
    enabled: bool,
    /// Keyed by [`client_key`].
    /// Keyed by [`client_key`]; its state also tells how much of its burst a client has used
    /// (the spam score's burst signal), so that needs no map of its own.
    per_ip: DefaultKeyedRateLimiter<IpAddr, StateInformationMiddleware>,
    per_ip_burst: u32,
    /// Mail to unconfirmed addresses per [`mail_network`] (None: no cap).
    mail_per_network: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// ...and per recipient, keyed by a keyed 64-bit hash of the address (no address kept).
    mail_per_recipient: Option<DefaultKeyedRateLimiter<u64>>,
    recipient_hasher: std::collections::hash_map::RandomState,
    /// Failed admin credentials per client IP (always on: a guess costs a cell).
    admin_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients that ran out of admin guesses, until when (bounded: see [`MAX_BLOCKED`]).
    admin_blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
    per_form: Vec<DefaultDirectRateLimiter>,
    /// Form views per client network (None: no limit).
    views_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// More of the per-IP burst used at once than this is a burst (a spam signal); 0: off.
    spam_burst: u32,
    trusted_proxies: Vec<IpNet>,
    clock: DefaultClock,
    /// The quotas again, for the shared tier.
    quotas: Quotas,
    shared: Option<Arc<shared::Shared>>,
}

#[derive(Clone, Copy)]
struct Quotas {
    ip: Quota,
    form: Quota,
    view: Option<Quota>,
    mail_network: Option<Quota>,
    mail_recipient: Option<Quota>,
    admin: Quota,
}

/// What the second tier ([`RateLimits::confirm`]) decided for a request it let through.
#[derive(Debug, Default)]
pub struct Confirmed {
    /// The client network's shared burst use is past `spam.burst` (a spam signal).
    pub burst: bool,
    /// Recipients whose mail is held, and by which cap.
    held: Vec<(String, MailCap)>,
    /// Admitted before Redis answered: its cells are still being taken there.
    receipt: Option<shared::Receipt>,
}

impl Confirmed {
    /// Waits until the request's shared cells are taken (at once when it was decided by
    /// Redis or locally); call it before answering the client.
    pub async fn settled(&mut self) {
        if let Some(receipt) = self.receipt.take() {
            receipt.settled().await;
        }
    }

    /// The cap that holds mail to `recipient`, if one does.
    pub fn held(&self, recipient: &str) -> Option<MailCap> {
        self.held
            .iter()
            .find(|(r, _)| r == recipient)
            .map(|(_, cap)| *cap)
    }
}

/// What a request that passed the limits showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The client network has used more of its per-IP burst at once than `spam.burst`.
    pub burst: bool,
}

/// Failed admin credentials a client IP may send per minute before it is refused for a minute.
pub const ADMIN_FAILURES_PER_MINUTE: u32 = 10;

/// Most client IPs refused at once for failed admin credentials; past it the oldest entries go
/// first, so memory stays bounded whatever a botnet sends.
const MAX_BLOCKED: usize = 10_000;

/// `n` an hour, all usable at once; none for 0.
fn hourly(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(|n| Quota::per_hour(n).allow_burst(n))
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings, forms: usize, trusted_proxies: Vec<IpNet>) -> Self {
        let ip_quota = Quota::per_minute(nz(settings.per_ip_per_minute))
            .allow_burst(nz(settings.per_ip_burst.max(1)));
        let form_quota = Quota::per_second(nz(settings.per_form_per_second))
            .allow_burst(nz(settings.per_form_burst.max(1)));
        let quotas = Quotas {
            ip: ip_quota,
            form: form_quota,
            view: NonZeroU32::new(settings.views_per_ip_per_minute)
                .filter(|_| settings.enabled)
                .map(|n| Quota::per_minute(n).allow_burst(n)),
            mail_network: hourly(settings.unconfirmed_mail_per_network_per_hour),
            mail_recipient: hourly(settings.unconfirmed_mail_per_recipient_per_hour),
            admin: Quota::per_minute(nz(ADMIN_FAILURES_PER_MINUTE)),
        };
        RateLimits {
            enabled: settings.enabled,
            per_ip: RateLimiter::keyed(ip_quota).with_middleware::<StateInformationMiddleware>(),
            per_ip_burst: settings.per_ip_burst.max(1),
            mail_per_network: quotas.mail_network.map(RateLimiter::keyed),
            mail_per_recipient: quotas.mail_recipient.map(RateLimiter::keyed),
            recipient_hasher: std::collections::hash_map::RandomState::new(),
            admin_failures: RateLimiter::keyed(quotas.admin),
            admin_blocked: std::sync::Mutex::new(std::collections::HashMap::new()),
            per_form: (0..forms)
                .map(|_| RateLimiter::direct(form_quota))
                .collect(),
            views_per_ip: quotas.view.map(RateLimiter::keyed),
            spam_burst: 0,
            trusted_proxies,
            clock: DefaultClock::default(),
            quotas,
            shared: None,
        }
    }

    /// Shares every limit through Redis (see [`shared`]); `None`: per instance.
    #[must_use]
    pub fn with_shared(mut self, shared: Option<Arc<shared::Shared>>) -> Self {
        self.shared = shared;
        self
    }

    /// The shared tier, for other limiters (the console's sign-in throttle).
    pub fn shared(&self) -> Option<&Arc<shared::Shared>> {
        self.shared.as_ref()
    }

    /// A client network that has used more than `n` of its per-IP burst at once is sending in
    /// a burst ([`Admitted::burst`], a spam signal); 0: never.
    #[must_use]
    pub fn with_spam_burst(mut self, n: u32) -> Self {
        self.spam_burst = n;
        self
    }

    /// The first tier, before a request's body is read: takes one cell from this instance's
    /// limiters for the client and the form. What passes still needs [`RateLimits::confirm`].
    pub fn check(&self, client: Option<IpAddr>, form_index: usize) -> Result<Admitted, Limited> {
        let mut admitted = Admitted::default();
        if !self.enabled {
            return Ok(admitted);
        }
        if let Some(ip) = client {
            let state = self
                .per_ip
                .check_key(&client_key(ip))
                .map_err(|n| Limited::ClientIp(n.wait_time_from(self.clock.now())))?;
            let used = self
                .per_ip_burst
                .saturating_sub(state.remaining_burst_capacity());
            admitted.burst = self.burst(used);
        }
        if let Some(limiter) = self.per_form.get(form_index) {
            limiter
                .check()
                .map_err(|n| Limited::Form(n.wait_time_from(self.clock.now())))?;
        }
        Ok(admitted)
    }

    fn burst(&self, used: u32) -> bool {
        self.spam_burst > 0 && used > self.spam_burst
    }

    /// The second tier, once the request is parsed and its mail planned, in **one** Redis
    /// round trip: the client's and the form's shared budgets (`form_id` names the form's,
    /// the same on every instance), then the caps on mail to each of `recipients` (addresses
    /// nobody confirmed), which spend nothing when the request is refused. Without Redis, or
    /// when it cannot answer, the caps are this instance's alone.
    pub async fn confirm(
        &self,
        client: Option<IpAddr>,
        form_id: &str,
        recipients: &[&str],
    ) -> Result<Confirmed, Limited> {
        let mut confirmed = Confirmed::default();
        // The caps are counted where the decision is made: in Redis when it answers (so a
        // request it refuses spends none), here when there is none or it cannot answer.
        let local_caps = |mut confirmed: Confirmed| {
            for recipient in recipients {
                if let Err(cap) = self.local_mail_cap(client, recipient) {
                    confirmed.held.push(((*recipient).to_string(), cap));
                }
            }
            confirmed
        };
        let Some(shared) = &self.shared else {
            return Ok(local_caps(confirmed));
        };
        let mut groups = Vec::with_capacity(1 + recipients.len());
        if self.enabled {
            let mut limits = Vec::with_capacity(2);
            if let Some(ip) = client {
                limits.push(shared::Limit::new(
                    shared.key("ip", client_key(ip)),
                    self.quotas.ip,
                ));
            }
            limits.push(shared::Limit::new(
                shared.key("form", form_id),
                self.quotas.form,
            ));
            groups.push(shared::Group {
                limits,
                after_first: false,
            });
        }
        let caps_from = groups.len();
        // Per recipient sent to Redis, which cap each of its limits is.
        let mut cap_kinds = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let (limits, kinds) = self.cap_limits(shared, client, recipient);
            groups.push(shared::Group {
                limits,
                after_first: true,
            });
            cap_kinds.push((*recipient, kinds));
        }
        groups.retain(|g| !g.limits.is_empty());
        if groups.is_empty() {
            return Ok(confirmed);
        }
        let (decisions, receipt) = shared.decide(groups).await;
        confirmed.receipt = receipt;
        let Some(decisions) = decisions else {
            return Ok(local_caps(confirmed));
        };
        if self.enabled {
            match decisions.first().copied().flatten() {
                Some(shared::Decision::Refused { index, wait }) => {
                    return Err(if client.is_some() && index == 0 {
                        Limited::ClientIp(wait)
                    } else {
                        Limited::Form(wait)
                    });
                }
                Some(shared::Decision::Allowed { used }) if client.is_some() => {
                    confirmed.burst = self.burst(used);
                }
                _ => {}
            }
        }
        let capped = cap_kinds.iter().filter(|(_, k)| !k.is_empty());
        for ((recipient, kinds), decision) in capped.zip(decisions.iter().skip(caps_from)) {
            if let Some(shared::Decision::Refused { index, .. }) = decision {
                let cap = kinds.get(*index).copied().unwrap_or(MailCap::Recipient);
                confirmed.held.push(((*recipient).to_string(), cap));
            }
        }
        Ok(confirmed)
    }

    /// The shared limits of mail to `recipient` because `client` asked, and which cap each is.
    fn cap_limits(
        &self,
        shared: &shared::Shared,
        client: Option<IpAddr>,
        recipient: &str,
    ) -> (Vec<shared::Limit>, Vec<MailCap>) {
        let mut limits = Vec::with_capacity(2);
        let mut kinds = Vec::with_capacity(2);
        if let (Some(quota), Some(ip)) = (self.quotas.mail_network, client) {
            limits.push(shared::Limit::new(
                shared.key("mailnet", mail_network(ip)),
                quota,
            ));
            kinds.push(MailCap::Network);
        }
        if let Some(quota) = self.quotas.mail_recipient {
            limits.push(shared::Limit::new(
                shared.hashed_key("mailto", recipient),
                quota,
            ));
            kinds.push(MailCap::Recipient);
        }
        (limits, kinds)
    }

    /// Takes one cell from the client network's view limiter.
    pub async fn check_view(&self, client: Option<IpAddr>) -> Result<(), Limited> {
        let (Some(limiter), Some(ip), Some(quota)) = (&self.views_per_ip, client, self.quotas.view)
        else {
            return Ok(());
        };
        limiter
            .check_key(&client_key(ip))
            .map_err(|n| Limited::ClientIp(n.wait_time_from(self.clock.now())))?;
        self.shared_check(vec![("view", client_key(ip).to_string(), quota)])
            .await
            .map_err(|(_, wait)| Limited::ClientIp(wait))
    }

    /// Redis's verdict on `limits` (kind, id, quota); `Ok` without Redis or when it cannot
    /// decide. `Err` names the refusing limit's kind.
    async fn shared_check(
        &self,
        limits: Vec<(&'static str, String, Quota)>,
    ) -> Result<(), (&'static str, Duration)> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let keyed: Vec<shared::Limit> = limits
            .iter()
            .map(|(kind, id, quota)| shared::Limit::new(shared.key(kind, id), *quota))
            .collect();
        match shared.check(&keyed).await {
            Some(shared::Decision::Refused { index, wait }) => {
                Err((limits.get(index).map_or("", |l| l.0), wait))
            }
            _ => Ok(()),
        }
    }

    /// Takes one cell of this instance's caps for a message to an address nobody confirmed,
    /// sent because `client` submitted it: from the client network's cap, then the
    /// recipient's.
    fn local_mail_cap(&self, client: Option<IpAddr>, recipient: &str) -> Result<(), MailCap> {
        if let (Some(limiter), Some(ip)) = (&self.mail_per_network, client) {
            limiter
                .check_key(&mail_network(ip))
                .map_err(|_| MailCap::Network)?;
        }
        if let Some(limiter) = &self.mail_per_recipient {
            use std::hash::BuildHasher;
            limiter
                .check_key(&self.recipient_hasher.hash_one(recipient))
                .map_err(|_| MailCap::Recipient)?;
        }
        Ok(())
    }

    /// How long `client` is still refused for failed admin credentials, if it is (by this
    /// instance, or through Redis by any).
    pub async fn admin_refused(&self, client: Option<IpAddr>) -> Option<Duration> {
        let client = client?;
        let now = std::time::Instant::now();
        let local = self
            .admin_blocked
            .lock()
            .ok()
            .and_then(|blocked| blocked.get(&client).copied())
            .filter(|until| *until > now)
            .map(|until| until - now);
        if local.is_some() {
            return local;
        }
        let shared = self.shared.as_ref()?;
        shared.marked(&shared.key("adminblock", client)).await
    }

    /// Counts a failed admin credential from `client`; past the quota the client is refused
    /// for a minute (the answer says how long), on every instance when Redis is shared.
    pub async fn admin_failed(&self, client: Option<IpAddr>) -> Option<Duration> {
        let client = client?;
        let local = self.admin_failures.check_key(&client).is_err();
        let global = !local
            && self
                .shared_check(vec![("adminfail", client.to_string(), self.quotas.admin)])
                .await
                .is_err();
        if !local && !global {
            return None;
        }
        let wait = Duration::from_secs(60);
        if let Some(shared) = &self.shared {
            shared.mark(&shared.key("adminblock", client), wait).await;
        }
        let now = std::time::Instant::now();
        if let Ok(mut blocked) = self.admin_blocked.lock() {
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_BLOCKED {
                if let Some(oldest) = blocked.iter().min_by_key(|(_, u)| **u).map(|(ip, _)| *ip) {
                    blocked.remove(&oldest);
                }
            }
            blocked.insert(client, now + wait);
        }
        Some(wait)
    }

    /// Drops keys whose limiter is back to full: memory stays bounded by recent clients.
    pub fn evict_stale(&self) {
        self.admin_failures.retain_recent();
        self.admin_failures.shrink_to_fit();
        if let Ok(mut blocked) = self.admin_blocked.lock() {
            let now = std::time::Instant::now();
            blocked.retain(|_, until| *until > now);
        }
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        if let Some(limiter) = &self.views_per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.mail_per_network {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.mail_per_recipient {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    pub fn tracked_client_ips(&self) -> usize {
        self.per_ip.len()
    }

    /// The client's IP: the peer, or — only when the peer is a trusted proxy — the rightmost
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let Some(xff) = forwarded_for else {
            return Some(peer);
        };
        let mut client = peer;
        for entry in xff.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> RateLimits {
        RateLimits::new(
            &RateLimitSettings::default(),
            1,
            trusted.iter().map(|s| s.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let l = limits(&[]);
        let peer = "198.51.100.1".parse().ok();
        assert_eq!(l.client_ip(peer, Some("1.2.3.4")), peer);
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_through_trusted_proxies() {
        let l = limits(&["10.0.0.0/8"]);
        let peer = "10.0.0.1".parse().ok();
        let got = l.client_ip(peer, Some("6.6.6.6, 203.0.113.9, 10.0.0.7"));
        assert_eq!(got, "203.0.113.9".parse().ok());
    }

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_64s_and_mail_caps_count_24s() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(client_key(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(mail_network(ip("203.0.113.9")), ip("203.0.113.0"));
        assert_eq!(
            mail_network(ip("2001:db8:1:2:ffff::7")),
            ip("2001:db8:1:2::")
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            Limited::ClientIp(Duration::from_millis(1)).retry_after_secs(),
            1
        );
        assert_eq!(Limited::Form(Duration::from_secs(2)).retry_after_secs(), 2);
    }
}
