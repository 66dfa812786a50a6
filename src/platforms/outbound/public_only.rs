//! Reaching only the public internet at an address someone else chose.
//!
//! A post's media URL is the author's to choose, and an account's PDS is whatever its DID
//! document says: fetched naively, either makes the engine a door into the network it runs
//! in (loopback services, the private network, a cloud's metadata service at
//! 169.254.169.254). So these are fetched through a [`GuardedClient`]: its resolver
//! ([`PublicOnly`]) resolves each host when a connection is opened — every connection,
//! so a name that answers a public address first and a private one later (DNS rebinding)
//! is judged again — and keeps only public addresses; an IP literal, which reqwest
//! connects to without asking the resolver, is judged by [`GuardedClient::check`] before
//! the request is sent. Redirects are never followed (as everywhere in `outbound`), and
//! no proxy is used, so the address judged is the address connected to. A refusal is
//! [`NotPublic`], found in a reqwest error's causes by [`not_public`]: nothing was sent,
//! so it says nothing about whether anything listens there.
//!
//! What is public is decided by [`non_public_range`], from the IANA special-purpose
//! address registries. The configuration key `allow_private_media_urls` turns the guard
//! off (the sandbox serves media on 127.0.0.1).

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use social_studio_actors::PortError;
use url::{Host, Url};

use super::media_budget::MediaBudget;
use super::{Call, CallMeter, ClientBuildError};

/// IPv4 ranges that are not the public internet, each with what it is. Checked in order;
/// the first match names the range.
const V4: &[(Ipv4Net, &str)] = &[
    (
        v4(0, 0, 0, 0, 8),
        "\"this network\" (0.0.0.0/8, the unspecified address included)",
    ),
    (v4(10, 0, 0, 0, 8), "private (RFC 1918)"),
    (
        v4(100, 64, 0, 0, 10),
        "shared address space (carrier-grade NAT, RFC 6598)",
    ),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (
        v4(169, 254, 0, 0, 16),
        "link-local (cloud metadata services included)",
    ),
    (v4(172, 16, 0, 0, 12), "private (RFC 1918)"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation (TEST-NET-1)"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private (RFC 1918)"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation (TEST-NET-2)"),
    (v4(203, 0, 113, 0, 24), "documentation (TEST-NET-3)"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 ranges that are not the public internet. IPv4-mapped addresses (`::ffff:a.b.c.d`)
/// and the NAT64 prefix (`64:ff9b::/96`) are judged by the IPv4 address they carry.
const V6: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
    ),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use IPv4/IPv6 translation",
    ),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments (Teredo included)",
    ),
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing (SRv6) SIDs",
    ),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// The NAT64 well-known prefix: its last 32 bits are an IPv4 address.
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        prefix,
    )
}

/// What kind of non-public address `ip` is (`"loopback"`, `"private (RFC 1918)"`, …), or
/// `None` for an address on the public internet.
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => V4.iter().find(|(net, _)| net.contains(&ip)).map(|r| r.1),
        IpAddr::V6(ip) => {
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return non_public_range(IpAddr::V4(mapped));
            }
            if NAT64.contains(&ip) {
                let [.., a, b, c, d] = ip.octets();
                return non_public_range(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            V6.iter().find(|(net, _)| net.contains(&ip)).map(|r| r.1)
        }
    }
}

/// A host that is, or resolves only to, addresses outside the public internet. Its text
/// names the host, never what (if anything) answers there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is not a public internet address")]
pub struct NotPublic {
    /// The host as written in the URL (a name or an IP literal).
    pub host: String,
}

/// The [`NotPublic`] refusal among a failed request's causes, if that is why it failed.
pub fn not_public<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a NotPublic> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(refusal) = error.downcast_ref::<NotPublic>() {
            return Some(refusal);
        }
        cause = error.source();
    }
    None
}

