//! Procedural macros for `eventsource`: `#[derive(DomainEvent)]`, `#[aggregate]` and
//! `#[handles]`. Use them through the `eventsource` crate, which re-exports them.
//!
//! Each macro is a pipeline: parse (syn into a small model, collecting every error),
//! validate (checks across nodes), expand (model into tokens, infallible). On error the
//! macro emits the errors plus the user's item with our helper attributes stripped, so
//! one mistake does not cascade into many.

use proc_macro::TokenStream;

mod aggregate;
mod domain_event;
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

/// Marks a handler inside an `#[aggregate]` impl block: `#[handles(OrderCreated)]`.
///
/// On its own it is an error: `#[aggregate]` reads and removes it.
#[proc_macro_attribute]
pub fn handles(args: TokenStream, input: TokenStream) -> TokenStream {
    shared::handles_outside(args.into(), input.into()).into()
}
