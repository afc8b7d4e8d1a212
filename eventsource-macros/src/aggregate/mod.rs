//! `#[aggregate]`: parse → validate → expand, with a fallback on error.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::shared;

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    shared::expand_impl(
        input,
        "`#[aggregate]` goes on the impl block that holds the `#[handles(...)]` methods: `#[aggregate] impl Order { ... }`",
        |ctxt, item| {
            let def = parse::AggregateDef::from_ast(ctxt, args, item)?;
            validate::check(ctxt, &def);
            (!ctxt.has_errors()).then(|| expand::expand(&def))
        },
        parse::strip_handles,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quote::quote;

    use super::*;
    use crate::shared::testing::{messages, pretty};

    #[test]
    fn expands_a_two_event_aggregate() {
        let out = expand(
            TokenStream::new(),
            quote! {
                impl Order {
                    #[handles(OrderCreated)]
                    fn on_created(&mut self, event: &OrderCreated) { self.created = true; }
                    #[handles(events::OrderShipped)]
                    fn on_shipped(&mut self, event: &events::OrderShipped) {}
                    pub fn ship(&self) -> Result<OrderShipped, Error> { todo() }
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn expands_options() {
        let out = expand(
            quote!(
                name = "sales.order",
                unhandled = "ignore",
                event_enum = "OrderEvents",
                crate = "::es"
            ),
            quote! {
                impl Order {
                    #[handles(OrderCreated)]
                    fn on_created(&mut self, event: &OrderCreated) {}
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn reports_every_mistake_and_keeps_the_impl() {
        let out = expand(
            quote!(unhandled = "skip", colour = "red"),
            quote! {
                impl Order {
                    #[handles(A)]
                    async fn a(&mut self, event: &A) {}
                    #[handles(B)]
                    fn b(&self, event: B) -> u8 { 0 }
                    #[handles(A)]
                    fn again(&mut self, event: &A) {}
                    #[handles]
                    fn nothing(&mut self, event: &C) {}
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    /// The messages `expand` reports for `input`, in order.
    fn errors(args: TokenStream, input: TokenStream) -> Vec<String> {
        let item: syn::ItemImpl = syn::parse2(input).unwrap();
        messages(|ctxt| {
            if let Some(def) = parse::AggregateDef::from_ast(ctxt, args, &item) {
                validate::check(ctxt, &def);
            }
        })
    }

    #[test]
    fn accepts_lifetimes_and_leaves_other_methods_alone() {
        let messages = errors(
            TokenStream::new(),
            quote! {
                impl Order {
                    #[handles(Created)]
                    fn on_created<'e>(&mut self, event: &'e Created) {}
                    async fn anything(self, a: u8, b: u8) -> u8 { a }
                }
            },
        );
        assert!(messages.is_empty(), "{messages:?}");
    }

    #[test]
    fn refuses_two_events_that_would_share_a_variant() {
        assert_eq!(
            errors(
                quote!(event_enum = "History"),
                quote! {
                    impl Order {
                        #[handles(Created)]
                        fn a(&mut self, event: &Created) {}
                        #[handles(legacy_sales::Created)]
                        fn b(&mut self, event: &legacy_sales::Created) {}
                    }
                },
            ),
            [
                "`legacy_sales::Created` and `Created` would both be the variant `History::Created`; import one under another name (`use legacy_sales::Created as LegacySalesCreated;`) and handle that"
            ]
        );
    }

    #[test]
    fn refuses_misplaced_or_malformed_marks() {
        assert_eq!(
            errors(
                TokenStream::new(),
                quote! {
                    impl Order {
                        #[handles(A, B)]
                        fn a(&mut self, event: &A) {}
                        #[handles(A = 1)]
                        fn b(&mut self, event: &A) {}
                    }
                },
            ),
            [
                "one event per handler: write a method for each event, each with its own `#[handles(...)]`",
                "`#[handles]` names the one event the method applies: `#[handles(OrderCreated)]`",
            ]
        );
        assert_eq!(
            errors(TokenStream::new(), quote!(impl Display for Order {})),
            [
                "`#[aggregate]` goes on the aggregate's own impl block (`impl Order { ... }`), not on a trait impl"
            ]
        );
    }
}
