//! Procedural macros for `eventsource`. Use them through the `eventsource` crate.
use proc_macro::TokenStream;

/// Placeholder while the macro pipeline is written.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

/// Placeholder while the macro pipeline is written.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    let _ = args;
    input
}

/// Placeholder while the macro pipeline is written.
#[proc_macro_attribute]
pub fn handles(args: TokenStream, input: TokenStream) -> TokenStream {
    let _ = args;
    input
}