/// A resolver that answers only the public addresses a name has, and refuses a name that
/// has none ([`NotPublic`]). reqwest calls it for every connection it opens.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            type BoxError = Box<dyn StdError + Send + Sync>;
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| non_public_range(addr.ip()).is_none())
                .collect();
            if public.is_empty() && !found.is_empty() {
                tracing::warn!(%host, "refused a host that resolves only to non-public addresses");
                return Err(Box::new(NotPublic { host }) as BoxError);
            }
            Ok::<Addrs, BoxError>(Box::new(public.into_iter()))
        })
    }
}

/// Whether a [`GuardedClient`] may reach addresses outside the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only the public internet: the default.
    PublicOnly,
    /// Any address: `allow_private_media_urls` (the sandbox, tests).
    Any,
}

impl Reach {
    /// [`Reach::Any`] when private addresses are allowed, else [`Reach::PublicOnly`].
    pub fn allowing_private(allowed: bool) -> Reach {
        if allowed {
            Reach::Any
        } else {
            Reach::PublicOnly
        }
    }
}

/// A reqwest client for addresses someone else chose (media, a DID document's PDS): with
/// [`Reach::PublicOnly`], resolved through [`PublicOnly`] and without a proxy, whatever
/// the host's builder said. Otherwise as [`Outbound::client`](super::Outbound::client):
/// the host's settings under the engine's limits (redirects disabled, the given
/// timeout, a bounded connect timeout). Media it fetches are held against its
/// [`MediaBudget`] (its own default budget unless
/// [`with_media_budget`](Self::with_media_budget) shares the engine's), and counted as
/// its platform's `media_fetch`.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    http: reqwest::Client,
    reach: Reach,
    budget: MediaBudget,
    meter: CallMeter,
}

impl GuardedClient {
    /// For this crate's tests: the client from reqwest's defaults, counting into a count
    /// of its own as X's (adapters are built through
    /// [`Outbound::guarded`](super::Outbound::guarded)).
    #[cfg(test)]
    pub(crate) fn new(timeout: Duration, reach: Reach) -> Result<GuardedClient, ClientBuildError> {
        super::Outbound::default().guarded(social_studio_storage::Platform::X, timeout, reach)
    }

    /// Builds the client from the host's `builder`: the engine's limits on top, and with
    /// [`Reach::PublicOnly`] its own resolver and no proxy.
    pub(super) fn build(
        builder: reqwest::ClientBuilder,
        timeout: Duration,
        reach: Reach,
        meter: CallMeter,
    ) -> Result<GuardedClient, ClientBuildError> {
        let builder = super::engine_limits(builder, timeout);
        let builder = match reach {
            Reach::Any => builder,
            Reach::PublicOnly => builder.dns_resolver(Arc::new(PublicOnly)).no_proxy(),
        };
        Ok(GuardedClient {
            http: builder.build().map_err(ClientBuildError)?,
            reach,
            budget: MediaBudget::default(),
            meter,
        })
    }

    /// Whose fetches these are, for the call count.
    pub fn meter(&self) -> &CallMeter {
        &self.meter
    }

    /// Holds fetched media against `budget`, shared with the engine's other adapters.
    pub fn with_media_budget(mut self, budget: MediaBudget) -> GuardedClient {
        self.budget = budget;
        self
    }

    /// The budget fetched media are held against.
    pub fn media_budget(&self) -> &MediaBudget {
        &self.budget
    }

