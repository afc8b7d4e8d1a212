//! `#[handles(Event)]` methods, as `#[aggregate]` and `#[projection]` read them: the
//! marks, the model, the checks every handler shares and the compile-time assertions on
//! the handled events.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote_spanned};
use syn::spanned::Spanned;

use super::ctxt::Ctxt;
use super::kw;

/// One `#[handles(Event)]` method.
pub struct HandlerDef<'a> {
    pub event: syn::Path,
    pub method: &'a syn::ImplItemFn,
}

impl HandlerDef<'_> {
    pub fn ident(&self) -> &syn::Ident {
        &self.method.sig.ident
    }

    /// The event path as written, without spaces, for messages.
    pub fn event_shown(&self) -> String {
        shown(&self.event)
    }

    /// The type of the event parameter, when the signature has one.
    pub fn event_param(&self) -> Option<&syn::Type> {
        match self.method.sig.inputs.iter().nth(1) {
            Some(syn::FnArg::Typed(arg)) => Some(&arg.ty),
            _ => None,
        }
    }

    /// The event type's last path segment (an aggregate's enum variant).
    pub fn variant(&self) -> &syn::Ident {
        self.event
            .segments
            .last()
            .map_or(&self.method.sig.ident, |s| &s.ident)
    }
}

/// Tokens as written, without spaces, for messages.
pub fn shown(tokens: impl ToTokens) -> String {
    tokens.to_token_stream().to_string().replace(' ', "")
}

/// Whether `attr` is `#[name]` or `#[path::to::name]`.
pub fn is_attr(attr: &syn::Attribute, name: &str) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == name)
}

/// Removes our helper attributes (`names`) from the methods, which are ours to read, not
/// the compiler's.
pub fn strip_attrs(item: &mut syn::ItemImpl, names: &[&str]) {
    for item in &mut item.items {
        if let syn::ImplItem::Fn(method) = item {
            method
                .attrs
                .retain(|attr| !names.iter().any(|name| is_attr(attr, name)));
        }
    }
}

/// The last segment of the impl's self type, when it is a plain path (`impl Order`).
fn type_ident(item: &syn::ItemImpl) -> Option<syn::Ident> {
    match &*item.self_ty {
        syn::Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|s| s.ident.clone())
        }
        _ => None,
    }
}

/// What a macro on an impl block says when the block does not fit.
pub struct ImplMessages<'s> {
    /// The block is a trait impl.
    pub trait_impl: &'s str,
    /// The self type is not a plain path.
    pub unnamed: &'s str,
    /// No method is marked `#[handles]`.
    pub no_handler: &'s str,
}

