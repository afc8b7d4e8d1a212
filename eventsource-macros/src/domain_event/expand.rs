//! [`EventDef`] into tokens.

use proc_macro2::TokenStream;
use quote::quote;

use super::parse::EventDef;

pub fn expand(def: &EventDef<'_>) -> TokenStream {
    let EventDef {
        ident,
        name,
        version,
        aggregate,
        root,
    } = def;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #root::DomainEvent for #ident {
                const NAME: &'static str = #name;
                const VERSION: u32 = #version;
                const AGGREGATE_TYPE: &'static str = #aggregate;
            }

            #root::__private::register_event!(#ident);
        };
    }
}
