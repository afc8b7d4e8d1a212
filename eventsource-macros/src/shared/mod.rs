//! Pieces every macro uses.

pub mod ctxt;
pub mod handler;
pub mod kw;
pub mod runtime;
#[cfg(test)]
pub mod testing;

use proc_macro2::TokenStream;
use quote::ToTokens;

use self::ctxt::Ctxt;

/// Runs an attribute macro on an impl block: `generate` parses, validates and, when
/// `ctxt` holds no error, expands; `finish` readies the user's impl (our helper
/// attributes removed). The user's impl is always emitted, so that on error only the
/// errors are added (`not_an_impl` when the input is no impl block at all).
pub fn expand_impl(
    input: TokenStream,
    not_an_impl: &str,
    generate: impl FnOnce(&Ctxt, &syn::ItemImpl) -> Option<TokenStream>,
    finish: impl FnOnce(&mut syn::ItemImpl),
) -> TokenStream {
    let mut item = match syn::parse2::<syn::ItemImpl>(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let mut out = syn::Error::new_spanned(&input, not_an_impl).to_compile_error();
            out.extend(input);
            return out;
        }
    };
    let ctxt = Ctxt::new();
    let generated = generate(&ctxt, &item);
    let generated = match ctxt.check() {
        Ok(()) => generated.unwrap_or_default(),
        Err(error) => error.to_compile_error(),
    };
    finish(&mut item);
    let mut out = item.into_token_stream();
    out.extend(generated);
    out
}

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
