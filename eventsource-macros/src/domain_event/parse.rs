//! `#[event(...)]` into an [`EventDef`]. Every problem goes to the [`Ctxt`]; parsing
//! carries on so that one build shows every mistake.

use crate::shared::ctxt::Ctxt;
use crate::shared::kw;
use crate::shared::runtime::{
    default_root, key_name, parse_crate, parse_positive_u32, parse_str, set_once,
};

/// What the derive knows about an event type. Keeps the user's nodes for spans.
pub struct EventDef<'a> {
    pub input: &'a syn::DeriveInput,
    /// `name = "..."`, as written.
    pub name: Option<syn::LitStr>,
    pub version: Option<u32>,
    /// `aggregate = "..."`, as written.
    pub aggregate: Option<syn::LitStr>,
    /// Whether an `aggregate` key was written at all (even with a bad value), so that a
    /// malformed value is not also reported as missing.
    pub aggregate_written: bool,
    pub root: Option<syn::Path>,
}

impl<'a> EventDef<'a> {
    pub fn from_ast(ctxt: &Ctxt, input: &'a syn::DeriveInput) -> Self {
        let mut def = EventDef {
            input,
            name: None,
            version: None,
            aggregate: None,
            aggregate_written: false,
            root: None,
        };
        for attr in input.attrs.iter().filter(|a| a.path().is_ident(kw::EVENT)) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident(kw::NAME) {
                    if let Some(lit) = parse_str(ctxt, &meta, kw::NAME, "order.shipped")? {
                        set_once(ctxt, &mut def.name, lit, &meta, kw::EVENT);
                    }
                } else if meta.path.is_ident(kw::VERSION) {
                    let what = "the event's schema version";
                    if let Some(version) = parse_positive_u32(ctxt, &meta, kw::VERSION, what)? {
                        set_once(ctxt, &mut def.version, version, &meta, kw::EVENT);
                    }
                } else if meta.path.is_ident(kw::AGGREGATE) {
                    def.aggregate_written = true;
                    if let Some(lit) = parse_str(ctxt, &meta, kw::AGGREGATE, "Order")? {
                        set_once(ctxt, &mut def.aggregate, lit, &meta, kw::EVENT);
                    }
                } else if meta.path.is_ident(kw::CRATE) {
                    if let Some(path) = parse_crate(ctxt, &meta)? {
                        set_once(ctxt, &mut def.root, path, &meta, kw::EVENT);
                    }
                } else {
                    return Err(meta.error(format_args!(
                        "unknown `event` attribute `{}`; expected `name`, `version`, `aggregate` or `crate`",
                        key_name(&meta)
                    )));
                }
                Ok(())
            });
            if let Err(error) = result {
                ctxt.syn_error(error);
            }
        }
        def
    }

    pub fn ident(&self) -> &'a syn::Ident {
        &self.input.ident
    }

    /// The stored name: `name = "..."`, else the type's ident.
    pub fn stored_name(&self) -> String {
        self.name
            .as_ref()
            .map_or_else(|| self.input.ident.to_string(), syn::LitStr::value)
    }

    pub fn version(&self) -> u32 {
        self.version.unwrap_or(1)
    }

    pub fn root(&self) -> syn::Path {
        self.root.clone().unwrap_or_else(default_root)
    }
}
