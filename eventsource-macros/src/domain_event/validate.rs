//! Checks on the whole [`EventDef`]: what is required, what a name may be.

use super::parse::EventDef;
use crate::shared::ctxt::Ctxt;
use crate::shared::runtime::is_valid_stored_name;

pub fn check(ctxt: &Ctxt, def: &EventDef<'_>) {
    let generics = &def.input.generics;
    if !generics.params.is_empty() {
        ctxt.error_spanned_by(
            generics,
            "generic events are not supported: an event's stored name must name one type; make the event concrete",
        );
    }
    if let Some(name) = &def.name
        && !is_valid_stored_name(&name.value())
    {
        ctxt.error_spanned_by(
            name,
            "an event `name` must be non-empty and without whitespace, such as `name = \"order.shipped\"`",
        );
    }
    match &def.aggregate {
        Some(aggregate) if !is_valid_stored_name(&aggregate.value()) => ctxt.error_spanned_by(
            aggregate,
            "`aggregate` names the aggregate that owns the event, non-empty and without whitespace, such as `aggregate = \"Order\"`",
        ),
        Some(_) => {}
        None if def.aggregate_written => {}
        None => ctxt.error_spanned_by(
            def.ident(),
            format_args!(
                "`{}` needs the aggregate that owns it: add `#[event(aggregate = \"...\")]` naming that aggregate, such as `#[event(aggregate = \"Order\")]`",
                def.ident()
            ),
        ),
    }
}
