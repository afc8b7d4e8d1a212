//! `#[projection]`: parse → validate → expand, with a fallback on error.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::shared;

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    shared::expand_impl(
        input,
        "`#[projection]` goes on the impl block that holds the `#[handles(...)]` methods: `#[projection] impl OrderSummary { ... }`",
        |ctxt, item| {
            let def = parse::ProjectionDef::from_ast(ctxt, args, item)?;
            validate::check(ctxt, &def);
            (!ctxt.has_errors()).then(|| expand::expand(&def))
        },
        parse::finish,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quote::quote;

    use super::*;
    use crate::shared::testing::{messages, pretty};

    #[test]
    fn expands_a_two_event_projection_reset_to_default() {
        let out = expand(
            TokenStream::new(),
            quote! {
                impl OrderSummary {
                    #[handles(OrderCreated)]
                    async fn on_created(&mut self, e: &Event<OrderCreated>) -> Result<(), MyError> { Ok(()) }
                    #[handles(events::OrderShipped)]
                    async fn on_shipped(&mut self, e: &Event<'_, events::OrderShipped>) -> Result<(), BoxError> { Ok(()) }
                    pub fn total(&self) -> u64 { 0 }
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn expands_options_a_reset_method_and_generics() {
        let out = expand(
            quote!(name = "order-summary", crate = "::es"),
            quote! {
                impl<S: Store> OrderSummary<S> where S: Send {
                    #[handles(OrderCreated)]
                    async fn on_created(&mut self, e: &Event<OrderCreated>) -> Result<(), MyError> { Ok(()) }
                    #[reset]
                    async fn clear(&mut self) -> Result<(), MyError> { Ok(()) }
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn reports_every_mistake_and_keeps_the_impl() {
        let out = expand(
            quote!(name = 5, colour = "red"),
            quote! {
                impl OrderSummary {
                    #[handles(A)]
                    fn a(&mut self, event: &Event<A>) -> Result<(), E> { Ok(()) }
                    #[handles(B)]
                    async fn b(&mut self, event: &B) {}
                    #[handles(A)]
                    async fn again(&mut self, event: Event<A>) -> Result<(), E> { Ok(()) }
                    #[reset]
                    async fn clear(&mut self) -> Result<(), E> { Ok(()) }
                    #[reset]
                    async fn clear_again(&mut self) -> Result<(), E> { Ok(()) }
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    /// The messages `expand` reports for `input`, in order.
    fn errors(args: TokenStream, input: TokenStream) -> Vec<String> {
        let item: syn::ItemImpl = syn::parse2(input).unwrap();
        messages(|ctxt| {
            if let Some(def) = parse::ProjectionDef::from_ast(ctxt, args, &item) {
                validate::check(ctxt, &def);
            }
        })
    }

    #[test]
    fn accepts_every_form() {
        let messages = errors(
            quote!(name = "orders", crate = "::eventsource"),
            quote! {
                impl<'x, T> Summary<'x, T> {
                    #[handles(Created)]
                    async fn a<'e>(&mut self, event: &'e Event<'e, Created>) -> Result<(), E> { Ok(()) }
                    #[handles(sales::Shipped)]
                    async fn b(&mut self, event: &eventsource::Event<sales::Shipped>) -> io::Result<()> { Ok(()) }
                    #[handles(Renamed)]
                    async fn c(&mut self, event: &Envelope<Renamed>) -> Result<(), BoxError> { Ok(()) }
                    #[reset]
                    async fn clear(&mut self) -> Result<(), E> { Ok(()) }
                    fn anything(self, a: u8) -> u8 { a }
                }
            },
        );
        assert!(messages.is_empty(), "{messages:?}");
    }

    #[test]
    fn refuses_bad_signatures() {
        assert_eq!(
            errors(
                TokenStream::new(),
                quote! {
                    impl Summary {
                        #[handles(A)]
                        async fn a(&mut self) -> Result<(), E> { Ok(()) }
                        #[handles(B)]
                        async fn b(&mut self, event: &Event<B>, extra: u8) -> Result<(), E> { Ok(()) }
                        #[handles(C)]
                        async fn c(&self, event: &Event<C>) -> Result<(), E> { Ok(()) }
                        #[handles(D)]
                        async fn d(&mut self, event: &mut Event<D>) -> u8 { 0 }
                        #[reset]
                        fn clear(&mut self, all: bool) {}
                    }
                },
            ),
            [
                "a handler takes the event after `&mut self`: `async fn a(&mut self, event: &Event<A>) -> Result<(), Error>`",
                "a handler takes exactly `&mut self` and the event: `async fn b(&mut self, event: &Event<B>) -> Result<(), Error>`",
                "a handler changes the state, so it takes `&mut self`: `async fn c(&mut self, event: &Event<C>) -> Result<(), Error>`",
                "a projection handler returns a `Result`, so that a failure is retried, then dead-lettered; write `async fn d(&mut self, event: &Event<D>) -> Result<(), Error>`, with any error type that converts into `BoxError`",
                "a handler reads the event, it cannot change it: take `&Event<D>`",
                "the `#[reset]` method is `async` (the runner awaits it); write `async fn clear(&mut self) -> Result<(), Error>`",
                "the `#[reset]` method returns a `Result`, so that a failure is retried, then dead-lettered; write `async fn clear(&mut self) -> Result<(), Error>`, with any error type that converts into `BoxError`",
                "the `#[reset]` method takes only `&mut self`: `async fn clear(&mut self) -> Result<(), Error>`",
            ]
        );
    }

    #[test]
    fn refuses_misplaced_marks() {
        assert_eq!(
            errors(
                TokenStream::new(),
                quote! {
                    impl Summary {
                        #[handles(A)]
                        #[reset]
                        async fn a(&mut self, event: &Event<A>) -> Result<(), E> { Ok(()) }
                        #[reset(hard)]
                        async fn clear(&mut self) -> Result<(), E> { Ok(()) }
                    }
                },
            ),
            [
                "a method is either a handler or the `#[reset]` method, not both; write a method for each",
                "`#[reset]` takes no arguments: `#[reset] async fn clear(&mut self) -> Result<(), Error>`",
            ]
        );
        assert_eq!(
            errors(TokenStream::new(), quote!(impl Projection for Summary {})),
            [
                "`#[projection]` goes on the read model's own impl block (`impl OrderSummary { ... }`), not on a trait impl; it writes the `Projection` impl for you"
            ]
        );
        assert_eq!(
            errors(quote!(name = ""), quote!(impl Summary { fn f(&self) {} })),
            [
                "a projection `name` must be non-empty and without whitespace, such as `name = \"order-summary\"`",
                "`#[projection]` found no handler: mark each async method that handles an event with `#[handles(EventType)]`",
            ]
        );
    }
}
