//! The bounded, coalescing event queue: the engine's per-watcher queue and
//! the queues bindings keep on their side (events handed over by the
//! engine, waiting for their language's thread) are this one type, so all
//! of them are bounded the same way.

use std::collections::VecDeque;

use crate::regions::IdMap;
use crate::types::{ChangeEvent, RegionId};

/// Pending events a queue keeps before a new change to a region that
/// already has one pending is merged into it (oldest old value, newest new
/// value, union of ranges, [`ChangeEvent::coalesced`] counting the
/// changes): a queue never holds more than this or one event per region,
/// whichever is more, however slow the consumer.
pub const QUEUE_CAP: usize = 1024;

/// Events in the order they were pushed, each with a ticket (its position
/// in the sequence of all events ever pushed), at most [`QUEUE_CAP`] of
/// them or one per region: past the cap, a region's new change is merged
/// into its pending event. Push, pop and merge are O(1).
#[derive(Default)]
pub struct EventQueue {
    events: VecDeque<ChangeEvent>,
    /// Ticket of `events[0]`: `events[i]` has ticket `front_ticket + i`.
    front_ticket: u64,
    /// Region -> ticket of its newest pending event.
    newest: IdMap<RegionId, u64>,
    /// Changes merged into a pending event, ever.
    coalesced: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `event` at the back (true), or, when [`QUEUE_CAP`] events
    /// are pending and its region has one of them, merges it into the
    /// newest of those (false; [`EventQueue::coalesced`] counts it).
    pub fn push(&mut self, event: ChangeEvent) -> bool {
        if self.events.len() >= QUEUE_CAP {
            if let Some(&ticket) = self.newest.get(&event.region_id) {
                let i = (ticket - self.front_ticket) as usize;
                self.events[i].merge(event);
                self.coalesced += 1;
                return false;
            }
        }
        let ticket = self.end_ticket();
        self.newest.insert(event.region_id, ticket);
        self.events.push_back(event);
        true
    }

    /// Puts an event taken out earlier back at the front (a consumer that
    /// could not deliver it), ahead of everything pending.
    pub fn push_front(&mut self, event: ChangeEvent) {
        self.front_ticket = self.front_ticket.wrapping_sub(1);
        self.newest.entry(event.region_id).or_insert(self.front_ticket);
        self.events.push_front(event);
    }

    /// Takes the front event and its ticket.
    pub fn pop(&mut self) -> Option<(u64, ChangeEvent)> {
        let event = self.events.pop_front()?;
        let ticket = self.front_ticket;
        self.front_ticket = self.front_ticket.wrapping_add(1);
        if self.newest.get(&event.region_id) == Some(&ticket) {
            self.newest.remove(&event.region_id);
        }
        Some((ticket, event))
    }

    /// Every pending event, in order.
    pub fn take_all(&mut self) -> Vec<ChangeEvent> {
        self.front_ticket = self.end_ticket();
        self.newest.clear();
        self.events.drain(..).collect()
    }

    /// Pending events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Changes merged into a pending event since the queue was made.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Ticket of the front event (the next [`EventQueue::pop`]).
    pub fn front_ticket(&self) -> u64 {
        self.front_ticket
    }

    /// The ticket the next pushed event gets: every pending event's is below.
    pub fn end_ticket(&self) -> u64 {
        self.front_ticket.wrapping_add(self.events.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(region_id: RegionId, old: u8, new: u8) -> ChangeEvent {
        ChangeEvent {
            seq: 0,
            timestamp_ns: 0,
            adapter_id: 0,
            region_id,
            variable_name: String::new(),
            where_: Default::default(),
            how_big: 1,
            changed_ranges: vec![crate::types::ByteRange { offset: 0, len: 1 }],
            old_preview: vec![old],
            new_preview: vec![new],
            old_value: Some(vec![old]),
            new_value: Some(vec![new]),
            storage_key_old: None,
            storage_key_new: None,
            metadata: None,
            coalesced: 1,
        }
    }

    #[test]
    fn under_the_cap_every_event_is_kept_in_order() {
        let mut q = EventQueue::new();
        for i in 0..10u8 {
            assert!(q.push(event(1, i, i + 1)));
        }
        assert_eq!(q.len(), 10);
        assert_eq!(q.coalesced(), 0);
        for i in 0..10u8 {
            let (ticket, e) = q.pop().unwrap();
            assert_eq!(ticket, u64::from(i));
            assert_eq!(e.old_value, Some(vec![i]));
        }
        assert!(q.pop().is_none());
    }

    #[test]
    fn at_the_cap_a_region_merges_into_its_newest_event() {
        let mut q = EventQueue::new();
        for i in 0..QUEUE_CAP as u32 {
            assert!(q.push(event(i % 2, 0, 1)));
        }
        // Full: region 0's next changes go into its newest pending event.
        assert!(!q.push(event(0, 1, 2)));
        assert!(!q.push(event(0, 2, 3)));
        assert_eq!(q.len(), QUEUE_CAP);
        assert_eq!(q.coalesced(), 2);
        let all = q.take_all();
        let newest0 = &all[QUEUE_CAP - 2];
        assert_eq!(newest0.region_id, 0);
        assert_eq!(
            (newest0.old_value.clone(), newest0.new_value.clone()),
            (Some(vec![0]), Some(vec![3]))
        );
        assert_eq!(newest0.coalesced, 3);
        assert_eq!(all.iter().map(|e| e.coalesced).sum::<u32>(), QUEUE_CAP as u32 + 2);
        // A region with nothing pending is queued past the cap (one per region).
        for i in 0..QUEUE_CAP as u32 {
            q.push(event(i, 0, 1));
        }
        assert!(q.push(event(QUEUE_CAP as u32, 0, 1)));
        assert_eq!(q.len(), QUEUE_CAP + 1);
    }

    #[test]
    fn a_popped_region_is_queued_again_not_merged_into_a_delivered_event() {
        let mut q = EventQueue::new();
        for i in 0..QUEUE_CAP as u32 {
            q.push(event(i, 0, 1));
        }
        let (_, first) = q.pop().unwrap();
        assert_eq!(first.region_id, 0);
        assert!(q.push(event(0, 1, 2)), "region 0 has nothing pending now");
        assert!(!q.push(event(0, 2, 3)), "full again: merged into the new one");
        let all = q.take_all();
        let last = all.last().unwrap();
        assert_eq!(
            (last.region_id, last.old_value.clone(), last.new_value.clone()),
            (0, Some(vec![1]), Some(vec![3]))
        );
    }

    #[test]
    fn push_front_restores_an_event_and_its_ticket() {
        let mut q = EventQueue::new();
        q.push(event(7, 0, 1));
        q.push(event(8, 0, 1));
        let (t, e) = q.pop().unwrap();
        assert_eq!(t, 0);
        q.push_front(e);
        assert_eq!(q.front_ticket(), 0);
        assert_eq!(q.end_ticket(), 2);
        let (t, e) = q.pop().unwrap();
        assert_eq!((t, e.region_id), (0, 7));
    }
}
