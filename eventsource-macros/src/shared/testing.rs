//! Helpers for the macros' unit tests.
#![allow(clippy::unwrap_used)]

use proc_macro2::TokenStream;

use super::ctxt::Ctxt;

/// `tokens` pretty-printed, for snapshots.
pub fn pretty(tokens: TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).unwrap())
}

/// The messages `run` reports, in order.
pub fn messages(run: impl FnOnce(&Ctxt)) -> Vec<String> {
    let ctxt = Ctxt::new();
    run(&ctxt);
    ctxt.check()
        .err()
        .map(|error| error.into_iter().map(|e| e.to_string()).collect())
        .unwrap_or_default()
}
