//! Derives for dagform's typed resource kinds.
//!
//! `#[derive(Properties)]` on a kind's properties struct declares everything the engine and the
//! blueprint need from it once: the kind's name, which fields force a replacement, which are
//! secret, a field enum for typed change checks, and a `…Spec` struct the blueprint fills with
//! [`Input`]s (plain values or other nodes' outputs). `#[derive(Outputs)]` on a kind's outputs
//! struct gives typed references to them.
//!
//! ```ignore
//! #[derive(Debug, Clone, Serialize, Deserialize, Properties)]
//! #[kind(name = "aws_subnet", outputs = SubnetOutputs, check = SubnetProps::check)]
//! pub struct SubnetProps {
//!     pub name: String,
//!     #[kind(replace)]
//!     pub vpc_id: String,
//! }
//! ```
//!
//! [`Input`]: ../dagform_core/typed/struct.Input.html

use heck::ToUpperCamelCase;
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{
    Data, DeriveInput, Expr, Fields, GenericArgument, Ident, LitStr, Path, PathArguments, Type,
    parse_macro_input,
};

/// Struct-level options of `#[derive(Properties)]`.
#[derive(Default)]
struct KindOptions {
    name: Option<LitStr>,
    outputs: Option<Path>,
    check: Option<Expr>,
    nested: bool,
}

/// Field-level options.
#[derive(Default)]
struct FieldOptions {
    replace: bool,
    sensitive: bool,
}

struct Field {
    ident: Ident,
    ty: Type,
    /// `Option<T>` or `#[serde(default)]`: the blueprint may leave it out.
    optional: Option<Type>,
    options: FieldOptions,
}

fn kind_options(input: &DeriveInput) -> syn::Result<KindOptions> {
    let mut o = KindOptions::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("kind")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                o.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("outputs") {
                o.outputs = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("check") {
                o.check = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("nested") {
                o.nested = true;
            } else {
                return Err(meta.error("expected `name`, `outputs`, `check` or `nested`"));
            }
            Ok(())
        })?;
    }
    Ok(o)
}

fn has_serde_default(field: &syn::Field) -> bool {
    let mut found = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("default") {
                found = true;
            }
            if meta.input.peek(syn::Token![=]) {
                let _: Expr = meta.value()?.parse()?;
            }
            Ok(())
        });
    }
    found
}

/// `T` of an `Option<T>`.
fn option_inner(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

fn fields(input: &DeriveInput) -> syn::Result<Vec<Field>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(input, "expected a struct"));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new_spanned(input, "expected named fields"));
    };
    named
        .named
        .iter()
        .map(|f| {
            let mut options = FieldOptions::default();
            for attr in f.attrs.iter().filter(|a| a.path().is_ident("kind")) {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("replace") {
                        options.replace = true;
                    } else if meta.path.is_ident("sensitive") {
                        options.sensitive = true;
                    } else {
                        return Err(meta.error("expected `replace` or `sensitive`"));
                    }
                    Ok(())
                })?;
            }
            let optional =
                option_inner(&f.ty).or_else(|| has_serde_default(f).then(|| f.ty.clone()));
            Ok(Field {
                ident: f.ident.clone().expect("named field"),
                ty: f.ty.clone(),
                optional,
                options,
            })
        })
        .collect()
}

/// The name without a `Props` suffix: `SubnetProps` → `Subnet`.
fn stem(ident: &Ident) -> String {
    let name = ident.to_string();
    name.strip_suffix("Props").unwrap_or(&name).to_owned()
}

/// Property name as written in the graph: the field name, raw-identifier prefix removed.
fn property_name(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").unwrap_or(&s).to_owned()
}

