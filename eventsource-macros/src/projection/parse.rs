//! `#[projection(...)]` and the impl block into a [`ProjectionDef`].

use proc_macro2::TokenStream;

use crate::shared::ctxt::Ctxt;
use crate::shared::handler::{self, HandlerDef, ImplMessages};
use crate::shared::kw;
use crate::shared::runtime::{default_root, parse_attr_args, parse_name, set_once};

/// What `#[projection]` knows about the projection.
pub struct ProjectionDef<'a> {
    pub item: &'a syn::ItemImpl,
    /// The name checkpoints and dead letters are kept under.
    pub name: String,
    pub root: syn::Path,
    pub handlers: Vec<HandlerDef<'a>>,
    /// The `#[reset]` method; without one, `reset` restores `Default::default()`.
    pub reset: Option<&'a syn::ImplItemFn>,
}

/// Readies the user's impl for the compiler: a handler's `&Event<E>` gets its elided
/// lifetime (`&Event<'_, E>`, which an `async fn` cannot leave implicit), and `#[handles]`
/// and `#[reset]`, which are ours to read, go.
pub fn finish(item: &mut syn::ItemImpl) {
    for impl_item in &mut item.items {
        if let syn::ImplItem::Fn(method) = impl_item
            && method
                .attrs
                .iter()
                .any(|attr| handler::is_attr(attr, kw::HANDLES))
            && let Some(syn::FnArg::Typed(arg)) = method.sig.inputs.iter_mut().nth(1)
            && let syn::Type::Reference(reference) = &mut *arg.ty
            && let syn::Type::Path(path) = &mut *reference.elem
            && let Some(last) = path.path.segments.last_mut()
            && last.ident == "Event"
            && let syn::PathArguments::AngleBracketed(args) = &mut last.arguments
            && !args
                .args
                .iter()
                .any(|arg| matches!(arg, syn::GenericArgument::Lifetime(_)))
        {
            let elided = syn::Lifetime::new("'_", last.ident.span());
            args.args.insert(0, syn::GenericArgument::Lifetime(elided));
        }
    }
    handler::strip_attrs(item, &[kw::HANDLES, kw::RESET]);
}

struct Args {
    name: Option<String>,
    root: Option<syn::Path>,
}

fn parse_args(ctxt: &Ctxt, args: TokenStream) -> Args {
    let mut parsed = Args {
        name: None,
        root: None,
    };
    let Args { name, root } = &mut parsed;
    parse_attr_args(
        ctxt,
        args,
        kw::PROJECTION,
        "`name` or `crate`",
        root,
        |meta| {
            if !meta.path.is_ident(kw::NAME) {
                return Ok(false);
            }
            if let Some(value) = parse_name(ctxt, meta, "a projection", "order-summary")? {
                set_once(ctxt, name, value, meta, kw::PROJECTION);
            }
            Ok(true)
        },
    );
    parsed
}

/// The `#[reset]` method, if any; a second one, a malformed mark or a method that is
/// also a handler are errors.
fn find_reset<'a>(ctxt: &Ctxt, item: &'a syn::ItemImpl) -> Option<&'a syn::ImplItemFn> {
    let mut found: Option<&syn::ImplItemFn> = None;
    for impl_item in &item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let Some(mark) = method.attrs.iter().find(|a| handler::is_attr(a, kw::RESET)) else {
            continue;
        };
        if !matches!(mark.meta, syn::Meta::Path(_)) {
            ctxt.error_spanned_by(
                &mark.meta,
                "`#[reset]` takes no arguments: `#[reset] async fn clear(&mut self) -> Result<(), Error>`",
            );
        }
        if let Some(handles) = method
            .attrs
            .iter()
            .find(|a| handler::is_attr(a, kw::HANDLES))
        {
            ctxt.error_spanned_by(
                handles,
                "a method is either a handler or the `#[reset]` method, not both; write a method for each",
            );
            continue;
        }
        match found {
            Some(first) => ctxt.error_spanned_by(
                mark,
                format_args!(
                    "`#[reset]` is given twice; the first is `{}`. A projection has one reset method: do all the clearing there",
                    first.sig.ident
                ),
            ),
            None => found = Some(method),
        }
    }
    found
}

impl<'a> ProjectionDef<'a> {
    /// Parses what can be parsed; every problem goes to `ctxt`. `None` when the impl
    /// block itself is not usable.
    pub fn from_ast(ctxt: &Ctxt, args: TokenStream, item: &'a syn::ItemImpl) -> Option<Self> {
        let args = parse_args(ctxt, args);
        let (type_ident, handlers) = handler::read_impl(
            ctxt,
            item,
            &ImplMessages {
                trait_impl: "`#[projection]` goes on the read model's own impl block (`impl OrderSummary { ... }`), not on a trait impl; it writes the `Projection` impl for you",
                unnamed: "`#[projection]` needs a named struct or enum type: `impl OrderSummary { ... }`",
                no_handler: "`#[projection]` found no handler: mark each async method that handles an event with `#[handles(EventType)]`",
            },
        )?;
        let reset = find_reset(ctxt, item);
        Some(ProjectionDef {
            item,
            name: args.name.unwrap_or_else(|| type_ident.to_string()),
            root: args.root.unwrap_or_else(default_root),
            handlers,
            reset,
        })
    }
}
