//! The expansion names everything by absolute path: a module without the prelude, and user
//! items shadowing `Result`, `Option`, `String`, `Vec`, `Box`, `Clone`, `core` and `std`, do not
//! change its meaning.

mod service {
    #![no_implicit_prelude]

    use ::pm_runtime::process;

    #[allow(dead_code)]
    pub type Result<T> = ::std::result::Result<T, ()>;
    #[allow(dead_code)]
    pub struct Option;
    #[allow(dead_code)]
    pub struct Some;
    #[allow(dead_code)]
    pub struct None;
    #[allow(dead_code)]
    pub struct Ok;
    #[allow(dead_code)]
    pub struct Err;
    #[allow(dead_code)]
    pub struct String;
    #[allow(dead_code)]
    pub struct Vec;
    #[allow(dead_code)]
    pub struct Box;
    #[allow(dead_code)]
    pub trait Clone {}
    #[allow(dead_code)]
    pub trait Default {}
    #[allow(dead_code)]
    pub trait Send {}
    #[allow(dead_code)]
    pub mod core {}
    #[allow(dead_code)]
    pub mod std {}
    #[allow(dead_code)]
    pub mod pm_runtime {}

    #[derive(::core::default::Default)]
    pub struct Hygienic {
        count: u64,
    }

    #[process(name = "hygienic", version = "1.0.0")]
    impl Hygienic {
        #[public(idempotent)]
        pub async fn add(&self, a: i64, b: i64) -> i64 {
            a + b
        }

        #[public]
        pub async fn greet(&self, name: ::std::string::String) -> ::std::string::String {
            ::std::format!("hello {name}")
        }

        #[public]
        pub async fn parse(
            &self,
            text: ::std::string::String,
        ) -> ::std::result::Result<i64, ::std::string::String> {
            match text.parse::<i64>() {
                ::std::result::Result::Ok(n) => ::std::result::Result::Ok(n),
                ::std::result::Result::Err(e) => {
                    ::std::result::Result::Err(::std::string::ToString::to_string(&e))
                }
            }
        }

        /// A user `Result` alias with one parameter is a plain value, not `Result<T, E>`.
        #[public]
        pub async fn alias(&self) -> Result<u8> {
            ::std::result::Result::Ok(1)
        }

        #[public]
        pub async fn bump(&mut self, __pm_cell: u64, __caller: u64) -> u64 {
            self.count += __pm_cell + __caller;
            self.count
        }

        #[health_check]
        pub async fn health(&self) -> ::pm_runtime::HealthStatus {
            ::pm_runtime::HealthStatus::healthy()
        }

        #[on_shutdown]
        pub async fn stop(&self) {}
    }

    pub async fn use_it(c: &HygienicClient) {
        let _: ::std::result::Result<i64, ::pm_runtime::Error> = c.add(1, 2).await;
        let _: ::std::result::Result<::std::string::String, ::pm_runtime::Error> =
            c.greet(::std::string::String::new()).await;
        let _: ::std::result::Result<i64, ::pm_runtime::Error> =
            c.parse(::std::string::String::new()).await;
        let _: ::std::result::Result<Result<u8>, ::pm_runtime::Error> = c.alias().await;
        let _: ::std::result::Result<u64, ::pm_runtime::Error> = c.bump(1, 2).await;
    }
}

fn main() {
    let _ = service::use_it;
    assert_eq!(<service::Hygienic as pm_runtime::Process>::NAME, "hygienic");
}
