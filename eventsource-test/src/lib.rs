//! Testing for eventsource (filled in by its own issue).
