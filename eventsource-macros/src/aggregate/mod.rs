//! `#[aggregate]`: parse → validate → expand, with a fallback on error.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::shared::ctxt::Ctxt;

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item = match syn::parse2::<syn::ItemImpl>(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let mut out = syn::Error::new_spanned(
                &input,
                "`#[aggregate]` goes on the impl block that holds the `#[handles(...)]` methods: `#[aggregate] impl Order { ... }`",
            )
            .to_compile_error();
            out.extend(input);
            return out;
        }
    };
    let ctxt = Ctxt::new();
    let def = parse::AggregateDef::from_ast(&ctxt, args, &item);
    if let Some(def) = &def {
        validate::check(&ctxt, def);
    }
    let generated = match (def, ctxt.check()) {
        (Some(def), Ok(())) => expand::expand(&def),
        (_, Err(error)) => error.to_compile_error(),
        (None, Ok(())) => TokenStream::new(),
    };
    // Fallback and normal path alike: the user's impl, minus our helper attributes.
    parse::strip_handles(&mut item);
    let mut out = item.into_token_stream();
    out.extend(generated);
    out
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
}
