//! `#[aggregate(...)]` and the impl block into an [`AggregateDef`].

use proc_macro2::TokenStream;

use crate::shared::ctxt::Ctxt;
use crate::shared::kw;
use crate::shared::runtime::{
    default_root, is_valid_stored_name, key_name, parse_crate, parse_str, set_once,
};

/// What `#[aggregate]` knows about the aggregate.
pub struct AggregateDef<'a> {
    pub self_ty: &'a syn::Type,
    /// The stored aggregate type name.
    pub name: String,
    pub ignore_unhandled: bool,
    pub event_enum: syn::Ident,
    pub root: syn::Path,
    pub handlers: Vec<HandlerDef<'a>>,
}

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
        quote::ToTokens::to_token_stream(&self.event)
            .to_string()
            .replace(' ', "")
    }

    /// The type of the event parameter, when the signature has one.
    pub fn event_param(&self) -> Option<&syn::Type> {
        match self.method.sig.inputs.iter().nth(1) {
            Some(syn::FnArg::Typed(arg)) => Some(&arg.ty),
            _ => None,
        }
    }

    /// The enum variant: the event type's last path segment.
    pub fn variant(&self) -> &syn::Ident {
        self.event
            .segments
            .last()
            .map_or(&self.method.sig.ident, |s| &s.ident)
    }
}

fn is_handles(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == kw::HANDLES)
}

/// Removes `#[handles]` attributes, which are ours to read, not the compiler's.
pub fn strip_handles(item: &mut syn::ItemImpl) {
    for item in &mut item.items {
        if let syn::ImplItem::Fn(method) = item {
            method.attrs.retain(|attr| !is_handles(attr));
        }
    }
}

struct Args {
    name: Option<String>,
    ignore_unhandled: Option<bool>,
    event_enum: Option<syn::Ident>,
    root: Option<syn::Path>,
}

fn parse_args(ctxt: &Ctxt, args: TokenStream) -> Args {
    let mut parsed = Args {
        name: None,
        ignore_unhandled: None,
        event_enum: None,
        root: None,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident(kw::NAME) {
            if let Some(lit) = parse_str(ctxt, &meta, kw::NAME, "Order")? {
                if !is_valid_stored_name(&lit.value()) {
                    ctxt.error_spanned_by(
                        &lit,
                        "an aggregate `name` must be non-empty and without whitespace, such as `name = \"Order\"`",
                    );
                }
                set_once(ctxt, &mut parsed.name, lit.value(), &meta, kw::AGGREGATE);
            }
        } else if meta.path.is_ident(kw::UNHANDLED) {
            if let Some(lit) = parse_str(ctxt, &meta, kw::UNHANDLED, "ignore")? {
                let ignore = match lit.value().as_str() {
                    "ignore" => true,
                    "error" => false,
                    other => {
                        ctxt.error_spanned_by(
                            &lit,
                            format_args!("`unhandled = \"{other}\"` is not a choice; use `\"error\"` (the default: replaying an event without handler fails) or `\"ignore\"` (skip it)"),
                        );
                        false
                    }
                };
                set_once(
                    ctxt,
                    &mut parsed.ignore_unhandled,
                    ignore,
                    &meta,
                    kw::AGGREGATE,
                );
            }
        } else if meta.path.is_ident(kw::EVENT_ENUM) {
            if let Some(lit) = parse_str(ctxt, &meta, kw::EVENT_ENUM, "OrderEvent")? {
                match lit.parse::<syn::Ident>() {
                    Ok(ident) => set_once(ctxt, &mut parsed.event_enum, ident, &meta, kw::AGGREGATE),
                    Err(_) => ctxt.error_spanned_by(
                        &lit,
                        "`event_enum` names the generated enum, so it must be a type name, such as `event_enum = \"OrderEvent\"`",
                    ),
                }
            }
        } else if meta.path.is_ident(kw::CRATE) {
            if let Some(path) = parse_crate(ctxt, &meta)? {
                set_once(ctxt, &mut parsed.root, path, &meta, kw::AGGREGATE);
            }
        } else {
            return Err(meta.error(format_args!(
                "unknown `aggregate` attribute `{}`; expected `name`, `unhandled`, `event_enum` or `crate`",
                key_name(&meta)
            )));
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        ctxt.syn_error(error);
    }
    parsed
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

impl<'a> AggregateDef<'a> {
    /// Parses what can be parsed; every problem goes to `ctxt`. `None` when the impl
    /// block itself is not usable.
    pub fn from_ast(ctxt: &Ctxt, args: TokenStream, item: &'a syn::ItemImpl) -> Option<Self> {
        let args = parse_args(ctxt, args);
        if let Some((_, path, _)) = &item.trait_ {
            ctxt.error_spanned_by(
                path,
                "`#[aggregate]` goes on the aggregate's own impl block (`impl Order { ... }`), not on a trait impl",
            );
            return None;
        }
        if !item.generics.params.is_empty() {
            ctxt.error_spanned_by(
                &item.generics,
                "generic aggregates are not supported: an aggregate's stored type name must name exactly one type",
            );
        }
        let type_ident = match &*item.self_ty {
            syn::Type::Path(path) if path.qself.is_none() => {
                path.path.segments.last().map(|s| s.ident.clone())
            }
            _ => None,
        };
        let Some(type_ident) = type_ident else {
            ctxt.error_spanned_by(
                &item.self_ty,
                "`#[aggregate]` needs a named struct or enum type: `impl Order { ... }`",
            );
            return None;
        };

        let mut handlers = Vec::new();
        let mut marked = false;
        for impl_item in &item.items {
            match impl_item {
                syn::ImplItem::Fn(method) => {
                    let mut marks = method.attrs.iter().filter(|attr| is_handles(attr));
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
                    if let Some(attr) = attrs.iter().find(|attr| is_handles(attr)) {
                        ctxt.error_spanned_by(attr, "`#[handles]` goes on a method: `fn on_event(&mut self, event: &Event)`");
                    }
                }
                _ => {}
            }
        }
        if !marked {
            let (impl_token, self_ty) = (&item.impl_token, &item.self_ty);
            ctxt.error_spanned_by(
                quote::quote!(#impl_token #self_ty),
                "`#[aggregate]` found no handler: mark each method that applies an event with `#[handles(EventType)]`",
            );
        }

        Some(AggregateDef {
            self_ty: &item.self_ty,
            name: args.name.unwrap_or_else(|| type_ident.to_string()),
            ignore_unhandled: args.ignore_unhandled.unwrap_or(false),
            event_enum: args.event_enum.unwrap_or_else(|| {
                syn::Ident::new(&format!("{type_ident}Event"), type_ident.span())
            }),
            root: args.root.unwrap_or_else(default_root),
            handlers,
        })
    }
}
