//! Attribute values shared by the macros, and the root of generated paths.

use syn::meta::ParseNestedMeta;

use super::ctxt::Ctxt;

/// The default root of generated paths.
pub fn default_root() -> syn::Path {
    syn::parse_quote!(::eventsource)
}

/// Parses the arguments of `#[attr(...)]`: `crate = "path"` into `root`, every other key
/// by `each`, which returns `Ok(false)` for a key it does not know. An unknown key is an
/// error that lists `expected` ("`name` or `crate`").
pub fn parse_attr_args(
    ctxt: &Ctxt,
    args: proc_macro2::TokenStream,
    attr: &str,
    expected: &str,
    root: &mut Option<syn::Path>,
    mut each: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<bool>,
) {
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            if let Some(path) = parse_crate(ctxt, &meta)? {
                set_once(ctxt, root, path, &meta, attr);
            }
        } else if !each(&meta)? {
            return Err(meta.error(format_args!(
                "unknown `{attr}` attribute `{}`; expected {expected}",
                key_name(&meta)
            )));
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        ctxt.syn_error(error);
    }
}

/// Parses `crate = "path"`. `Ok(None)`: the value was read but is wrong, and the error
/// is in `ctxt`; `Err`: the tokens cannot be read further.
pub fn parse_crate(ctxt: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<syn::Path>> {
    let Some(lit) = parse_str(ctxt, meta, "crate", "::eventsource")? else {
        return Ok(None);
    };
    match lit.parse::<syn::Path>() {
        Ok(path) => Ok(Some(path)),
        Err(_) => {
            ctxt.error_spanned_by(
                &lit,
                "`crate` must be a path, such as `crate = \"::eventsource\"`",
            );
            Ok(None)
        }
    }
}

/// Parses `key = "string"`; anything else after `=` is an error that shows `example`.
pub fn parse_str(
    ctxt: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: &str,
    example: &str,
) -> syn::Result<Option<syn::LitStr>> {
    match meta.value()?.parse::<syn::Expr>()? {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => Ok(Some(lit)),
        other => {
            ctxt.error_spanned_by(
                other,
                format_args!("`{key}` takes a string in quotes, such as `{key} = \"{example}\"`"),
            );
            Ok(None)
        }
    }
}

/// Parses `name = "..."`, a stored name: non-empty and without whitespace. `what` is
/// what it names ("an aggregate"), `example` a good value.
pub fn parse_name(
    ctxt: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    what: &str,
    example: &str,
) -> syn::Result<Option<String>> {
    let Some(lit) = parse_str(ctxt, meta, "name", example)? else {
        return Ok(None);
    };
    if !is_valid_stored_name(&lit.value()) {
        ctxt.error_spanned_by(
            &lit,
            format_args!("{what} `name` must be non-empty and without whitespace, such as `name = \"{example}\"`"),
        );
    }
    Ok(Some(lit.value()))
}

/// Parses `key = 2` into a `u32` of at least 1.
pub fn parse_positive_u32(
    ctxt: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: &str,
    what: &str,
) -> syn::Result<Option<u32>> {
    let expr = meta.value()?.parse::<syn::Expr>()?;
    let parsed = match &expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(lit),
            ..
        }) => lit.base10_parse::<u32>().ok().filter(|v| *v >= 1),
        _ => None,
    };
    if parsed.is_none() {
        ctxt.error_spanned_by(
            expr,
            format_args!("`{key}` is {what}: a whole number from 1, such as `{key} = 2`"),
        );
    }
    Ok(parsed)
}

/// Whether a stored name is usable: non-empty and without whitespace.
pub fn is_valid_stored_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace)
}

/// Records `value` into `slot`, refusing a key given twice.
pub fn set_once<T>(
    ctxt: &Ctxt,
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    attr: &str,
) {
    if slot.is_some() {
        let key = meta
            .path
            .get_ident()
            .map_or_else(String::new, ToString::to_string);
        ctxt.error_spanned_by(
            &meta.path,
            format_args!("`{key}` is given twice in `#[{attr}(...)]`; keep one"),
        );
    } else {
        *slot = Some(value);
    }
}

/// The name of an unknown key, for the error that lists the expected ones.
pub fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    quote::ToTokens::to_token_stream(&meta.path)
        .to_string()
        .replace(' ', "")
}
