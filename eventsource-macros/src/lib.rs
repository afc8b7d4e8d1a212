//! Procedural macros for `eventsource`: `#[derive(DomainEvent)]`, `#[aggregate]`,
//! `#[projection]` and `#[handles]`. Use them through the `eventsource` crate, which re-exports them.
//!
//! Each macro is a pipeline: parse (syn into a small model, collecting every error),
//! validate (checks across nodes), expand (model into tokens, infallible). On error the
//! macro emits the errors plus the user's item with our helper attributes stripped, so
//! one mistake does not cascade into many.

use proc_macro::TokenStream;

mod aggregate;
mod domain_event;
mod projection;
mod shared;

/// Gives an event its stored identity and registers it. See `eventsource::DomainEvent`.
///
/// `#[event(aggregate = "Order", name = "order.shipped", version = 2, crate = "path")]`:
/// `aggregate` is required; `name` defaults to the type's name, `version` to 1.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    domain_event::derive(input.into()).into()
}

/// Generates an aggregate's dispatch table from its `#[handles(Event)]` methods.
/// See `eventsource::Aggregate`.
///
/// `#[aggregate(name = "Order", unhandled = "ignore", event_enum = "OrderEvent", crate = "path")]`,
/// all optional.
///
/// The generated event enum is `pub` whatever the events' visibility (the
/// `private_interfaces` lint is allowed on it), so it compiles next to private event
/// types; each variant is named after the last segment of the event's path.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    aggregate::expand(args.into(), input.into()).into()
}

/// Writes a read model's `Projection` impl from its `#[handles(Event)]` methods.
/// See `eventsource::projection::Projection` for an example.
///
/// `#[projection(name = "order-summary", crate = "path")]`, both optional: `name` (the key
/// of the projection's checkpoint and dead letters) defaults to the type's name.
///
/// In the impl block:
/// - `#[handles(OrderCreated)] async fn on_created(&mut self, event: &Event<OrderCreated>)
///   -> Result<(), E>`, for each event the projection reads, of any aggregate. `E` is any
///   error that converts into `eventsource::BoxError` (a `std::error::Error + Send + Sync`,
///   `BoxError` itself, a `String`). `Event` derefs to the payload and reads the envelope.
/// - at most one `#[reset] async fn clear(&mut self) -> Result<(), E>`: what a rebuild
///   runs first. Without one, the generated `reset` sets the value to
///   `Default::default()`, so the type must implement `Default`.
///
/// The generated `handle` dispatches on the stored event name: it decodes the payload
/// (borrowed when the store kept it typed) and awaits the handler; a payload that does
/// not decode is an error, which the runner retries and dead-letters. Events without a
/// handler are skipped.
#[proc_macro_attribute]
pub fn projection(args: TokenStream, input: TokenStream) -> TokenStream {
    projection::expand(args.into(), input.into()).into()
}

/// Marks a handler inside an `#[aggregate]` or `#[projection]` impl block:
/// `#[handles(OrderCreated)]`.
///
/// On its own it is an error: `#[aggregate]` and `#[projection]` read and remove it.
#[proc_macro_attribute]
pub fn handles(args: TokenStream, input: TokenStream) -> TokenStream {
    shared::handles_outside(args.into(), input.into()).into()
}
