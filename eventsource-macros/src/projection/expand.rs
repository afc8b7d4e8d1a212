//! [`ProjectionDef`] into tokens. Infallible: every check happened before.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::ProjectionDef;
use crate::shared::handler::{self, HandlerDef, respanned};

pub fn expand(def: &ProjectionDef<'_>) -> TokenStream {
    let ProjectionDef {
        item,
        name,
        root,
        handlers,
        reset,
    } = def;
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();

    let assertions = handlers.iter().enumerate().map(|(index, handler)| {
        handler::assert_events(root, handler, &handlers[..index], "the projection")
    });
    // Each use of an event as a `DomainEvent` is spanned at the event in `#[handles(...)]`,
    // so that a type that is not one is reported there.
    let arms = handlers.iter().map(|handler| {
        let event = &handler.event;
        let root = respanned(root, event.span());
        let call = call(def, handler);
        quote_spanned! {event.span()=>
            <#event as #root::DomainEvent>::NAME => {
                let event = #root::__private::projection_event::<#event>(event)?;
                #call
            }
        }
    });
    let reset_body = match reset {
        Some(method) => result_of(root, &method.sig, TokenStream::new()),
        // Spanned at the type: without `Default` the error points there and names the
        // helper's bound as the reason.
        None => {
            let span = self_ty.span();
            let root = respanned(root, span);
            quote_spanned! {span=>
                #root::__private::projection_without_reset_needs_default::<Self>(self);
                ::core::result::Result::Ok(())
            }
        }
    };

    quote! {
        const _: () = {
            #(#assertions)*

            #[automatically_derived]
            #[#root::async_trait]
            impl #impl_generics #root::projection::Projection for #self_ty #where_clause {
                fn name(&self) -> &str {
                    #name
                }

                async fn handle(
                    &mut self,
                    event: &#root::RecordedEvent,
                ) -> ::core::result::Result<(), #root::BoxError> {
                    match event.name() {
                        #(#arms)*
                        _ => ::core::result::Result::Ok(()),
                    }
                }

                async fn reset(&mut self) -> ::core::result::Result<(), #root::BoxError> {
                    #reset_body
                }
            }
        };
    }
}

/// The call into the user's handler with `event` (an `Event<E>`), its error boxed. The
/// argument is spanned at the event parameter, so a parameter of another type than
/// `#[handles(...)]` names is reported there.
fn call(def: &ProjectionDef<'_>, handler: &HandlerDef<'_>) -> TokenStream {
    let span = handler
        .event_param()
        .map_or_else(|| handler.ident().span(), Spanned::span);
    result_of(
        &def.root,
        &handler.method.sig,
        quote_spanned!(span=> &event),
    )
}

/// The awaited call of the method `sig` with `self` and `arguments`, its error boxed;
/// spanned at the method's return type, where an error type that does not convert into
/// `BoxError` is reported.
fn result_of(root: &syn::Path, sig: &syn::Signature, arguments: TokenStream) -> TokenStream {
    let span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => sig.ident.span(),
    };
    let root = respanned(root, span);
    let method = &sig.ident;
    quote_spanned!(span=> #root::__private::handler_result(Self::#method(self, #arguments).await))
}
