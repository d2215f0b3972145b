//! Outbound connections that Easel makes on a client's behalf — webhook deliveries and image
//! URLs a request names — under one address policy, so a client cannot make the server reach
//! into its own network (SSRF): the host is resolved, every address it resolves to must be
//! permitted, and the caller connects to the address that was checked ([`Target::client`]),
//! so the name cannot be re-pointed between the check and the connection (DNS rebinding).
//!
//! "Permitted" is [`is_public`] — the IANA special-purpose registries of both families, with
//! IPv4 addresses embedded in IPv6 (mapped, translated, NAT64, 6to4) judged as IPv4 — plus the
//! operator's allow-list ([`Allow`]: networks and host names, e.g. an internal webhook
//! receiver). [`Policy::any`] turns the check off (trusted networks, tests).
//!
//! Standard library note: `IpAddr::is_global` would be the classification, but it is not
//! stable; the tables below follow the registries and every range has a test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One entry of an operator's allow-list: a network (`10.0.0.0/8`, `fd00::/8`, or one
/// address) whose addresses are permitted, or a host name (`hooks.internal`, case-insensitive,
/// exact) whose URLs are permitted whatever it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    Net(IpNet),
    Host(String),
}

impl Allow {
    /// `CIDR`, an address, or a host name.
    pub fn parse(s: &str) -> Result<Allow, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Allow::Net(net.trunc()));
        }
        if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Allow::Net(IpNet::from(ip)));
        }
        let host = s.trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!(
                "`{s}` is neither a network (10.0.0.0/8, fd00::/8), an address nor a host name"
            ));
        }
        Ok(Allow::Host(host))
    }

    /// A comma-separated list (`--webhook-allow 10.0.0.0/8,hooks.internal`).
    pub fn parse_list(s: &str) -> Result<Vec<Allow>, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Allow::parse)
            .collect()
    }
}

/// Which addresses outbound requests of one kind may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Every address (the check is off).
    any: bool,
    allow: Vec<Allow>,
}

impl Policy {
    /// Public addresses only.
    pub fn public() -> Policy {
        Policy::default()
    }

    /// Any address.
    pub fn any() -> Policy {
        Policy {
            any: true,
            allow: Vec::new(),
        }
    }

    /// Public addresses and those the list allows.
    pub fn allowing(allow: Vec<Allow>) -> Policy {
        Policy { any: false, allow }
    }

    /// Whether `ip`, reached through the name `host`, is permitted.
    pub fn permits(&self, host: &str, ip: IpAddr) -> bool {
        self.any || self.host_allowed(host) || is_public(ip) || self.net_allowed(ip)
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    fn net_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Net(n) if n.contains(&ip)))
    }

    /// Check a URL: http(s), a host, and every address the host resolves to permitted.
    /// Returns the address to connect to; a host name on the allow-list is trusted as it is
    /// and not looked up here (the connection resolves it).
    pub async fn resolve(&self, url: &url::Url) -> Result<Target, Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(Refused::NoHost)?
            .trim_matches(['[', ']'])
            .to_string();
        if self.any || self.host_allowed(&host) {
            return Ok(Target {
                host,
                addrs: Vec::new(),
            });
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| Refused::Unresolvable {
                host: host.clone(),
                why: "the lookup timed out".into(),
            })?
            .map_err(|e| Refused::Unresolvable {
                host: host.clone(),
                why: e.to_string(),
            })?
            .collect(),
        };
        if addrs.is_empty() {
            return Err(Refused::Unresolvable {
                host,
                why: "no address".into(),
            });
        }
        if let Some(bad) = addrs.iter().find(|a| !self.permits(&host, a.ip())) {
            return Err(Refused::NotPublic { host, ip: bad.ip() });
        }
        Ok(Target { host, addrs })
    }
}

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked host and the addresses to connect to (every one checked; empty: the policy
/// trusts the host, and the connection resolves it).
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

impl Target {
    /// A client builder whose connections to this host go to the checked addresses only,
    /// through no proxy (a proxy would resolve the name again), and which follows no
    /// redirects (a caller that follows them checks each `Location` again).
    pub fn client(&self) -> reqwest::ClientBuilder {
        let b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if self.addrs.is_empty() {
            b
        } else {
            b.resolve_to_addrs(&self.host, &self.addrs)
        }
    }
}

/// Why a URL may not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Scheme,
    NoHost,
    Unresolvable { host: String, why: String },
    NotPublic { host: String, ip: IpAddr },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Scheme => f.write_str("only http(s) URLs are allowed"),
            Refused::NoHost => f.write_str("the URL has no host"),
            Refused::Unresolvable { host, why } => write!(f, "cannot resolve {host}: {why}"),
            // The address a name resolves to is not repeated: it would tell a client what
            // the server's internal DNS holds.
            Refused::NotPublic { host, ip } => {
                if host.parse::<IpAddr>().ok() == Some(*ip) {
                    write!(f, "{host} is")?;
                } else {
                    write!(f, "{host} resolves to")?;
                }
                f.write_str(
                    " a loopback, private or otherwise non-public address; this server only \
                     connects to public addresses on a client's behalf",
                )
            }
        }
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The reason, with `hint` (how an operator may allow it) added when the address was
    /// refused as non-public.
    pub fn explained(&self, hint: &str) -> String {
        match self {
            Refused::NotPublic { .. } => format!("{self} ({hint})"),
            _ => self.to_string(),
        }
    }
}