fn spec(input: &DeriveInput, fields: &[Field]) -> (Ident, Tokens) {
    let vis = &input.vis;
    let props = &input.ident;
    let spec = format_ident!("{}Spec", stem(props));
    let doc = format!(
        "[`{props}`] as the blueprint gives it: each field a plain value or another node's output."
    );
    let decls = fields.iter().map(|f| {
        let ident = &f.ident;
        match &f.optional {
            Some(inner) => {
                quote! { pub #ident: ::core::option::Option<::dagform_core::typed::Input<#inner>> }
            }
            None => {
                let ty = &f.ty;
                quote! { pub #ident: ::dagform_core::typed::Input<#ty> }
            }
        }
    });
    let field_count = fields.len();
    let inserts = fields.iter().map(|f| {
        let ident = &f.ident;
        let key = property_name(ident);
        if f.optional.is_some() {
            quote! {
                if let ::core::option::Option::Some(v) = self.#ident {
                    map.insert(#key.to_owned(), v.into_value());
                }
            }
        } else {
            quote! { map.insert(#key.to_owned(), self.#ident.into_value()); }
        }
    });
    let tokens = quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #spec { #(#decls,)* }

        impl #spec {
            /// The properties as the graph holds them, by name.
            pub fn into_properties(self) -> ::dagform_core::ValueMap {
                let mut map = ::dagform_core::ValueMap::with_capacity(#field_count);
                #(#inserts)*
                map
            }
        }

        impl ::core::convert::From<#spec> for ::dagform_core::typed::Input<#props> {
            fn from(spec: #spec) -> Self {
                ::dagform_core::typed::Input::untyped(::dagform_core::Value::Map(spec.into_properties()).partially_resolve(&|_| None))
            }
        }
    };
    (spec, tokens)
}

/// `#[derive(Properties)]`: see the crate documentation.
#[proc_macro_derive(Properties, attributes(kind))]
pub fn derive_properties(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match properties(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn properties(input: &DeriveInput) -> syn::Result<Tokens> {
    let options = kind_options(input)?;
    let fields = fields(input)?;
    let (spec, spec_tokens) = spec(input, &fields);
    let props = &input.ident;
    let vis = &input.vis;
    let field_enum = format_ident!("{}Field", stem(props));
    let variants: Vec<Ident> = fields
        .iter()
        .map(|f| {
            Ident::new(
                &property_name(&f.ident).to_upper_camel_case(),
                f.ident.span(),
            )
        })
        .collect();
    let keys: Vec<String> = fields.iter().map(|f| property_name(&f.ident)).collect();
    let enum_doc =
        format!("The properties of [`{props}`], for typed change and replacement checks.");
    let field_tokens = quote! {
        #[doc = #enum_doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #vis enum #field_enum { #(#variants,)* }

        impl #field_enum {
            /// The property's name in the graph and the state.
            pub const fn as_str(self) -> &'static str {
                match self { #(Self::#variants => #keys,)* }
            }
        }

        impl ::dagform_core::typed::PropertyName for #field_enum {
            fn property(self) -> &'static str {
                self.as_str()
            }
        }

    };
    if options.nested {
        return Ok(quote! { #spec_tokens #field_tokens });
    }
    let name = options
        .name
        .ok_or_else(|| syn::Error::new(Span::call_site(), "missing #[kind(name = \"…\")]"))?;
    let outputs = options
        .outputs
        .ok_or_else(|| syn::Error::new(Span::call_site(), "missing #[kind(outputs = …)]"))?;
    let replace: Vec<&Ident> = fields
        .iter()
        .zip(&variants)
        .filter(|(f, _)| f.options.replace)
        .map(|(_, v)| v)
        .collect();
    let sensitive: Vec<&String> = fields
        .iter()
        .zip(&keys)
        .filter(|(f, _)| f.options.sensitive)
        .map(|(_, k)| k)
        .collect();
    let check = match options.check {
        Some(path) => quote! { #path(self) },
        None => quote! { ::core::result::Result::Ok(()) },
    };
    Ok(quote! {
        #spec_tokens
        #field_tokens

        impl ::dagform_core::typed::KindProperties for #props {
            const KIND: &'static str = #name;
            const FIELDS: &'static [&'static str] = &[#(#keys),*];
            const SENSITIVE: &'static [&'static str] = &[#(#sensitive),*];
            type Field = #field_enum;
            type Spec = #spec;
            type Outputs = #outputs;

            fn field(name: &str) -> ::core::option::Option<Self::Field> {
                match name {
                    #(#keys => ::core::option::Option::Some(#field_enum::#variants),)*
                    _ => ::core::option::Option::None,
                }
            }

            #[allow(unreachable_patterns)]
            fn forces_replacement(field: Self::Field) -> bool {
                match field {
                    #(#field_enum::#replace => true,)*
                    _ => false,
                }
            }

            fn check(&self) -> ::core::result::Result<(), ::dagform_core::ResourceError> {
                #check
            }
        }

        impl ::dagform_core::typed::Spec for #spec {
            type Props = #props;
            fn into_properties(self) -> ::dagform_core::ValueMap {
                #spec::into_properties(self)
            }
        }
    })
}

/// `#[derive(Outputs)]`: typed references to a kind's outputs, `…OutputRefs`, for the
/// blueprint. The struct must have an `id: String` field, the object's physical id.
#[proc_macro_derive(Outputs)]
pub fn derive_outputs(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match outputs(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn outputs(input: &DeriveInput) -> syn::Result<Tokens> {
    let fields = fields(input)?;
    if !fields.iter().any(|f| f.ident == "id") {
        return Err(syn::Error::new_spanned(
            input,
            "outputs need an `id: String` field",
        ));
    }
    let outputs = &input.ident;
    let vis = &input.vis;
    let refs = format_ident!("{}Refs", outputs);
    let doc = format!("References to the outputs of one node, as [`{outputs}`] types them.");
    let decls = fields.iter().map(|f| {
        let ident = &f.ident;
        let ty = f.optional.as_ref().unwrap_or(&f.ty);
        quote! { pub #ident: ::dagform_core::typed::OutputRef<#ty> }
    });
    let inits = fields.iter().map(|f| {
        let ident = &f.ident;
        let key = property_name(ident);
        quote! { #ident: ::dagform_core::typed::OutputRef::new(node.clone(), #key) }
    });
    Ok(quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #refs {
            /// The node these outputs belong to.
            pub node: ::dagform_core::Address,
            #(#decls,)*
        }

        impl ::dagform_core::typed::KindOutputs for #outputs {
            type Refs = #refs;

            fn refs(node: &::dagform_core::Address) -> #refs {
                #refs { node: node.clone(), #(#inits,)* }
            }

            fn id(&self) -> &str {
                &self.id
            }
        }
    })
}
