//! [`EventPage`]: one page of the global log.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::event::RecordedEvent;

/// One page of the global log, as [`EventStore::read_all_batch`](super::EventStore::read_all_batch)
/// and [`read_all_batches`](super::EventStore::read_all_batches) return it: stored events in
/// position order.
///
/// A page reads as a slice of the events (`page.len()`, `page.last()`, `for event in
/// &page`), or gives them up one by one (`for event in page`, [`into_vec`](Self::into_vec)).
///
/// A store that keeps its events in memory hands out a page as one shared reference to a
/// block of its log, so that reading the page by reference touches no event's reference
/// count; taking an event out of such a page (by value) clones its `Arc`. Database
/// backends build each page as a vector of the events they decoded.
#[derive(Clone, Default)]
pub struct EventPage(Events);

#[derive(Clone)]
enum Events {
    /// The page's own events.
    Owned(Vec<Arc<RecordedEvent>>),
    /// `range` of a block of events shared with the store.
    Shared {
        block: Arc<[Arc<RecordedEvent>]>,
        range: Range<usize>,
    },
}

impl Default for Events {
    fn default() -> Self {
        Events::Owned(Vec::new())
    }
}

impl EventPage {
    /// The events `range` of `block` (a range the caller knows is within it).
    pub(crate) fn shared(block: Arc<[Arc<RecordedEvent>]>, range: Range<usize>) -> Self {
        EventPage(Events::Shared { block, range })
    }

    /// The events, as a slice.
    pub fn as_slice(&self) -> &[Arc<RecordedEvent>] {
        match &self.0 {
            Events::Owned(events) => events,
            // The range is within the block: `shared` is only called so.
            Events::Shared { block, range } => block.get(range.clone()).unwrap_or_default(),
        }
    }

    /// The events as a vector of their own (moved out of an owned page, cloned out of a
    /// shared one).
    pub fn into_vec(self) -> Vec<Arc<RecordedEvent>> {
        match self.0 {
            Events::Owned(events) => events,
            Events::Shared { .. } => self.as_slice().to_vec(),
        }
    }
}

impl Deref for EventPage {
    type Target = [Arc<RecordedEvent>];

    fn deref(&self) -> &Self::Target {
        self.as_slice()
    }
}

impl From<Vec<Arc<RecordedEvent>>> for EventPage {
    fn from(events: Vec<Arc<RecordedEvent>>) -> Self {
        EventPage(Events::Owned(events))
    }
}

impl From<EventPage> for Vec<Arc<RecordedEvent>> {
    fn from(page: EventPage) -> Self {
        page.into_vec()
    }
}

impl fmt::Debug for EventPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> IntoIterator for &'a EventPage {
    type Item = &'a Arc<RecordedEvent>;
    type IntoIter = std::slice::Iter<'a, Arc<RecordedEvent>>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl IntoIterator for EventPage {
    type Item = Arc<RecordedEvent>;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter(match self.0 {
            Events::Owned(events) => Iter::Owned(events.into_iter()),
            Events::Shared { block, range } => Iter::Shared { block, range },
        })
    }
}

/// The events of an [`EventPage`], by value.
#[derive(Debug, Clone)]
pub struct IntoIter(Iter);

#[derive(Debug, Clone)]
enum Iter {
    Owned(std::vec::IntoIter<Arc<RecordedEvent>>),
    Shared {
        block: Arc<[Arc<RecordedEvent>]>,
        range: Range<usize>,
    },
}

impl Iterator for IntoIter {
    type Item = Arc<RecordedEvent>;

    #[inline]
    fn next(&mut self) -> Option<Arc<RecordedEvent>> {
        match &mut self.0 {
            Iter::Owned(events) => events.next(),
            Iter::Shared { block, range } => {
                let index = range.next()?;
                block.get(index).cloned()
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Iter::Owned(events) => events.size_hint(),
            Iter::Shared { range, .. } => range.size_hint(),
        }
    }
}

impl DoubleEndedIterator for IntoIter {
    fn next_back(&mut self) -> Option<Arc<RecordedEvent>> {
        match &mut self.0 {
            Iter::Owned(events) => events.next_back(),
            Iter::Shared { block, range } => {
                let index = range.next_back()?;
                block.get(index).cloned()
            }
        }
    }
}

impl ExactSizeIterator for IntoIter {}

impl std::iter::FusedIterator for IntoIter {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::event::{EventEnvelope, Payload, SharedContext};

    fn event(position: u64) -> Arc<RecordedEvent> {
        Arc::new(RecordedEvent {
            envelope: EventEnvelope {
                event_id: Uuid::from_u128(u128::from(position)),
                event_name: "Noted".into(),
                schema_version: 1,
                aggregate_id: Uuid::from_u128(1),
                occurred_at: Utc::now(),
                aggregate_type: "Note".into(),
                aggregate_version: position,
                context: SharedContext::default(),
            },
            payload: Payload::Json("{}".into()),
            position,
            stored_at: Utc::now(),
        })
    }

    fn positions<'a>(events: impl IntoIterator<Item = &'a Arc<RecordedEvent>>) -> Vec<u64> {
        events.into_iter().map(|event| event.position).collect()
    }

    #[test]
    fn a_shared_page_reads_its_range_of_the_block_by_reference_and_by_value() {
        let block: Arc<[Arc<RecordedEvent>]> = (1..=6).map(event).collect();
        let page = EventPage::shared(Arc::clone(&block), 2..5);
        assert_eq!(page.len(), 3);
        assert_eq!(positions(&page), [3, 4, 5]);
        assert_eq!(page.last().map(|e| e.position), Some(5));
        // By reference, the events are the block's own: no count was taken.
        assert!(Arc::ptr_eq(&page[0], &block[2]));
        assert_eq!(Arc::strong_count(&block[2]), 1);
        let taken: Vec<Arc<RecordedEvent>> = page.clone().into_iter().collect();
        assert_eq!(positions(&taken), [3, 4, 5]);
        let mut iter = page.clone().into_iter();
        assert_eq!(iter.len(), 3);
        assert_eq!(iter.next_back().map(|e| e.position), Some(5));
        assert_eq!(positions(&iter.collect::<Vec<_>>()), [3, 4]);
        assert_eq!(Arc::strong_count(&block[2]), 2);
        assert_eq!(positions(&page.into_vec()), [3, 4, 5]);
    }

    #[test]
    fn an_owned_page_gives_its_events_up_without_cloning_them() {
        let events: Vec<Arc<RecordedEvent>> = (1..=3).map(event).collect();
        let first = Arc::clone(&events[0]);
        let page = EventPage::from(events);
        assert_eq!(positions(&page), [1, 2, 3]);
        let mut iter = page.into_iter();
        assert_eq!(iter.size_hint(), (3, Some(3)));
        let taken = iter.next().unwrap();
        assert!(Arc::ptr_eq(&taken, &first));
        assert_eq!(Arc::strong_count(&first), 2, "moved out, not cloned");
        assert_eq!(positions(&iter.collect::<Vec<_>>()), [2, 3]);
    }

    #[test]
    fn an_empty_page_is_the_default() {
        let page = EventPage::default();
        assert!(page.is_empty());
        assert_eq!(page.into_iter().count(), 0);
        assert_eq!(format!("{:?}", EventPage::default()), "[]");
    }
}
