//! Compile-time tests of `#[process]`: every misuse fails with our message, spanned at the
//! offending token, and every supported shape compiles.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p pm-macros --test ui`,
//! then read every `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
