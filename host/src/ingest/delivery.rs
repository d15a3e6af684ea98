//! Recently journaled transport deliveries, to recognise redeliveries.
//!
//! MQTT delivers at least once: when the connection drops after a batch
//! was journaled but before the broker saw its PUBACK, the broker sends the
//! message again (DUP set) on the next connection, possibly to a restarted
//! server. Each MQTT batch is journaled with a digest of its server and
//! payload; the digests of the last [`CAPACITY`] batches (seeded from the
//! journal on start) tell a redelivery from new data, so the batch is
//! stored once.

use std::collections::{HashSet, VecDeque};

use opm_model::Str;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Deliveries remembered. Redeliveries follow a reconnect within seconds;
/// this covers minutes of traffic from many servers.
pub const CAPACITY: usize = 65_536;

/// The delivery tag of an MQTT message: 128 bits of SHA-256 over the
/// server id and the payload, so unrelated batches never collide.
pub fn mqtt_tag(server_id: &str, payload: &[u8]) -> Str {
    let mut h = Sha256::new();
    h.update(server_id.as_bytes());
    h.update([0]);
    h.update(payload);
    Str::from(format!("mqtt:{}", hex::encode(&h.finalize()[..16])).as_str())
}

/// A bounded set of delivery tags; the oldest is forgotten first.
pub struct RecentDeliveries {
    inner: Mutex<(HashSet<Str>, VecDeque<Str>)>,
    capacity: usize,
}

impl RecentDeliveries {
    pub fn new(capacity: usize, seed: impl IntoIterator<Item = Str>) -> RecentDeliveries {
        let recent = RecentDeliveries {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
        };
        for tag in seed {
            recent.remember(tag);
        }
        recent
    }

    pub fn contains(&self, tag: &str) -> bool {
        self.inner.lock().0.contains(tag)
    }

    pub fn remember(&self, tag: Str) {
        let mut guard = self.inner.lock();
        let (set, order) = &mut *guard;
        if !set.insert(tag.clone()) {
            return;
        }
        order.push_back(tag);
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_and_forgets_the_oldest() {
        let seed = (0..3).map(|i| Str::from(format!("t{i}").as_str()));
        let recent = RecentDeliveries::new(3, seed);
        assert!(recent.contains("t0"));
        recent.remember(Str::from("t2"));
        recent.remember(Str::from("t3"));
        assert!(!recent.contains("t0"), "oldest forgotten past capacity");
        assert!(recent.contains("t1") && recent.contains("t2") && recent.contains("t3"));
    }

    #[test]
    fn tags_depend_on_server_and_payload() {
        let a = mqtt_tag("s1", b"[1]");
        assert_eq!(a, mqtt_tag("s1", b"[1]"));
        assert_ne!(a, mqtt_tag("s2", b"[1]"));
        assert_ne!(a, mqtt_tag("s1", b"[2]"));
        assert_eq!(a.len(), "mqtt:".len() + 32);
    }
}
