//! `#[derive(Observe)]` for memglass: publishes the layout of a `#[repr(C)]`
//! struct (field names, offsets from `offset_of!`, primitive types, atomicity)
//! so an observer in another process can read it.
//!
//! Field attributes: `#[observe(unit = "ns", help = "text", counter)]`
//! (`counter`, `gauge` or `discrete`; gauge by default), `#[observe(skip)]`
//! to leave a field unpublished.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

/// Implements `memglass::Observe` and `memglass::ObserveField` for a
/// `#[repr(C)]` struct with named fields whose types implement
/// `memglass::ObserveField` (primitives, atomics, arrays of primitives,
/// `FixedStr<N>`, `Seqlock<T>`, `Locked<T>`, other `Observe` structs).
#[proc_macro_derive(Observe, attributes(observe))]
pub fn derive_observe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "Observe: generic structs are not supported",
        ));
    }
    let mut repr_c = false;
    for a in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        a.parse_nested_meta(|m| {
            if m.path.is_ident("C") {
                repr_c = true;
            }
            Ok(())
        })?;
    }
    if !repr_c {
        return Err(syn::Error::new_spanned(
            name,
            "Observe needs #[repr(C)]: the layout must be fixed",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(name, "Observe: only structs"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(name, "Observe: only structs with named fields"));
    };
    let mut calls = Vec::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named");
        let ty = &f.ty;
        let mut unit = String::new();
        let mut help = String::new();
        let mut semantics = quote!(::memglass::Semantics::Gauge);
        let mut skip = false;
        for a in f.attrs.iter().filter(|a| a.path().is_ident("observe")) {
            a.parse_nested_meta(|m| {
                if m.path.is_ident("unit") {
                    unit = m.value()?.parse::<LitStr>()?.value();
                } else if m.path.is_ident("help") {
                    help = m.value()?.parse::<LitStr>()?.value();
                } else if m.path.is_ident("counter") {
                    semantics = quote!(::memglass::Semantics::Counter);
                } else if m.path.is_ident("gauge") {
                    semantics = quote!(::memglass::Semantics::Gauge);
                } else if m.path.is_ident("discrete") {
                    semantics = quote!(::memglass::Semantics::Discrete);
                } else if m.path.is_ident("skip") {
                    skip = true;
                } else {
                    return Err(m.error(
                        "expected unit = \"..\", help = \"..\", counter, gauge, discrete or skip",
                    ));
                }
                Ok(())
            })?;
        }
        if skip {
            continue;
        }
        let fname = ident.to_string();
        calls.push(quote! {
            <#ty as ::memglass::ObserveField>::describe_field(
                &::std::format!("{}{}", prefix, #fname),
                base + ::core::mem::offset_of!(#name, #ident) as u32,
                atomicity,
                guard,
                &::memglass::FieldMeta {
                    unit: ::std::string::String::from(#unit),
                    help: ::std::string::String::from(#help),
                    semantics: #semantics,
                },
                out,
            );
        });
    }
    let tname = name.to_string();
    Ok(quote! {
        // SAFETY: the fields are described from offset_of! and their own
        // ObserveField impls, so the description matches the layout.
        unsafe impl ::memglass::Observe for #name {
            const TYPE_NAME: &'static str = #tname;
            fn describe(
                prefix: &str,
                base: u32,
                atomicity: ::memglass::Atomicity,
                guard: u32,
                out: &mut ::std::vec::Vec<::memglass::FieldDesc>,
            ) {
                #(#calls)*
            }
        }
        // SAFETY: as above; a nested struct's fields sit at offset + theirs.
        unsafe impl ::memglass::ObserveField for #name {
            fn describe_field(
                path: &str,
                offset: u32,
                atomicity: ::memglass::Atomicity,
                guard: u32,
                _meta: &::memglass::FieldMeta,
                out: &mut ::std::vec::Vec<::memglass::FieldDesc>,
            ) {
                <#name as ::memglass::Observe>::describe(&::std::format!("{}.", path), offset, atomicity, guard, out)
            }
        }
    })
}
