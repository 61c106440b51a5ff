//! What a job or cron may be called, and the Rust names derived from it.

/// Rust keywords and prelude names a generated module or type must not take.
const RESERVED: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "yield", "try",
    "abstract", "become", "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "gen", "option",
    "result", "some", "none", "ok", "err", "vec", "string", "lib", "main", "tests", "handlers", "routes",
];

/// Check a kebab-case name (`send-invoice`): lowercase letters and digits in words joined
/// by single hyphens, starting with a letter, at most 48 characters.
pub fn check(kind: &str, name: &str) -> Result<(), String> {
    let example = if kind == "job" { "send-invoice" } else { "nightly-report" };
    let shape_ok = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !shape_ok {
        return Err(format!(
            "{name:?} is not a valid {kind} name: use kebab-case — lowercase letters and digits in words joined by single hyphens, starting with a letter, at most 48 characters (e.g. {example})"
        ));
    }
    if RESERVED.contains(&snake(name).as_str()) {
        return Err(format!(
            "{name:?} is reserved (a Rust keyword or a name the workspace uses): pick another {kind} name"
        ));
    }
    Ok(())
}

/// `send-invoice` → `send_invoice`.
pub fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// `send-invoice` → `SendInvoice`.
pub fn pascal(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        for ok in ["send-invoice", "a", "sync2-crm", "x-1"] {
            assert!(check("job", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Send", "send_invoice", "-a", "a-", "a--b", "1abc", "a b", "é", &"a".repeat(49)] {
            assert!(check("job", bad).unwrap_err().contains("kebab-case"), "{bad}");
        }
        assert!(check("job", "type").unwrap_err().contains("reserved"));
        assert!(check("cron", "self").unwrap_err().contains("reserved"));
        assert_eq!((snake("send-invoice"), pascal("send-invoice")), ("send_invoice".into(), "SendInvoice".into()));
        assert_eq!(pascal("sync2-crm"), "Sync2Crm");
    }
}
