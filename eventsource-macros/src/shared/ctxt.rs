//! An error accumulator, so a user sees every mistake in one build.

use std::cell::RefCell;
use std::fmt::Display;

use quote::ToTokens;

/// Collects errors while parsing and validating.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Option<syn::Error>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `tokens`.
    pub fn error_spanned_by(&self, tokens: impl ToTokens, message: impl Display) {
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records a syn error.
    pub fn syn_error(&self, error: syn::Error) {
        let mut errors = self.errors.borrow_mut();
        match errors.as_mut() {
            Some(existing) => existing.combine(error),
            None => *errors = Some(error),
        }
    }

    /// Whether an error was recorded.
    pub fn has_errors(&self) -> bool {
        self.errors.borrow().is_some()
    }

    /// The combined errors, if any.
    pub fn check(self) -> Result<(), syn::Error> {
        match self.errors.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
