//! `#[derive(DomainEvent)]`: parse → expand. The only cross-node check (the type is not
//! generic) happens while parsing.

mod expand;
mod parse;

use proc_macro2::TokenStream;

/// Runs the pipeline; on error emits only the errors (a derive adds items, so there is
/// nothing of the user's to keep).
pub fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    match parse::EventDef::from_ast(&input) {
        Ok(def) => expand::expand(&def),
        Err(error) => error.to_compile_error(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quote::quote;

    use super::*;

    fn pretty(tokens: TokenStream) -> String {
        prettyplease::unparse(&syn::parse2(tokens).unwrap())
    }

    #[test]
    fn expands_defaults() {
        let out = derive(quote! {
            #[event(aggregate = "Order")]
            pub struct OrderCreated { pub total: f64 }
        });
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn expands_explicit_name_version_and_crate() {
        let out = derive(quote! {
            #[event(aggregate = "Order", name = "order.shipped", version = 2, crate = "::es")]
            pub struct OrderShipped { pub tracking: String }
        });
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn reports_every_mistake_at_once() {
        let input: syn::DeriveInput = syn::parse2(quote! {
            #[event(name = "has space", version = 0)]
            pub struct Bad<T>(T);
        })
        .unwrap();
        let error = parse::EventDef::from_ast(&input).err().unwrap();
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        insta::assert_debug_snapshot!(messages);
    }
}
