//! Pieces every macro uses.

pub mod ctxt;
pub mod handler;
pub mod kw;
pub mod runtime;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// `#[handles]` reached the compiler on its own: it is not inside an `#[aggregate]` or a
/// `#[projection]` impl.
pub fn handles_outside(_args: TokenStream, item: TokenStream) -> TokenStream {
    let span_source = syn::parse2::<syn::ImplItemFn>(item.clone())
        .map(|f| f.sig.ident.to_token_stream())
        .unwrap_or_else(|_| item.clone());
    let error = syn::Error::new_spanned(
        span_source,
        "`#[handles]` only works on methods inside an `#[aggregate]` or a `#[projection]` impl block; add `#[aggregate]` to an aggregate's impl, or `#[projection]` to a read model's",
    );
    let mut out = error.to_compile_error();
    out.extend(item);
    out
}
