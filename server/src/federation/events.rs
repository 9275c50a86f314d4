//! Per-group event fan-out for the Server-Sent Events stream `/api/groups/{id}/events`.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Something clients of a group should react to; the wire type shared with the clients.
pub use b3o_models::protocol::GroupEvent;

#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<i64, broadcast::Sender<GroupEvent>>>,
}

impl EventHub {
    pub fn subscribe(&self, group_id: i64) -> broadcast::Receiver<GroupEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(group_id)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    pub fn publish(&self, group_id: i64, event: GroupEvent) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(&group_id)
            && tx.send(event).is_err()
        {
            // Nobody listens any more.
            channels.remove(&group_id);
        }
    }
}
