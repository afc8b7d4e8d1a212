//! Attribute keys.

pub const NAME: &str = "name";
pub const VERSION: &str = "version";
pub const AGGREGATE: &str = "aggregate";
pub const CRATE: &str = "crate";
pub const UNHANDLED: &str = "unhandled";
pub const EVENT_ENUM: &str = "event_enum";
pub const EVENT: &str = "event";
pub const HANDLES: &str = "handles";
pub const PROJECTION: &str = "projection";
pub const RESET: &str = "reset";
