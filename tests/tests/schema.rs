//! The handshake's schema check compares the *structure* of every method's types: clients
//! built from other source than the `test-shapes` binary, each differing in one respect, are
//! accepted when only the spelling differs and refused, naming the method and the type, when
//! the structure differs.
// The client types stand in for another build's source; they need no docs.
#![allow(missing_docs, unreachable_pub)]

use pm_runtime::prelude::*;
use pm_runtime::Error;

const SHAPES: &str = env!("CARGO_BIN_EXE_test-shapes");

/// A client of `shapes` 1.0.0 over the types of module `$types`.
macro_rules! shapes_client {
    ($client:ident, $types:ident) => {
        #[derive(Default)]
        pub struct $client;

        #[process(name = "shapes", version = "1.0.0")]
        impl $client {
            #[public]
            pub async fn width(&self, rect: $types::Rect) -> i64 {
                let _ = rect;
                0
            }
            #[public]
            pub async fn place_order(&self, order: $types::Order) -> u32 {
                let _ = order;
                0
            }
            #[public]
            pub async fn classify(&self, kind: $types::Kind) -> String {
                let _ = kind;
                String::new()
            }
            #[public]
            pub async fn count(&self, n: $types::Count) -> $types::Count {
                n
            }
            #[public]
            pub async fn plant(&self, outer: $types::Outer) -> u64 {
                let _ = outer;
                0
            }
            #[public]
            pub async fn checksum(&self, bytes: $types::Bytes) -> u64 {
                let _ = bytes;
                0
            }
        }
    };
}

/// The process's own types, spelled otherwise: paths and aliases instead of `i32` and
/// `Vec<u8>`.
mod respelled {
    pub use pm_tests::shapes::{Kind, Order, Outer, Rect};
    pub type Count = core::primitive::i32;
    pub type Bytes = ::std::vec::Vec<::core::primitive::u8>;
}

mod added_field {
    pub use super::respelled::*;
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Order {
        pub item: String,
        pub quantity: u32,
        pub note: String,
    }
}

mod swapped_fields {
    pub use super::respelled::*;
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Rect {
        pub h: i64,
        pub w: i64,
    }
}

mod renamed_variant {
    pub use super::respelled::*;
    #[derive(serde::Serialize, serde::Deserialize)]
    pub enum Kind {
        Small,
        Huge,
    }
}

mod wider_primitive {
    pub use super::respelled::*;
    pub type Count = i64;
}

mod changed_deep_down {
    pub use super::respelled::*;
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Outer {
        pub middle: Middle,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Middle {
        pub leaves: Vec<Leaf>,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    pub enum Leaf {
        Small(i64),
        Big,
    }
}

shapes_client!(Respelled, respelled);
shapes_client!(AddedField, added_field);
shapes_client!(SwappedFields, swapped_fields);
shapes_client!(RenamedVariant, renamed_variant);
shapes_client!(WiderPrimitive, wider_primitive);
shapes_client!(ChangedDeepDown, changed_deep_down);

fn manager() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    })
}

/// Spawns `test-shapes` with client `P` and returns the difference the refusal names.
async fn refusal<P: pm_runtime::Process>() -> String {
    let pm = manager();
    let err = pm
        .spawn::<P>(SHAPES, SpawnOptions::default())
        .await
        .expect_err("a client of another structure is refused");
    assert!(
        pm.list().is_empty(),
        "a refused spawn leaves nothing behind"
    );
    let Error::VersionMismatch {
        expected,
        found,
        difference,
    } = &err
    else {
        panic!("expected a version mismatch, got {err:?}");
    };
    assert_eq!(
        (expected.version.as_str(), found.version.as_str()),
        ("1.0.0", "1.0.0")
    );
    assert_ne!(expected.fingerprint, found.fingerprint);
    let difference = difference
        .as_deref()
        .expect("the refusal says what differs")
        .to_owned();
    assert!(err.to_string().contains(&difference), "{err}");
    pm.shutdown().await.expect("shutdown");
    difference
}

#[tokio::test]
async fn a_client_whose_types_are_only_spelled_differently_is_accepted_and_calls_work() {
    let pm = manager();
    let shapes = pm
        .spawn::<Respelled>(SHAPES, SpawnOptions::default())
        .await
        .expect("the same structure is accepted");
    let rect = pm_tests::shapes::Rect { w: 4, h: 3 };
    assert_eq!(shapes.width(rect).await.expect("width"), 4);
    assert_eq!(shapes.count(41).await.expect("count"), 42);
    assert_eq!(shapes.checksum(vec![1, 2, 3]).await.expect("checksum"), 6);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_added_struct_field_is_refused_naming_the_method_and_the_field() {
    assert_eq!(
        refusal::<AddedField>().await,
        "method `place_order`: argument 1 (Order): field 3 is `absent` in the process, \
         `note: String` in the client"
    );
}

#[tokio::test]
async fn two_swapped_fields_of_the_same_type_are_refused() {
    // Without the check, `width(Rect { h: 3, w: 4 })` would answer 3.
    assert_eq!(
        refusal::<SwappedFields>().await,
        "method `width`: argument 1 (Rect): field 1 is `w: i64` in the process, `h: i64` in \
         the client"
    );
}

#[tokio::test]
async fn a_renamed_enum_variant_is_refused() {
    assert_eq!(
        refusal::<RenamedVariant>().await,
        "method `classify`: argument 1 (Kind): variant 2 is `Large` in the process, `Huge` in \
         the client"
    );
}

#[tokio::test]
async fn a_primitive_changed_from_i32_to_i64_is_refused() {
    assert_eq!(
        refusal::<WiderPrimitive>().await,
        "method `count`: argument 1 (i32): it is `i32` in the process, `i64` in the client"
    );
}

#[tokio::test]
async fn a_type_changed_three_levels_down_is_refused_with_the_path_to_it() {
    assert_eq!(
        refusal::<ChangedDeepDown>().await,
        "method `plant`: argument 1 (Outer): field 1 (`middle: Middle`): field 1 \
         (`leaves: Vec<Leaf>`): in `Vec<Leaf>`: variant 1 (`Small`): it is `i32` in the \
         process, `i64` in the client"
    );
}
