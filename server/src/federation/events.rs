//! Per-group event fan-out for the Server-Sent Events stream `/api/groups/{id}/events`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// Something clients of a group should react to.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GroupEvent {
    /// Sent first on every connection: where the group stands now.
    Snapshot {
        phase: String,
        current_round: Option<i64>,
        round_state: Option<String>,
    },
    PhaseChanged {
        phase: String,
    },
    RoundOpened {
        round: i64,
        deadline_at: i64,
    },
    RoundClosed {
        round: i64,
        version_id: i64,
    },
    RoundFailed {
        round: i64,
        reason: String,
    },
    MemberJoined {
        member_id: i64,
    },
}

impl GroupEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            GroupEvent::Snapshot { .. } => "snapshot",
            GroupEvent::PhaseChanged { .. } => "phase_changed",
            GroupEvent::RoundOpened { .. } => "round_opened",
            GroupEvent::RoundClosed { .. } => "round_closed",
            GroupEvent::RoundFailed { .. } => "round_failed",
            GroupEvent::MemberJoined { .. } => "member_joined",
        }
    }
}

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
