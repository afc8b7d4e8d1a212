//! `#[derive(DomainEvent)]`: parse → validate → expand, with a fallback on error.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::shared::ctxt::Ctxt;

/// Runs the pipeline. On error: the errors, plus the bare `DomainEvent` impl when the
/// type and its aggregate are known, so that one mistake in `#[event(...)]` does not
/// turn every use of the event into an error.
pub fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let ctxt = Ctxt::new();
    let def = parse::EventDef::from_ast(&ctxt, &input);
    validate::check(&ctxt, &def);
    match ctxt.check() {
        Ok(()) => expand::expand(&def),
        Err(error) => {
            let mut out = error.to_compile_error();
            if input.generics.params.is_empty() && def.aggregate.is_some() {
                out.extend(expand::fallback(&def));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quote::quote;

    use super::*;
    use crate::shared::testing::{messages, pretty};

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

    /// The messages `derive` reports for `input`, in order.
    fn errors(input: TokenStream) -> Vec<String> {
        let input: syn::DeriveInput = syn::parse2(input).unwrap();
        messages(|ctxt| {
            let def = parse::EventDef::from_ast(ctxt, &input);
            validate::check(ctxt, &def);
        })
    }

    #[test]
    fn reports_every_mistake_at_once() {
        let messages = errors(quote! {
            #[event(name = "has space", version = 0, colour = "red")]
            #[event(crate = "not a path")]
            pub struct Bad<T>(T);
        });
        insta::assert_debug_snapshot!(messages);
    }

    #[test]
    fn parses_every_key_and_defaults_the_rest() {
        let input: syn::DeriveInput = syn::parse2(quote! {
            #[event(aggregate = "Order", version = 7)]
            #[event(crate = "::es")]
            pub enum OrderClosed { Cancelled }
        })
        .unwrap();
        let ctxt = Ctxt::new();
        let def = parse::EventDef::from_ast(&ctxt, &input);
        assert!(ctxt.check().is_ok());
        assert_eq!(def.stored_name(), "OrderClosed");
        assert_eq!(def.version(), 7);
        assert_eq!(
            def.aggregate.as_ref().map(syn::LitStr::value).as_deref(),
            Some("Order")
        );
        let root = def.root();
        assert_eq!(quote!(#root).to_string(), quote!(::es).to_string());
    }

    #[test]
    fn refuses_bad_values_with_a_hint() {
        assert_eq!(
            errors(quote! {
                #[event(aggregate = Order, version = "2", name = "a b")]
                struct E;
            }),
            [
                "`aggregate` takes a string in quotes, such as `aggregate = \"Order\"`",
                "`version` is the event's schema version: a whole number from 1, such as `version = 2`",
                "an event `name` must be non-empty and without whitespace, such as `name = \"order.shipped\"`",
            ]
        );
        assert_eq!(
            errors(quote! {
                #[event(aggregate = "Order", aggregate = "Cart", version = 4294967296)]
                struct E;
            }),
            [
                "`aggregate` is given twice in `#[event(...)]`; keep one",
                "`version` is the event's schema version: a whole number from 1, such as `version = 2`",
            ]
        );
    }

    #[test]
    fn requires_the_aggregate_and_says_how() {
        assert_eq!(
            errors(quote!(
                struct OrderCreated;
            )),
            [
                "`OrderCreated` needs the aggregate that owns it: add `#[event(aggregate = \"...\")]` naming that aggregate, such as `#[event(aggregate = \"Order\")]`"
            ]
        );
    }

    #[test]
    fn falls_back_to_the_bare_impl_when_the_aggregate_is_known() {
        let out = derive(quote! {
            #[event(aggregate = "Order", verison = 2)]
            pub struct OrderCreated;
        });
        insta::assert_snapshot!(pretty(out));
        let out = derive(quote! {
            #[event(name = "created")]
            pub struct OrderCreated;
        });
        assert!(!out.to_string().contains("impl"), "{out}");
    }
}