    /// What this client may reach.
    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Refuses a URL whose host is an IP literal outside the public internet (the
    /// resolver never sees those). Names are judged when they are resolved; a URL that
    /// does not parse is left for the request to refuse.
    pub fn check(&self, url: &str) -> Result<(), NotPublic> {
        if self.reach == Reach::Any {
            return Ok(());
        }
        let Ok(url) = Url::parse(url) else {
            return Ok(());
        };
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        match non_public_range(ip) {
            Some(_) => Err(NotPublic {
                host: url.host_str().unwrap_or_default().to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// The reqwest client, for building requests. Send them only after [`check`](Self::check).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// [`super::exchange`] for a request a [`GuardedClient`] may refuse: a refusal of its
/// resolver is answered by `refused` (nothing was sent), any other failure as there.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    call: Call<'_>,
    refused: impl FnOnce(&NotPublic) -> PortError,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), PortError> {
    super::exchange_with(request, call, |error| match not_public(&error) {
        Some(refusal) => refused(refusal),
        None => super::transport_failure(error),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<&'static str> {
        non_public_range(ip.parse().unwrap())
    }

    #[test]
    fn every_special_ipv4_range_is_refused() {
        let refused = [
            ("0.0.0.0", "this network"),
            ("0.1.2.3", "this network"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "shared address space"),
            ("100.127.255.254", "shared address space"),
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF"),
            ("192.0.2.10", "documentation"),
            ("192.88.99.1", "6to4"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (ip, kind) in refused {
            let got = range(ip).unwrap_or_else(|| panic!("{ip} was taken for public"));
            assert!(got.contains(kind), "{ip}: {got}");
        }
    }

    #[test]
    fn public_ipv4_neighbours_of_the_ranges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_special_ipv6_range_is_refused() {
        let refused = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::7f00:1", "IPv4-compatible"),
            ("64:ff9b:1::1", "translation"),
            ("100::1", "discard"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "IETF"),
            ("2002:7f00:1::1", "6to4"),
            ("3fff::1", "documentation"),
            ("5f00::1", "SRv6"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
        ];
        for (ip, kind) in refused {
            let got = range(ip).unwrap_or_else(|| panic!("{ip} was taken for public"));
            assert!(got.contains(kind), "{ip}: {got}");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
        ] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    #[test]
    fn mapped_and_nat64_addresses_are_judged_by_their_ipv4_address() {
        assert_eq!(range("::ffff:127.0.0.1"), Some("loopback"));
        assert!(range("::ffff:169.254.169.254")
            .unwrap()
            .contains("link-local"));
        assert!(range("::ffff:10.1.2.3").unwrap().contains("private"));
        assert!(range("::ffff:100.64.0.1").unwrap().contains("shared"));
        assert_eq!(range("::ffff:8.8.8.8"), None);
        assert_eq!(range("64:ff9b::7f00:1"), Some("loopback"));
        assert!(range("64:ff9b::a9fe:a9fe").unwrap().contains("link-local"));
        assert_eq!(range("64:ff9b::808:808"), None);
    }

    #[test]
    fn ip_literals_are_checked_before_sending_and_names_are_left_to_the_resolver() {
        let guarded = GuardedClient::new(Duration::from_secs(1), Reach::PublicOnly).unwrap();
        for url in [
            "http://127.0.0.1:8080/a.png",
            "http://[::1]/a.png",
            "http://[::ffff:7f00:1]/a.png",
            "http://169.254.169.254/latest/meta-data/",
            // The URL parser reads these as IPv4 addresses, as a browser would.
            "http://2130706433/a.png",
            "http://0x7f.1/a.png",
            "https://10.0.0.1/a.png",
        ] {
            assert!(guarded.check(url).is_err(), "{url}");
        }
        for url in [
            "https://8.8.8.8/a.png",
            "https://example.com/a.png",
            "not a url",
        ] {
            assert_eq!(guarded.check(url), Ok(()), "{url}");
        }
        let open = GuardedClient::new(Duration::from_secs(1), Reach::Any).unwrap();
        assert_eq!(open.check("http://127.0.0.1/a.png"), Ok(()));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_only_private_addresses() {
        let name: Name = "localhost".parse().unwrap();
        let error = match PublicOnly.resolve(name).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        assert_eq!(
            not_public(error.as_ref()),
            Some(&NotPublic {
                host: "localhost".to_owned()
            })
        );
    }
}
