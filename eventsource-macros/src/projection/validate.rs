//! Checks that look at more than one node: handler and reset signatures, an event handled
//! twice.

use super::parse::ProjectionDef;
use crate::shared::ctxt::Ctxt;
use crate::shared::handler::{self, HandlerDef, shown};

pub fn check(ctxt: &Ctxt, def: &ProjectionDef<'_>) {
    for (index, handler) in def.handlers.iter().enumerate() {
        check_handler(ctxt, handler);
        handler::check_handled_twice(ctxt, handler, &def.handlers[..index]);
    }
    if let Some(reset) = def.reset {
        check_reset(ctxt, &reset.sig);
    }
}

fn check_handler(ctxt: &Ctxt, handler: &HandlerDef<'_>) {
    let sig = &handler.method.sig;
    let event = handler.event_shown();
    let shape = format!(
        "`async fn {}(&mut self, event: &Event<{event}>) -> Result<(), Error>`",
        sig.ident
    );
    check_async(ctxt, sig, "a projection handler", &shape);
    handler::check_generics(ctxt, sig, &shape);
    check_returns_result(ctxt, sig, "a projection handler", &shape);
    let Some(rest) = handler::check_receiver(ctxt, sig, &shape) else {
        return;
    };
    match handler::event_param(ctxt, sig, rest, &shape) {
        Some(syn::Type::Reference(reference)) if reference.mutability.is_some() => {
            ctxt.error_spanned_by(
                reference,
                format_args!("a handler reads the event, it cannot change it: take `&Event<{event}>`"),
            );
        }
        // `&OrderCreated` for `#[handles(OrderCreated)]`: the payload without its envelope.
        // Any other type is left to the compiler, which compares it with `&Event<...>`
        // (and so accepts aliases).
        Some(syn::Type::Reference(reference)) if shown(&reference.elem) == event => {
            ctxt.error_spanned_by(
                reference,
                format_args!("a projection handler takes the event with its envelope: `event: &Event<{event}>`, not `&{event}`; it derefs to the `{event}`, and `event.aggregate_id()`, `event.position()`, `event.metadata()`... read the envelope"),
            );
        }
        Some(syn::Type::Reference(_)) | None => {}
        Some(other) => ctxt.error_spanned_by(
            other,
            format_args!("take the event by reference: `event: &Event<{event}>` (the runner lends each recorded event, it does not give it away)"),
        ),
    }
}

/// `#[reset] async fn clear(&mut self) -> Result<(), Error>`.
fn check_reset(ctxt: &Ctxt, sig: &syn::Signature) {
    let shape = format!("`async fn {}(&mut self) -> Result<(), Error>`", sig.ident);
    check_async(ctxt, sig, "the `#[reset]` method", &shape);
    handler::check_generics(ctxt, sig, &shape);
    check_returns_result(ctxt, sig, "the `#[reset]` method", &shape);
    let Some(mut rest) = handler::check_receiver(ctxt, sig, &shape) else {
        return;
    };
    if let Some(extra) = rest.next() {
        ctxt.error_spanned_by(
            extra,
            format_args!("the `#[reset]` method takes only `&mut self`: {shape}"),
        );
    }
}

fn check_async(ctxt: &Ctxt, sig: &syn::Signature, what: &str, shape: &str) {
    if sig.asyncness.is_none() {
        ctxt.error_spanned_by(
            sig.fn_token,
            format_args!("{what} is `async` (the runner awaits it); write {shape}"),
        );
    }
}

/// A `Result` (or an alias named `Result`, such as `io::Result<()>`), so that a failure
/// reaches the runner, which retries, then dead-letters.
fn check_returns_result(ctxt: &Ctxt, sig: &syn::Signature, what: &str, shape: &str) {
    let message = format!(
        "{what} returns a `Result`, so that a failure is retried, then dead-lettered; write {shape}, with any error type that converts into `BoxError`"
    );
    match &sig.output {
        syn::ReturnType::Default => ctxt.error_spanned_by(&sig.ident, message),
        syn::ReturnType::Type(_, ty) => {
            let is_result = matches!(
                &**ty,
                syn::Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == "Result")
            );
            if !is_result {
                ctxt.error_spanned_by(ty, message);
            }
        }
    }
}
