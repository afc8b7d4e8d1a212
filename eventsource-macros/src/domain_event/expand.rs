//! [`EventDef`] into tokens. Infallible: every check happened before.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::parse::EventDef;

/// The `DomainEvent` impl and the registration.
pub fn expand(def: &EventDef<'_>) -> TokenStream {
    let root = def.root();
    let ident = def.ident();
    let the_impl = domain_event_impl(def);
    quote! {
        const _: () = {
            #the_impl
            #root::__private::register_event!(#ident);
        };
    }
}

/// On error: the impl alone (nothing registered), so code that uses the event keeps
/// type-checking and the user sees only the real mistake.
pub fn fallback(def: &EventDef<'_>) -> TokenStream {
    let the_impl = domain_event_impl(def);
    quote! {
        const _: () = {
            #the_impl
        };
    }
}

fn domain_event_impl(def: &EventDef<'_>) -> TokenStream {
    let root = def.root();
    let ident = def.ident();
    let name = def.stored_name();
    let version = def.version();
    let aggregate = def
        .aggregate
        .as_ref()
        .map(syn::LitStr::value)
        .unwrap_or_default();
    // Spanned at the type, so a missing supertrait (`Serialize`, `PartialEq`, ...)
    // points at the user's type.
    quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl #root::DomainEvent for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const AGGREGATE_TYPE: &'static str = #aggregate;
        }
    }
}
