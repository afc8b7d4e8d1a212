//! Compile-pass and compile-fail cases for every macro. Refresh the expected output with
//! `TRYBUILD=overwrite cargo test -p eventsource-ui-tests`, then read the `.stderr` diff.
#![allow(missing_docs)]

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    for dir in [
        "domain_event",
        "aggregate",
        "projection",
        "handles",
        "given_when_then",
    ] {
        t.pass(format!("tests/ui/{dir}/pass/*.rs"));
        t.compile_fail(format!("tests/ui/{dir}/fail/*.rs"));
    }
}
