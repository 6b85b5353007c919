//! The client's IP address as it may be stored: truncated, hashed, dropped or (opt-in) full.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How client IPs are kept. Privacy by default: `truncate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPrivacy {
    /// IPv4 keeps its /24, IPv6 its /48: enough for rough geography, not a person.
    #[default]
    Truncate,
    /// HMAC-SHA256 with the operator's key: lets you see repeats without keeping the address.
    Hash,
    /// Nothing is stored.
    Drop,
    /// The full address (the operator opts in).
    Full,
}

/// The form in which an address may be persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(String);

impl ClientIp {
    pub fn from_ip(ip: IpAddr, mode: IpPrivacy, hash_key: &[u8]) -> Option<Self> {
        let s = match mode {
            IpPrivacy::Drop => return None,
            IpPrivacy::Full => ip.to_string(),
            IpPrivacy::Truncate => match ip {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    format!("{}.{}.{}.0", o[0], o[1], o[2])
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}::", s[0], s[1], s[2])
                }
            },
            IpPrivacy::Hash => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(hash_key) else {
                    return None;
                };
                mac.update(ip.to_string().as_bytes());
                format!("h:{}", &hex::encode(mac.finalize().into_bytes())[..32])
            }
        };
        Some(ClientIp(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_by_default() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
        let t = |ip| ClientIp::from_ip(ip, IpPrivacy::default(), b"").unwrap();
        assert_eq!(t(v4).as_str(), "203.0.113.0");
        assert_eq!(t(v6).as_str(), "2001:db8:abcd::");
    }

    #[test]
    fn hash_is_stable_and_keyed() {
        let ip: IpAddr = "203.0.113.77".parse().unwrap();
        let a = ClientIp::from_ip(ip, IpPrivacy::Hash, b"k1").unwrap();
        let b = ClientIp::from_ip(ip, IpPrivacy::Hash, b"k1").unwrap();
        let c = ClientIp::from_ip(ip, IpPrivacy::Hash, b"k2").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.as_str().contains("203"));
    }
}
