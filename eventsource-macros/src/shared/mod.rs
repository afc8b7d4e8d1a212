//! Pieces every macro uses.

pub mod ctxt;
pub mod handler;
pub mod kw;
pub mod runtime;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// `#[handles]` reached the compiler on its own: it is not inside an `#[aggregate]` impl.
pub fn handles_outside(_args: TokenStream, item: TokenStream) -> TokenStream {
    let span_source = syn::parse2::<syn::ImplItemFn>(item.clone())
        .map(|f| f.sig.ident.to_token_stream())
        .unwrap_or_else(|_| item.clone());
    let error = syn::Error::new_spanned(
        span_source,
        "`#[handles]` only works on methods inside an `#[aggregate]` impl block; add `#[aggregate]` to the impl",
    );
    let mut out = error.to_compile_error();
    out.extend(item);
    out
}
