//! The event bus: every stored event, broadcast after it is durable, for embedding
//! applications (and the HTTP event stream) to subscribe to.

use social_studio_storage::Event;
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        EventBus {
            sender: broadcast::channel(capacity.max(16)).0,
        }
    }

    /// Sends events that are already stored durably. Nobody listening is fine.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            let _ = self.sender.send(e);
        }
    }

    /// A receiver of every event from now on. A receiver that falls behind by more than
    /// the channel capacity is told how many it missed (and can replay them from the store
    /// by sequence number).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
