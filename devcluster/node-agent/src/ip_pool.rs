//! Loopback pod addresses: every pod gets its own `127.a.x.y` inside a configured /16.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so a process can bind any of these addresses without setup.
//! Addresses are keyed by pod UID and handed out lowest-first, so a freed address is reused by the next pod.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// Host numbers 0 (`127.a.0.0`) and 65535 (`127.a.255.255`) are never handed out.
const FIRST_HOST: u16 = 1;
const LAST_HOST: u16 = u16::MAX - 1;

/// Why a prefix or an allocation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpPoolError {
    #[error("pod CIDR prefix {0:?} is not of the form 127.N (a /16 inside 127.0.0.0/8)")]
    BadPrefix(String),
    #[error("all {0} addresses of the pod range are in use")]
    Exhausted(usize),
}

/// Allocates per-pod loopback addresses from `127.<second>.0.0/16`.
#[derive(Debug)]
pub struct IpPool {
    second_octet: u8,
    by_pod: HashMap<String, u16>,
    used: BTreeSet<u16>,
}

impl IpPool {
    /// Parses a prefix such as `127.1` (also accepted: `127.1.0.0/16`).
    pub fn new(prefix: &str) -> Result<Self, IpPoolError> {
        let bad = || IpPoolError::BadPrefix(prefix.to_string());
        let network = prefix.strip_suffix("/16").unwrap_or(prefix);
        let network = network.strip_suffix(".0.0").unwrap_or(network);
        let (first, second) = network.split_once('.').ok_or_else(bad)?;
        if first != "127" {
            return Err(bad());
        }
        let second_octet: u8 = second.parse().map_err(|_| bad())?;
        Ok(Self {
            second_octet,
            by_pod: HashMap::new(),
            used: BTreeSet::new(),
        })
    }

    /// Returns the pod's address, allocating the lowest free one on first use.
    pub fn allocate(&mut self, pod_uid: &str) -> Result<Ipv4Addr, IpPoolError> {
        if let Some(host) = self.by_pod.get(pod_uid) {
            return Ok(self.address(*host));
        }
        let host = (FIRST_HOST..=LAST_HOST)
            .find(|h| !self.used.contains(h))
            .ok_or(IpPoolError::Exhausted(self.used.len()))?;
        self.take(pod_uid, host);
        Ok(self.address(host))
    }

    /// Keeps the address a pod already had (after an agent restart) when it belongs to this pool and is free.
    pub fn reserve(&mut self, pod_uid: &str, ip: Ipv4Addr) -> bool {
        if self.by_pod.contains_key(pod_uid) {
            return self.by_pod[pod_uid] == self.host_of(ip).unwrap_or(0);
        }
        match self.host_of(ip) {
            Some(host) if !self.used.contains(&host) => {
                self.take(pod_uid, host);
                true
            }
            _ => false,
        }
    }

    /// Frees the pod's address, if it had one.
    pub fn release(&mut self, pod_uid: &str) {
        if let Some(host) = self.by_pod.remove(pod_uid) {
            self.used.remove(&host);
        }
    }

    fn take(&mut self, pod_uid: &str, host: u16) {
        self.used.insert(host);
        self.by_pod.insert(pod_uid.to_string(), host);
    }

    fn address(&self, host: u16) -> Ipv4Addr {
        let [high, low] = host.to_be_bytes();
        Ipv4Addr::new(127, self.second_octet, high, low)
    }

    fn host_of(&self, ip: Ipv4Addr) -> Option<u16> {
        let [a, b, high, low] = ip.octets();
        let host = u16::from_be_bytes([high, low]);
        (a == 127 && b == self.second_octet && (FIRST_HOST..=LAST_HOST).contains(&host))
            .then_some(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefix_forms() {
        assert!(IpPool::new("127.1").is_ok());
        assert!(IpPool::new("127.2.0.0/16").is_ok());
        assert!(IpPool::new("10.1").is_err());
        assert!(IpPool::new("127.300").is_err());
        assert!(IpPool::new("127").is_err());
    }

    #[test]
    fn allocation_is_stable_per_pod_and_lowest_first() {
        let mut pool = IpPool::new("127.1").unwrap();
        let a = pool.allocate("a").unwrap();
        let b = pool.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(b, Ipv4Addr::new(127, 1, 0, 2));
        assert_eq!(pool.allocate("a").unwrap(), a);
    }

    #[test]
    fn released_addresses_are_reused() {
        let mut pool = IpPool::new("127.1").unwrap();
        let a = pool.allocate("a").unwrap();
        pool.allocate("b").unwrap();
        pool.release("a");
        assert_eq!(pool.allocate("c").unwrap(), a);
    }

    #[test]
    fn crosses_into_the_third_octet() {
        let mut pool = IpPool::new("127.1").unwrap();
        for i in 0..255 {
            pool.allocate(&i.to_string()).unwrap();
        }
        assert_eq!(pool.allocate("next").unwrap(), Ipv4Addr::new(127, 1, 1, 0));
    }

    #[test]
    fn reserve_keeps_a_previous_address_only_when_free_and_in_range() {
        let mut pool = IpPool::new("127.1").unwrap();
        assert!(pool.reserve("a", Ipv4Addr::new(127, 1, 0, 9)));
        assert!(!pool.reserve("b", Ipv4Addr::new(127, 1, 0, 9)));
        assert!(!pool.reserve("c", Ipv4Addr::new(127, 2, 0, 9)));
        assert_eq!(pool.allocate("a").unwrap(), Ipv4Addr::new(127, 1, 0, 9));
        assert_eq!(pool.allocate("d").unwrap(), Ipv4Addr::new(127, 1, 0, 1));
    }
}
