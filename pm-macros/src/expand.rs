//! Expansion: the client stub and the `Process` impl (dispatch table, init, hooks).
//!
//! Generated code is thin: each method becomes a few lines that call helpers in
//! `pm_runtime::__private`, and every path is fully qualified so a user's own `Result`,
//! `Option` or `#![no_implicit_prelude]` cannot change its meaning.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::{ImplItem, ItemImpl};

use crate::ctxt::{to_compile_errors, Ctxt};
use crate::parse;
use crate::validate::{self, Access, Hook, Plan, Public, Returns};

/// The whole attribute: parse, validate, expand. On errors, the block is still emitted
/// (without our helper attributes) so the user sees only our errors.
pub(crate) fn process(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed: syn::Item = match syn::parse2(item.clone()) {
        Ok(parsed) => parsed,
        Err(err) => {
            let err = to_compile_errors(err);
            return quote!(#err #item);
        }
    };
    let syn::Item::Impl(item_impl) = &parsed else {
        let (span, what) = parse::wrong_item(&parsed);
        let parsed = strip_from_trait(parsed.clone());
        let err = to_compile_errors(syn::Error::new(
            span,
            format!(
                "#[process] goes on an inherent impl block (`impl MyType {{ ... }}`), not on {what}"
            ),
        ));
        return quote!(#err #parsed);
    };
    let cx = Ctxt::default();
    let args = parse::parse_args(&cx, args);
    let krate: syn::Path = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::pm_runtime));
    let model = parse::parse_model(&cx, item_impl);
    let plan = validate::validate(&cx, args, &model);
    let stripped = strip_helper_attributes(item_impl);
    match (cx.finish(), plan) {
        (Ok(()), Some(plan)) => {
            let generated = generate(&plan);
            quote!(#stripped #generated)
        }
        (Err(err), _) => {
            let err = to_compile_errors(err);
            let fallback = generate_fallback(&krate, &item_impl.self_ty);
            quote!(#stripped #err #fallback)
        }
        (Ok(()), None) => stripped.into_token_stream(),
    }
}

/// What an erroneous block still gets besides its errors, as thiserror does: the client type
/// and a `Process` impl that does nothing, so that code naming them (`CalculatorClient`,
/// `ProcessHandle<Calculator>`, `pm.spawn::<Calculator>`) adds no errors of its own to the one
/// real error. Never run: the crate does not compile. Nothing for a type without a plain name
/// (that is the error then).
fn generate_fallback(krate: &syn::Path, self_ty: &syn::Type) -> TokenStream {
    let Some(client) = validate::client_ident(&Ctxt::default(), self_ty, false) else {
        return TokenStream::new();
    };
    let p = quote!(#krate::__private);
    let shell = client_shell(&p, &client, &TokenStream::new());
    quote! {
        #shell

        impl #p::Process for #self_ty {
            type Client = #client;
            const NAME: &'static str = "";
            const VERSION: &'static str = "";
            const METHODS: &'static [#p::MethodInfo] = &[];

            fn __init(
                _: #p::RawBytes,
            ) -> #p::BoxFuture<'static, ::core::result::Result<Self, ::std::string::String>> {
                #p::boxed(async {
                    ::core::result::Result::Err(::std::string::String::new())
                })
            }

            fn __dispatch(
                _: &#p::ProcessCell<Self>,
                _: &str,
                _: #p::RawBytes,
                _: #p::ReplyTo,
            ) -> ::core::option::Option<#p::BoxFuture<'static, #p::DispatchResult>> {
                ::core::option::Option::None
            }
        }
    }
}

/// Our helper attributes left in a trait would add "cannot find attribute" errors to ours.
fn strip_from_trait(mut item: syn::Item) -> syn::Item {
    if let syn::Item::Trait(item_trait) = &mut item {
        for trait_item in &mut item_trait.items {
            if let syn::TraitItem::Fn(func) = trait_item {
                func.attrs.retain(|attr| !parse::is_ours(attr));
            }
        }
    }
    item
}

fn strip_helper_attributes(item: &ItemImpl) -> ItemImpl {
    let mut item = item.clone();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(func) = impl_item {
            func.attrs.retain(|attr| !parse::is_ours(attr));
        }
    }
    item
}

/// An identifier of the generated code's own locals, invisible to user code.
fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

fn type_string(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string()
}

