//! Checks that look at more than one node: handler signatures, an event handled twice,
//! two events that would become one enum variant.

use super::parse::{AggregateDef, HandlerDef};
use crate::shared::ctxt::Ctxt;

pub fn check(ctxt: &Ctxt, def: &AggregateDef<'_>) {
    for (index, handler) in def.handlers.iter().enumerate() {
        check_signature(ctxt, handler);
        let earlier = &def.handlers[..index];
        let shown = handler.event_shown();
        if let Some(first) = earlier.iter().find(|h| h.event_shown() == shown) {
            ctxt.error_spanned_by(
                &handler.event,
                format_args!(
                    "`{shown}` is handled twice; the first handler is `{}`",
                    first.ident()
                ),
            );
        } else if let Some(first) = earlier.iter().find(|h| h.variant() == handler.variant()) {
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
    // Lifetimes are harmless; type and const parameters cannot be inferred from an event.
    if sig
        .generics
        .params
        .iter()
        .any(|param| !matches!(param, syn::GenericParam::Lifetime(_)))
    {
        ctxt.error_spanned_by(
            &sig.generics,
            format_args!("a handler cannot be generic; write {shape}"),
        );
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(tuple) if tuple.elems.is_empty());
        if !unit {
            ctxt.error_spanned_by(
                ty,
                "a handler returns nothing: an event is a fact, and applying it cannot fail; validate in the command instead",
            );
        }
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(syn::FnArg::Receiver(receiver))
            if receiver.reference.is_some()
                && receiver.mutability.is_some()
                && receiver.colon_token.is_none() => {}
        Some(syn::FnArg::Receiver(receiver)) => {
            ctxt.error_spanned_by(
                receiver,
                format_args!("a handler changes the state, so it takes `&mut self`: {shape}"),
            );
        }
        _ => {
            ctxt.error_spanned_by(
                &sig.ident,
                format_args!("a handler is a method taking `&mut self`: {shape}"),
            );
            return;
        }
    }
    match (inputs.next(), inputs.next()) {
        (Some(syn::FnArg::Typed(arg)), None) => match &*arg.ty {
            syn::Type::Reference(reference) if reference.mutability.is_none() => {}
            syn::Type::Reference(reference) => ctxt.error_spanned_by(
                reference,
                format_args!("a handler reads the event, it cannot change it: take `&{event}`"),
            ),
            other => ctxt.error_spanned_by(
                other,
                format_args!("take the event by reference: `event: &{event}` (replay lends each stored event, it does not give it away)"),
            ),
        },
        (None, _) => ctxt.error_spanned_by(&sig.inputs, format_args!("a handler takes the event after `&mut self`: {shape}")),
        (Some(_), Some(extra)) => {
            ctxt.error_spanned_by(extra, format_args!("a handler takes exactly `&mut self` and the event: {shape}"));
        }
        (Some(syn::FnArg::Receiver(_)), None) => {}
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
