//! `#[multus_e2e::test]`, the attribute every end-to-end test carries. It decides two things
//! once for all of them: an `async` test runs on a multi-threaded tokio runtime with two
//! workers (a plain one gets libtest's `#[test]`), and its body first takes a test slot
//! (`multus_e2e::test_slot!`), so no test can start operators or agents beyond the bound
//! that `MULTUS_E2E_PARALLEL` sets.
//!
//! Written on the compiler's own token API: the attribute only looks for `async` before
//! `fn` and puts one statement at the top of the body, so it needs no parser crate.

#![forbid(unsafe_code)]

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// The runtime of an `async` end-to-end test.
const ASYNC_RUNNER: &str = r#"#[::tokio::test(flavor = "multi_thread", worker_threads = 2)]"#;
/// The runner of a plain one.
const PLAIN_RUNNER: &str = "#[::core::prelude::v1::test]";
/// The first statement of every test body: the slot is held until the test returns.
const TAKE_SLOT: &str = "let _slot = ::multus_e2e::test_slot!();";

/// Marks an end-to-end test: see the crate documentation.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item).unwrap_or_else(|message| {
        format!("::core::compile_error!({message:?});")
            .parse()
            .unwrap_or_default()
    })
}

fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, String> {
    if !args.is_empty() {
        return Err("#[multus_e2e::test] takes no arguments".into());
    }
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    // Attributes are `#` and a bracketed group, so the idents seen here are the
    // signature's own.
    let Some(fn_at) = tokens.iter().position(|t| is_ident(t, "fn")) else {
        return Err("#[multus_e2e::test] goes on a test function".into());
    };
    let is_async = tokens[..fn_at].iter().any(|t| is_ident(t, "async"));
    let body = match tokens.pop() {
        Some(TokenTree::Group(body)) if body.delimiter() == Delimiter::Brace => body,
        _ => return Err("#[multus_e2e::test] needs a function with a body".into()),
    };
    let mut statements = parse(TAKE_SLOT)?;
    statements.extend(body.stream());
    let mut with_slot = Group::new(Delimiter::Brace, statements);
    with_slot.set_span(body.span());
    tokens.push(TokenTree::Group(with_slot));

    let mut out = parse(if is_async { ASYNC_RUNNER } else { PLAIN_RUNNER })?;
    out.extend(tokens);
    Ok(out)
}

fn is_ident(token: &TokenTree, name: &str) -> bool {
    matches!(token, TokenTree::Ident(ident) if ident.to_string() == name)
}

fn parse(code: &str) -> Result<TokenStream, String> {
    code.parse()
        .map_err(|e| format!("#[multus_e2e::test] could not expand `{code}`: {e}"))
}
