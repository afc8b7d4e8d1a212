//! `#[event(...)]` into an [`EventDef`].

use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::shared::ctxt::Ctxt;
use crate::shared::kw;
use crate::shared::runtime::{default_root, parse_crate, parse_str, set_once};

/// What the derive needs to know about an event type.
pub struct EventDef<'a> {
    pub ident: &'a syn::Ident,
    pub name: String,
    pub version: u32,
    pub aggregate: String,
    pub root: syn::Path,
}

impl<'a> EventDef<'a> {
    pub fn from_ast(input: &'a syn::DeriveInput) -> syn::Result<Self> {
        let ctxt = Ctxt::new();
        let mut name: Option<(String, Span)> = None;
        let mut version: Option<u32> = None;
        let mut aggregate: Option<String> = None;
        let mut root: Option<syn::Path> = None;

        for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let result = attr.parse_nested_meta(|meta| {
                let key_span = meta.path.span();
                if meta.path.is_ident(kw::NAME) {
                    let lit = parse_str(&meta)?;
                    set_once(&ctxt, &mut name, (lit.value(), lit.span()), kw::NAME, "event", key_span);
                } else if meta.path.is_ident(kw::VERSION) {
                    let lit: syn::LitInt = meta.value()?.parse()?;
                    match lit.base10_parse::<u32>() {
                        Ok(0) | Err(_) => ctxt.error_at(
                            lit.span(),
                            "`version` is the event's schema version: a whole number from 1",
                        ),
                        Ok(v) => set_once(&ctxt, &mut version, v, kw::VERSION, "event", key_span),
                    }
                } else if meta.path.is_ident(kw::AGGREGATE) {
                    let lit = parse_str(&meta)?;
                    if lit.value().trim().is_empty() {
                        ctxt.error_at(lit.span(), "`aggregate` names the aggregate type that owns the event, such as `aggregate = \"Order\"`");
                    }
                    set_once(&ctxt, &mut aggregate, lit.value(), kw::AGGREGATE, "event", key_span);
                } else if meta.path.is_ident(kw::CRATE) {
                    let path = parse_crate(&meta)?;
                    set_once(&ctxt, &mut root, path, kw::CRATE, "event", key_span);
                } else {
                    let key = meta.path.get_ident().map_or_else(|| "?".to_owned(), ToString::to_string);
                    return Err(meta.error(format_args!(
                        "unknown `event` attribute `{key}`; expected `name`, `version`, `aggregate` or `crate`"
                    )));
                }
                Ok(())
            });
            if let Err(error) = result {
                ctxt.syn_error(error);
            }
        }

        if !input.generics.params.is_empty() {
            ctxt.error_spanned_by(
                &input.generics,
                "generic events are not supported: an event's stored name must name exactly one type",
            );
        }
        if let Some((name, span)) = &name
            && (name.is_empty() || name.chars().any(char::is_whitespace))
        {
            ctxt.error_at(
                *span,
                "an event `name` must be non-empty and without whitespace, such as `order.shipped`",
            );
        }
        if aggregate.is_none() {
            ctxt.error_spanned_by(
                &input.ident,
                format_args!(
                    "`{}` needs its owning aggregate: add `#[event(aggregate = \"...\")]` naming the aggregate type",
                    input.ident
                ),
            );
        }
        ctxt.check()?;
        Ok(EventDef {
            ident: &input.ident,
            name: name.map_or_else(|| input.ident.to_string(), |(name, _)| name),
            version: version.unwrap_or(1),
            aggregate: aggregate.unwrap_or_default(),
            root: root.unwrap_or_else(default_root),
        })
    }
}