fn generate(plan: &Plan<'_>) -> TokenStream {
    let client = generate_client(plan);
    let process = generate_process_impl(plan);
    quote!(#client #process)
}

fn generate_client(plan: &Plan<'_>) -> TokenStream {
    let krate = &plan.krate;
    let p = quote!(#krate::__private);
    let client = &plan.client;
    let caller = local("__caller");
    let name = plan.name.value();
    let version = plan
        .version
        .as_ref()
        .map_or_else(|| "of its crate".to_owned(), syn::LitStr::value);
    let self_name = plan.self_ty.to_token_stream().to_string();
    let doc = format!(
        "Typed client of the `{name}` process (version {version}), generated by `#[process]` \
         on [`{self_name}`].\n\nEach method sends one call to the process and returns \
         `Result<T, pm_runtime::Error>`. Cloning is cheap and clones share the connection. \
         Obtain one from `ProcessManager::spawn`, whose handle dereferences to it."
    );
    let methods = plan.publics.iter().map(|public| {
        let func = public.func;
        let vis = &func.vis;
        let ident = &func.sig.ident;
        let method_name = ident.to_string();
        let docs: Vec<_> = func
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
            .collect();
        let fallback_doc = docs.is_empty().then(|| {
            let text = format!("Calls `{method_name}` in the process.");
            quote!(#[doc = #text])
        });
        let names: Vec<_> = public.args.iter().map(|arg| &arg.name).collect();
        let types: Vec<_> = public.args.iter().map(|arg| arg.ty).collect();
        let ok_ty = match &public.returns {
            Returns::Unit => quote!(()),
            Returns::Value(ty) => quote!(#ty),
            Returns::Result { ok } => quote!(#ok),
        };
        quote! {
            #(#docs)*
            #fallback_doc
            #vis async fn #ident(&self #(, #names: #types)*)
                -> ::core::result::Result<#ok_ty, #krate::Error>
            {
                #p::Caller::call::<_, #ok_ty>(&self.#caller, #method_name, &(#(#names,)*)).await
            }
        }
    });
    let shell = client_shell(&p, client, &quote!(#[doc = #doc]));
    quote! {
        #shell

        impl #client {
            #(#methods)*
        }
    }
}

/// The client type itself: the struct holding its caller, `Debug`, and `ClientStub`.
fn client_shell(p: &TokenStream, client: &syn::Ident, attrs: &TokenStream) -> TokenStream {
    let caller = local("__caller");
    quote! {
        #attrs
        #[derive(::core::clone::Clone)]
        pub struct #client {
            #caller: #p::Caller,
        }

        impl ::core::fmt::Debug for #client {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::stringify!(#client))
            }
        }

        impl #p::ClientStub for #client {
            fn __from_caller(caller: #p::Caller) -> Self {
                Self { #caller: caller }
            }

            fn __caller(&self) -> &#p::Caller {
                &self.#caller
            }
        }
    }
}

fn receiver_path(access: Access) -> &'static str {
    match access {
        Access::Shared => "Shared",
        Access::Exclusive => "Exclusive",
    }
}

/// Binds `__pm_this` to the instance under the lock the access needs.
fn lock_instance(p: &TokenStream, access: Access) -> TokenStream {
    let cell = local("__pm_cell");
    let this = local("__pm_this");
    match access {
        Access::Shared => quote!(let #this = #p::shared(#cell).await;),
        Access::Exclusive => quote!(let mut #this = #p::exclusive(#cell).await;),
    }
}

fn generate_process_impl(plan: &Plan<'_>) -> TokenStream {
    let krate = &plan.krate;
    let p = quote!(#krate::__private);
    let self_ty = plan.self_ty;
    let client = &plan.client;
    let name = &plan.name;
    // Without `version = "..."`, the version of the crate the process is defined in.
    let version = match &plan.version {
        Some(version) => quote!(#version),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let cell = local("__pm_cell");
    let this = local("__pm_this");
    let args = local("__pm_args");
    let reply = local("__pm_reply");
    let method = local("__pm_method");
    let deps = local("__pm_deps");

    let method_infos = plan.publics.iter().map(|public| {
        let method_name = public.func.sig.ident.to_string();
        let arg_types = public.args.iter().map(|arg| type_string(arg.ty));
        let ret = match &public.returns {
            Returns::Unit => "()".to_owned(),
            Returns::Value(ty) => type_string(ty),
            Returns::Result { .. } => match &public.func.sig.output {
                syn::ReturnType::Type(_, ty) => type_string(ty),
                syn::ReturnType::Default => "()".to_owned(),
            },
        };
        let receiver = format_ident!("{}", receiver_path(public.access));
        // A `bool` expands to the literal `true` or `false`, which no user item can shadow.
        let idempotent = public.idempotent;
        quote! {
            #p::MethodInfo {
                name: #method_name,
                args: &[#(#arg_types),*],
                ret: #ret,
                receiver: #p::Receiver::#receiver,
                idempotent: #idempotent,
            }
        }
    });

    let schema_types = plan.publics.iter().map(|public| {
        let method_name = public.func.sig.ident.to_string();
        let args = public.args.iter().map(|arg| {
            let ty = arg.ty;
            let spelled = type_string(ty);
            quote!((#spelled, #p::trace::<#ty>))
        });
        let ret = match &public.returns {
            Returns::Unit => quote!(("()", #p::trace::<()>)),
            Returns::Value(ty) | Returns::Result { ok: ty } => {
                let spelled = type_string(ty);
                quote!((#spelled, #p::trace::<#ty>))
            }
        };
        quote! {
            #p::MethodTypes {
                name: #method_name,
                args: &[#(#args),*],
                ret: #ret,
            }
        }
    });

    let arms = plan.publics.iter().map(|public| dispatch_arm(&p, public));

    let init = generate_init(plan, &p, &deps);
    let health = plan.health.as_ref().map(|hook| {
        let ident = &hook.func.sig.ident;
        let lock = lock_instance(&p, hook.access);
        quote! {
            fn __health(#cell: &#p::ProcessCell<Self>) -> #p::BoxFuture<'static, #p::HealthStatus> {
                let #cell = ::core::clone::Clone::clone(#cell);
                #p::boxed(async move {
                    #lock
                    #this.#ident().await
                })
            }
        }
    });
    let shutdown = (!plan.shutdown.is_empty()).then(|| {
        let hooks = plan.shutdown.iter().map(|hook: &Hook<'_>| {
            let ident = &hook.func.sig.ident;
            let lock = lock_instance(&p, hook.access);
            quote! {
                {
                    let #cell = ::core::clone::Clone::clone(#cell);
                    #p::boxed(async move {
                        #lock
                        #this.#ident().await;
                    })
                }
            }
        });
        quote! {
            fn __shutdown(#cell: &#p::ProcessCell<Self>) -> ::std::vec::Vec<#p::BoxFuture<'static, ()>> {
                ::core::convert::From::from([#(#hooks),*])
            }
        }
    });

    quote! {
        impl #p::Process for #self_ty {
            type Client = #client;
            const NAME: &'static str = #name;
            const VERSION: &'static str = #version;
            const METHODS: &'static [#p::MethodInfo] = &[#(#method_infos),*];
            const SCHEMA_TYPES: &'static [#p::MethodTypes] = &[#(#schema_types),*];

            #init

            fn __dispatch(
                #cell: &#p::ProcessCell<Self>,
                #method: &str,
                #args: #p::RawBytes,
                #reply: #p::ReplyTo,
            ) -> ::core::option::Option<#p::BoxFuture<'static, #p::DispatchResult>> {
                let _ = (&#cell, &#args, &#reply);
                match #method {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                }
            }

            #health
            #shutdown
        }
    }
}

fn dispatch_arm(p: &TokenStream, public: &Public<'_>) -> TokenStream {
    let cell = local("__pm_cell");
    let this = local("__pm_this");
    let args = local("__pm_args");
    let reply = local("__pm_reply");
    let out = local("__pm_out");
    let ident = &public.func.sig.ident;
    let method_name = ident.to_string();
    let types: Vec<_> = public.args.iter().map(|arg| arg.ty).collect();
    let indices = (0..public.args.len()).map(syn::Index::from);
    let lock = lock_instance(p, public.access);
    let encode = match public.returns {
        Returns::Result { .. } => quote!(#p::reply_result(#reply, #out)),
        _ => quote!(#p::reply_value(#reply, &#out)),
    };
    quote! {
        #method_name => {
            let #cell = ::core::clone::Clone::clone(#cell);
            ::core::option::Option::Some(#p::boxed(async move {
                let #args: (#(#types,)*) = #p::decode_args(&#args, #method_name)?;
                #lock
                let #out = #this.#ident(#(#args.#indices),*).await;
                #encode
            }))
        }
    }
}

fn generate_init(plan: &Plan<'_>, p: &TokenStream, deps: &syn::Ident) -> TokenStream {
    let name = &plan.name;
    let self_ty = plan.self_ty;
    let config = local("__pm_config");
    let body = match &plan.init {
        // Named by the user's type tokens (not `Self`) so that a missing `Default` is reported
        // once, at the type, by the `DefaultUnlessInit` assertion below: rustc drops the
        // identical `init_default` obligation at the same span in the same body.
        None => quote! {
            #p::boxed(async move { #p::init_default::<#self_ty>(&#deps, #name) })
        },
        Some(init) => {
            let ident = &init.func.sig.ident;
            let (decode, call) = match init.config {
                Some(ty) => (
                    quote!(let #config: #ty = #p::decode_dependencies(&#deps, #name)?;),
                    quote!(<#self_ty>::#ident(#config).await),
                ),
                None => (
                    quote!(#p::decode_dependencies::<()>(&#deps, #name)?;),
                    quote!(<#self_ty>::#ident().await),
                ),
            };
            let finish = if init.fallible {
                quote!(::core::result::Result::map_err(#call, #p::init_error))
            } else {
                quote!(::core::result::Result::Ok(#call))
            };
            quote! {
                #p::boxed(async move {
                    #decode
                    #finish
                })
            }
        }
    };
    // Must stay in `__init`'s own body, before `init_default`, for the deduplication above;
    // it reports our `on_unimplemented` message rather than a bare "`Default` is not
    // implemented".
    let assert_default = plan.init.is_none().then(|| {
        let requires = local("__pm_requires_default");
        quote! {
            fn #requires<T: #p::DefaultUnlessInit>() {}
            #requires::<#self_ty>();
        }
    });
    quote! {
        fn __init(#deps: #p::RawBytes)
            -> #p::BoxFuture<'static, ::core::result::Result<Self, ::std::string::String>>
        {
            #assert_default
            #body
        }
    }
}
