//! Free ports on loopback for instances, proxies and NIXL side channels.

use std::collections::BTreeSet;
use std::net::TcpListener;

use anyhow::bail;

/// Hands out ports that were free when asked and never the same one twice in a run.
#[derive(Debug, Default)]
pub struct PortAllocator {
    given: BTreeSet<u16>,
    /// Deterministic mode for snapshot tests: hand out consecutive ports from here, unchecked.
    sequential: Option<u16>,
}

impl PortAllocator {
    /// Consecutive ports from `start` without asking the OS (for tests of rendered commands).
    pub fn sequential(start: u16) -> Self {
        PortAllocator {
            given: BTreeSet::new(),
            sequential: Some(start),
        }
    }

    /// A port the OS reports free now.
    pub fn any(&mut self) -> anyhow::Result<u16> {
        if let Some(next) = self.sequential.as_mut() {
            *next += 1;
            return Ok(*next - 1);
        }
        for _ in 0..64 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if self.given.insert(port) {
                return Ok(port);
            }
        }
        bail!("could not find a free port on 127.0.0.1")
    }

    /// `len` consecutive free ports starting at or above `from` (a NIXL side-channel block:
    /// one port per TP rank).
    pub fn block(&mut self, from: u16, len: u16) -> anyhow::Result<u16> {
        if self.sequential.is_some() {
            let base = from.max(1024) + self.given.len() as u16;
            self.given.extend(base..base + len);
            return Ok(base);
        }
        let mut base = from.max(1024);
        while u32::from(base) + u32::from(len) <= 65535 {
            let all_free = (base..base + len).all(|p| !self.given.contains(&p) && is_free(p));
            if all_free {
                self.given.extend(base..base + len);
                return Ok(base);
            }
            base += 1;
        }
        bail!("no block of {len} free ports at or above {from}")
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_blocks_skip_taken_ones() {
        let mut a = PortAllocator::default();
        let p1 = a.any().unwrap();
        let p2 = a.any().unwrap();
        assert_ne!(p1, p2);
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        let base = a.block(taken, 2).unwrap();
        assert!(base > taken, "the held port is skipped");
        let next = a.block(base, 2).unwrap();
        assert!(next >= base + 2, "blocks never overlap");
    }
}
