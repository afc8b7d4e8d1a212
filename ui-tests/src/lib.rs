//! Compile-fail and compile-pass cases for every macro live in `tests/ui`.
