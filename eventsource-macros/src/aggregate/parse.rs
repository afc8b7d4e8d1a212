//! `#[aggregate(...)]` and the impl block into an [`AggregateDef`].

use proc_macro2::TokenStream;

use crate::shared::ctxt::Ctxt;
use crate::shared::handler::{self, HandlerDef, ImplMessages};
use crate::shared::kw;
use crate::shared::runtime::{default_root, parse_attr_args, parse_name, parse_str, set_once};

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

/// Removes `#[handles]` attributes, which are ours to read, not the compiler's.
pub fn strip_handles(item: &mut syn::ItemImpl) {
    handler::strip_attrs(item, &[kw::HANDLES]);
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
    let Args {
        name,
        ignore_unhandled,
        event_enum,
        root,
    } = &mut parsed;
    parse_attr_args(
        ctxt,
        args,
        kw::AGGREGATE,
        "`name`, `unhandled`, `event_enum` or `crate`",
        root,
        |meta| {
            if meta.path.is_ident(kw::NAME) {
                if let Some(value) = parse_name(ctxt, meta, "an aggregate", "Order")? {
                    set_once(ctxt, name, value, meta, kw::AGGREGATE);
                }
            } else if meta.path.is_ident(kw::UNHANDLED) {
                if let Some(lit) = parse_str(ctxt, meta, kw::UNHANDLED, "ignore")? {
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
                    set_once(ctxt, ignore_unhandled, ignore, meta, kw::AGGREGATE);
                }
            } else if meta.path.is_ident(kw::EVENT_ENUM) {
                if let Some(lit) = parse_str(ctxt, meta, kw::EVENT_ENUM, "OrderEvent")? {
                    match lit.parse::<syn::Ident>() {
                        Ok(ident) => set_once(ctxt, event_enum, ident, meta, kw::AGGREGATE),
                        Err(_) => ctxt.error_spanned_by(
                            &lit,
                            "`event_enum` names the generated enum, so it must be a type name, such as `event_enum = \"OrderEvent\"`",
                        ),
                    }
                }
            } else {
                return Ok(false);
            }
            Ok(true)
        },
    );
    parsed
}

impl<'a> AggregateDef<'a> {
    /// Parses what can be parsed; every problem goes to `ctxt`. `None` when the impl
    /// block itself is not usable.
    pub fn from_ast(ctxt: &Ctxt, args: TokenStream, item: &'a syn::ItemImpl) -> Option<Self> {
        let args = parse_args(ctxt, args);
        let (type_ident, handlers) = handler::read_impl(
            ctxt,
            item,
            &ImplMessages {
                trait_impl: "`#[aggregate]` goes on the aggregate's own impl block (`impl Order { ... }`), not on a trait impl",
                unnamed: "`#[aggregate]` needs a named struct or enum type: `impl Order { ... }`",
                no_handler: "`#[aggregate]` found no handler: mark each method that applies an event with `#[handles(EventType)]`",
            },
        )?;
        if !item.generics.params.is_empty() {
            ctxt.error_spanned_by(
                &item.generics,
                "generic aggregates are not supported: an aggregate's stored type name must name exactly one type",
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
