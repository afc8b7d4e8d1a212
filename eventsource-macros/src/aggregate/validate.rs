//! Checks that look at more than one node: handler signatures, an event handled twice,
//! two events that would become one enum variant.

use super::parse::AggregateDef;
use crate::shared::ctxt::Ctxt;
use crate::shared::handler::{self, HandlerDef};

pub fn check(ctxt: &Ctxt, def: &AggregateDef<'_>) {
    for (index, handler) in def.handlers.iter().enumerate() {
        check_signature(ctxt, handler);
        let earlier = &def.handlers[..index];
        let shown = handler.event_shown();
        if !handler::check_handled_twice(ctxt, handler, earlier)
            && let Some(first) = earlier.iter().find(|h| h.variant() == handler.variant())
        {
            ctxt.error_spanned_by(
                &handler.event,
                format_args!(
                    "`{shown}` and `{}` would both be the variant `{}::{}`; import one under another name (`use {shown} as {};`) and handle that",
                    first.event_shown(),
                    def.event_enum,
                    handler.variant(),
                    alias_for(handler),
                ),
            );
        }
    }
}

fn check_signature(ctxt: &Ctxt, handler: &HandlerDef<'_>) {
    let sig = &handler.method.sig;
    let event = handler.event_shown();
    let shape = format!("`fn {}(&mut self, event: &{event})`", sig.ident);
    if let Some(asyncness) = &sig.asyncness {
        ctxt.error_spanned_by(
            asyncness,
            format_args!("a handler cannot be `async`: replaying history is synchronous; do async work in the command, then record the event. Write {shape}"),
        );
    }
    handler::check_generics(ctxt, sig, &shape);
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(tuple) if tuple.elems.is_empty());
        if !unit {
            ctxt.error_spanned_by(
                ty,
                "a handler returns nothing: an event is a fact, and applying it cannot fail; validate in the command instead",
            );
        }
    }
    let Some(rest) = handler::check_receiver(ctxt, sig, &shape) else {
        return;
    };
    match handler::event_param(ctxt, sig, rest, &shape) {
        Some(syn::Type::Reference(reference)) if reference.mutability.is_none() => {}
        Some(syn::Type::Reference(reference)) => ctxt.error_spanned_by(
            reference,
            format_args!("a handler reads the event, it cannot change it: take `&{event}`"),
        ),
        Some(other) => ctxt.error_spanned_by(
            other,
            format_args!("take the event by reference: `event: &{event}` (replay lends each stored event, it does not give it away)"),
        ),
        None => {}
    }
}

/// A distinct name to suggest for an event whose last segment clashes: the module it
/// comes from, capitalised, in front (`sales::OrderCreated` → `SalesOrderCreated`).
fn alias_for(handler: &HandlerDef<'_>) -> String {
    let segments = &handler.event.segments;
    let module = segments
        .len()
        .checked_sub(2)
        .and_then(|index| segments.iter().nth(index))
        .map(|segment| segment.ident.to_string())
        .filter(|module| !matches!(module.as_str(), "crate" | "self" | "super"));
    let prefix = module.map_or_else(
        || "Other".to_owned(),
        |module| {
            module
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_uppercase().chain(chars).collect()
                    })
                })
                .collect()
        },
    );
    format!("{prefix}{}", handler.variant())
}
