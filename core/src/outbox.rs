//! What a session has ready for its driver: reply bytes and events, with request ids. Every
//! protocol session owns one, so `poll_output`/`poll_event` and request numbering are written once.

use crate::effect::Effect;
use crate::session::{Event, RequestId};
use std::collections::VecDeque;

/// A session's outgoing bytes and events.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Reply bytes not yet handed to the driver; sessions append their replies here.
    pub out: Vec<u8>,
    events: VecDeque<Event>,
    next_id: u64,
}

impl Outbox {
    /// Queues a request and returns the id its answer will carry.
    pub fn request(&mut self, effect: Effect) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.events.push_back(Event::Request { id, effect });
        id
    }

    /// Queues a lifecycle event (StartTls, Closed).
    pub fn push(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// [`crate::Session::poll_output`]: moves the pending bytes into `out` (without copying
    /// when `out` is empty); false when there were none.
    pub fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut self.out);
        } else {
            out.append(&mut self.out);
        }
        true
    }

    /// [`crate::Session::poll_event`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Frees the event queue's memory when it holds nothing (its smallest allocation holds four
    /// requests, about 770 bytes): for a session about to wait long, such as IMAP IDLE, where
    /// 10,000 of them wait at once. The next request allocates it again.
    pub fn release_events(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::TxId;

    #[test]
    fn release_events_frees_only_an_empty_queue() {
        let mut o = Outbox::default();
        o.request(Effect::Abort { tx: TxId(1) });
        o.release_events();
        assert!(o.events.capacity() > 0, "a queued request is kept");
        assert!(o.poll_event().is_some());
        assert!(o.events.capacity() > 0);
        o.release_events();
        assert_eq!(o.events.capacity(), 0);
        assert!(o.poll_event().is_none());
        // Ids go on after a release.
        assert_eq!(o.request(Effect::Abort { tx: TxId(2) }), RequestId(1));
    }
}
