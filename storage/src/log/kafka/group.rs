//! The consumer group's context: which partitions this member owns (published on every rebalance,
//! revocations first) and the brokers' high watermarks from librdkafka's statistics.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use tally_domain::store::{Ownership, Partitions};
use tokio::sync::watch;
use tracing::info;

/// Tracks the group's assignment and the brokers' high watermarks.
pub(super) struct GroupContext {
    pub(super) topic: String,
    pub(super) ownership: watch::Sender<Ownership>,
    pub(super) high_watermarks: Mutex<HashMap<i32, i64>>,
}

impl GroupContext {
    fn publish(&self, partitions: Partitions) {
        self.ownership.send_modify(|o| {
            o.generation += 1;
            o.partitions = partitions;
        });
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            if let Ok(mut hw) = self.high_watermarks.lock() {
                for (p, s) in &topic.partitions {
                    if *p >= 0 && s.hi_offset >= 0 {
                        hw.insert(*p, s.hi_offset);
                    }
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Stop projecting before the partitions move on.
            self.publish(Partitions::Only(Default::default()));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let owned = list
                .elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect();
            info!(partitions = ?owned, "consumer group assigned partitions");
            self.publish(Partitions::Only(owned));
        }
    }
}
