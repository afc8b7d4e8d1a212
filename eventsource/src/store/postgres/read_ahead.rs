//! `read_all` on PostgreSQL with the next page on its way while the caller works through
//! the current one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::PostgresEventStore;
use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::store::ReadAll;

/// A fetched page, and the page size it asked for (a shorter page is the last).
type Page = Result<(Vec<Arc<RecordedEvent>>, usize), StoreError>;

/// A page being fetched.
type PageFetch<'a> = Pin<Box<dyn Future<Output = Page> + Send + 'a>>;

/// How many events are handed out between two polls of the next page's fetch: often
/// enough that its rows are read (and decoded) as the server sends them, rarely enough
/// that polling costs nothing measurable.
const DRIVE_EVERY: u32 = 64;

/// The global log as a stream of events, reading ahead by one page.
///
/// The next page is requested as soon as the current one has arrived and is driven while
/// the caller consumes the current page, on the caller's own task: the server produces
/// page *n + 1* while the caller handles page *n*. Pages are keyset pages of
/// `query.batch_size` events, as in the default [`EventStore::read_all`]; at most two
/// are held in memory. The log is exhausted at the first page shorter than asked for.
///
/// [`EventStore::read_all`]: crate::EventStore::read_all
pub(super) struct ReadAhead<'a> {
    store: &'a PostgresEventStore,
    query: ReadAll,
    /// Events still to read under `query.limit`.
    remaining: Option<u64>,
    current: std::vec::IntoIter<Arc<RecordedEvent>>,
    /// The next page's fetch; `None` once nothing more is to be read.
    next: Option<PageFetch<'a>>,
    /// The next page, when its fetch finished before the current page was used up.
    fetched: Option<Page>,
    since_drive: u32,
}

impl<'a> ReadAhead<'a> {
    pub(super) fn new(store: &'a PostgresEventStore, query: ReadAll) -> Self {
        let mut reader = ReadAhead {
            store,
            remaining: query.limit,
            query,
            current: Vec::new().into_iter(),
            next: None,
            fetched: None,
            since_drive: 0,
        };
        reader.next = reader.fetch_after(reader.query.after);
        reader
    }

    /// The fetch of the page after `position`, or `None` when the limit is reached.
    fn fetch_after(&self, position: u64) -> Option<PageFetch<'a>> {
        let max = match self.remaining {
            Some(0) => return None,
            Some(left) => usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.query.batch_size),
            None => self.query.batch_size,
        };
        let store = self.store;
        let types =
            (!self.query.aggregate_types.is_empty()).then(|| self.query.aggregate_types.clone());
        let tenant = self.query.tenant_id.clone();
        Some(Box::pin(async move {
            let page = store.fetch_page(position, types, tenant, max).await?;
            Ok((page, max))
        }))
    }

    /// Polls the next page's fetch, keeping its outcome if it is done.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(next) = &mut self.next
            && let Poll::Ready(outcome) = next.as_mut().poll(cx)
        {
            self.next = None;
            self.fetched = Some(outcome);
        }
    }
}

impl Stream for ReadAhead<'_> {
    type Item = Result<Arc<RecordedEvent>, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.current.next() {
                this.since_drive += 1;
                if this.since_drive >= DRIVE_EVERY {
                    this.since_drive = 0;
                    this.drive(cx);
                }
                return Poll::Ready(Some(Ok(event)));
            }
            if this.fetched.is_none() {
                if this.next.is_none() {
                    return Poll::Ready(None);
                }
                this.drive(cx);
            }
            let (page, asked) = match this.fetched.take() {
                None => return Poll::Pending,
                Some(Err(error)) => {
                    // The stream ends with the error; nothing after it is read.
                    this.next = None;
                    return Poll::Ready(Some(Err(error)));
                }
                Some(Ok(page)) => page,
            };
            if let Some(last) = page.last() {
                this.remaining = this
                    .remaining
                    .map(|left| left.saturating_sub(page.len() as u64));
                if page.len() == asked {
                    // Ask for the next page now, and send the request at once.
                    this.next = this.fetch_after(last.position);
                    this.drive(cx);
                }
            }
            this.current = page.into_iter();
            this.since_drive = 0;
        }
    }
}
