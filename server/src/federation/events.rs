//! Per-group fan-out for the Server-Sent Events stream `/api/groups/{id}/events`
//! ([`super::event_stream`]): the events clients see, and notices for the streams themselves.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::cluster::{Notice, Outbox};

/// Something clients of a group should react to; the wire type shared with the clients.
pub use b3o_models::protocol::GroupEvent;

/// What travels on a group's channel.
#[derive(Debug, Clone)]
pub enum Message {
    /// Sent to the clients.
    Event(GroupEvent),
    /// A membership of the group ended: a stream opened through it checks whether its caller
    /// may still follow the group (an owner may), and ends if not. Never sent to clients.
    MemberLeft { member_id: i64 },
}

#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<i64, broadcast::Sender<Message>>>,
    /// Other replicas' streams (`crate::cluster`).
    outbox: Outbox,
}

impl EventHub {
    pub fn subscribe(&self, group_id: i64) -> broadcast::Receiver<Message> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(group_id)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Sends `event` to the group's streams, on this replica and the others.
    pub fn publish(&self, group_id: i64, event: GroupEvent) {
        self.outbox.send(Notice::Event {
            group: group_id,
            event: event.clone(),
        });
        self.deliver(group_id, Message::Event(event));
    }

    /// Tells the group's open streams, on this replica and the others, that membership
    /// `member_id` left.
    pub fn member_left(&self, group_id: i64, member_id: i64) {
        self.outbox.send(Notice::MemberLeft {
            group: group_id,
            member: member_id,
        });
        self.deliver(group_id, Message::MemberLeft { member_id });
    }

    /// Another replica's event, for this replica's streams of the group.
    pub(crate) fn deliver_event(&self, group_id: i64, event: GroupEvent) {
        self.deliver(group_id, Message::Event(event));
    }

    /// Another replica's notice that membership `member_id` left.
    pub(crate) fn deliver_member_left(&self, group_id: i64, member_id: i64) {
        self.deliver(group_id, Message::MemberLeft { member_id });
    }

    /// Sends `message` to this replica's streams of the group only.
    fn deliver(&self, group_id: i64, message: Message) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(&group_id)
            && tx.send(message).is_err()
        {
            // Nobody listens any more.
            channels.remove(&group_id);
        }
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}
