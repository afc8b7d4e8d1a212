//! Paths into the runtime crate, honouring `crate = "..."`.

use syn::meta::ParseNestedMeta;

/// The default root of generated paths.
pub fn default_root() -> syn::Path {
    syn::parse_quote!(::eventsource)
}

/// Parses `crate = "path"`.
pub fn parse_crate(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            "`crate` must be a path, such as `crate = \"::eventsource\"`",
        )
    })
}

/// Parses `key = "string"`.
pub fn parse_str(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::LitStr> {
    meta.value()?.parse()
}

/// Records `value` into `slot`, refusing a key given twice.
pub fn set_once<T>(
    ctxt: &super::ctxt::Ctxt,
    slot: &mut Option<T>,
    value: T,
    key: &str,
    attr: &str,
    span: proc_macro2::Span,
) {
    if slot.is_some() {
        ctxt.error_at(
            span,
            format!("`{key}` is given twice in `#[{attr}(...)]`; keep one"),
        );
    } else {
        *slot = Some(value);
    }
}