/// The address itself, or the IPv4 address an IPv6 one embeds and is delivered to (mapped
/// `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
/// `2002:aabb:ccdd::`).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // ::ffff:0:0/96 (mapped), ::ffff:0:0:0/96 (translated), 64:ff9b::/96 (NAT64).
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let translated = s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0;
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if mapped || translated || nat64 {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// IPv4 ranges a server must not reach for a client: the IANA IPv4 Special-Purpose Address
/// Registry's entries that are not globally reachable (and the two relay/anycast ones that
/// lead elsewhere), multicast and the reserved block.
const V4_SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, and the limited broadcast address"),
];

/// IPv6 ranges a server must not reach for a client (the IANA IPv6 Special-Purpose Address
/// Registry's, multicast, and the deprecated site-local and IPv4-compatible blocks). The
/// prefixes that embed an IPv4 address are judged by that address instead.
const V6_SPECIAL: &[(&str, &str)] = &[
    (
        "::/96",
        "unspecified, loopback and IPv4-compatible (deprecated)",
    ),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"),
    ("2001::/23", "IETF protocol assignments (Teredo, ORCHID, …)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6) SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link local"),
    ("fec0::/10", "site local (deprecated)"),
    ("ff00::/8", "multicast"),
];

/// Why an address is not public (the registry entry it falls in), or `None` when it is.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    static V4: LazyLock<Vec<(Ipv4Net, &str)>> = LazyLock::new(|| parsed(V4_SPECIAL));
    static V6: LazyLock<Vec<(Ipv6Net, &str)>> = LazyLock::new(|| parsed(V6_SPECIAL));
    match canonical(ip) {
        IpAddr::V4(v4) => V4
            .iter()
            .find(|(n, _)| n.contains(&v4))
            .map(|(_, why)| *why),
        IpAddr::V6(v6) => V6
            .iter()
            .find(|(n, _)| n.contains(&v6))
            .map(|(_, why)| *why),
    }
}

fn parsed<N: std::str::FromStr>(table: &[(&str, &'static str)]) -> Vec<(N, &'static str)>
where
    N::Err: std::fmt::Debug,
{
    table
        .iter()
        .map(|(net, why)| (net.parse().expect("the tables are valid networks"), *why))
        .collect()
}

/// True for addresses a server may reach on a client's behalf.
pub fn is_public(ip: IpAddr) -> bool {
    special_purpose(ip).is_none()
}