/// The self type's name and the `#[handles]` methods of an impl block; every problem
/// goes to `ctxt`. `None` when the block is a trait impl or its type has no name.
pub fn read_impl<'a>(
    ctxt: &Ctxt,
    item: &'a syn::ItemImpl,
    messages: &ImplMessages<'_>,
) -> Option<(syn::Ident, Vec<HandlerDef<'a>>)> {
    if let Some((_, path, _)) = &item.trait_ {
        ctxt.error_spanned_by(path, messages.trait_impl);
        return None;
    }
    let Some(type_ident) = type_ident(item) else {
        ctxt.error_spanned_by(&item.self_ty, messages.unnamed);
        return None;
    };
    let (handlers, marked) = collect(ctxt, item);
    if !marked {
        let (impl_token, self_ty) = (&item.impl_token, &item.self_ty);
        ctxt.error_spanned_by(quote::quote!(#impl_token #self_ty), messages.no_handler);
    }
    Some((type_ident, handlers))
}

/// The `#[handles(...)]` methods of `item`, and whether any method was marked at all
/// (a malformed mark counts). Misplaced and malformed marks go to `ctxt`.
fn collect<'a>(ctxt: &Ctxt, item: &'a syn::ItemImpl) -> (Vec<HandlerDef<'a>>, bool) {
    let mut handlers = Vec::new();
    let mut marked = false;
    for impl_item in &item.items {
        match impl_item {
            syn::ImplItem::Fn(method) => {
                let mut marks = method
                    .attrs
                    .iter()
                    .filter(|attr| is_attr(attr, kw::HANDLES));
                let Some(first) = marks.next() else { continue };
                marked = true;
                if let Some(second) = marks.next() {
                    ctxt.error_spanned_by(
                        second,
                        "one event per handler: write a method for each event, each with its own `#[handles(...)]`",
                    );
                }
                if let Some(event) = parse_handles(ctxt, first) {
                    handlers.push(HandlerDef { event, method });
                }
            }
            syn::ImplItem::Const(syn::ImplItemConst { attrs, .. })
            | syn::ImplItem::Type(syn::ImplItemType { attrs, .. }) => {
                if let Some(attr) = attrs.iter().find(|attr| is_attr(attr, kw::HANDLES)) {
                    ctxt.error_spanned_by(
                        attr,
                        "`#[handles]` goes on a method: `fn on_event(&mut self, event: &Event)`",
                    );
                }
            }
            _ => {}
        }
    }
    (handlers, marked)
}

fn parse_handles(ctxt: &Ctxt, attr: &syn::Attribute) -> Option<syn::Path> {
    let usage = "`#[handles]` names the one event the method applies: `#[handles(OrderCreated)]`";
    match &attr.meta {
        syn::Meta::List(list) => {
            let parsed = list.parse_args_with(
                syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
            );
            match parsed {
                Ok(paths) if paths.len() == 1 => paths.into_iter().next(),
                Ok(paths) if paths.is_empty() => {
                    ctxt.error_spanned_by(attr, usage);
                    None
                }
                Ok(paths) => {
                    ctxt.error_spanned_by(
                        &paths,
                        "one event per handler: write a method for each event, each with its own `#[handles(...)]`",
                    );
                    None
                }
                Err(_) => {
                    ctxt.error_spanned_by(&list.tokens, usage);
                    None
                }
            }
        }
        _ => {
            ctxt.error_spanned_by(attr, usage);
            None
        }
    }
}

/// Reports an event handled by an `earlier` method too, at the second; returns whether
/// it did, so callers can skip checks that would repeat the point.
pub fn check_handled_twice(
    ctxt: &Ctxt,
    handler: &HandlerDef<'_>,
    earlier: &[HandlerDef<'_>],
) -> bool {
    let shown = handler.event_shown();
    let Some(first) = earlier.iter().find(|h| h.event_shown() == shown) else {
        return false;
    };
    ctxt.error_spanned_by(
        &handler.event,
        format_args!(
            "`{shown}` is handled twice; the first handler is `{}`",
            first.ident()
        ),
    );
    true
}

/// Refuses type and const parameters on a handler; `shape` is the signature to suggest.
pub fn check_generics(ctxt: &Ctxt, sig: &syn::Signature, shape: &str) {
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
}

/// Checks a handler's `&mut self` receiver; `shape` is the signature to suggest. Returns
/// the parameters after `self`, or `None` when there is no receiver.
pub fn check_receiver<'a>(
    ctxt: &Ctxt,
    sig: &'a syn::Signature,
    shape: &str,
) -> Option<impl Iterator<Item = &'a syn::FnArg>> {
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
            return None;
        }
    }
    Some(inputs)
}

/// The one parameter after `self` of a handler, reporting a missing or an extra one.
pub fn event_param<'a>(
    ctxt: &Ctxt,
    sig: &'a syn::Signature,
    mut rest: impl Iterator<Item = &'a syn::FnArg>,
    shape: &str,
) -> Option<&'a syn::Type> {
    match (rest.next(), rest.next()) {
        (Some(syn::FnArg::Typed(arg)), None) => Some(&arg.ty),
        (None, _) => {
            ctxt.error_spanned_by(
                &sig.inputs,
                format_args!("a handler takes the event after `&mut self`: {shape}"),
            );
            None
        }
        (Some(_), Some(extra)) => {
            ctxt.error_spanned_by(
                extra,
                format_args!("a handler takes exactly `&mut self` and the event: {shape}"),
            );
            None
        }
        (Some(syn::FnArg::Receiver(_)), None) => None,
    }
}

/// Compile-time checks on a handled event, spanned at the event in `#[handles(...)]`: it
/// is a `DomainEvent`, and no earlier handled event has its stored name (`who` is what
/// could not tell them apart: "replay", "the projection").
pub fn assert_events(
    root: &syn::Path,
    handler: &HandlerDef<'_>,
    earlier: &[HandlerDef<'_>],
    who: &str,
) -> TokenStream {
    let event = &handler.event;
    let shown = handler.event_shown();
    let same_names = earlier.iter().map(|other| {
        let other_event = &other.event;
        let message = format!(
            "`{shown}` and `{}` have the same stored name, so {who} cannot tell them apart; give one its own `#[event(name = \"...\")]`, or upcast the old version and handle only the new one",
            other.event_shown()
        );
        quote_spanned! {event.span()=>
            if #root::__private::str_eq(
                <#event as #root::DomainEvent>::NAME,
                <#other_event as #root::DomainEvent>::NAME,
            ) {
                ::core::panic!(#message)
            }
        }
    });
    let distinct = (!earlier.is_empty()).then(|| {
        quote_spanned! {event.span()=>
            const _: () = {
                #(#same_names)*
            };
        }
    });
    quote_spanned! {event.span()=>
        const _: () = #root::__private::assert_domain_event::<#event>();
        #distinct
    }
}

/// `tokens` with every span set to `span`.
pub fn respanned(tokens: impl ToTokens, span: Span) -> TokenStream {
    tokens
        .into_token_stream()
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respanned(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}
