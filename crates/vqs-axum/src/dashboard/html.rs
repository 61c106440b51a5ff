//! HTML building for the dashboard: every value that comes from a job, a payload, an error
//! or a request goes through [`esc`] — job params and error text are attacker-controlled.

use std::fmt::Write;

use chrono::{DateTime, Utc};

/// Escape text for an HTML element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escape a value for a URL path segment or query value, then for HTML.
pub fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// "12s ago" / "in 3m" relative to `now`, with the exact time as a tooltip.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let span = match n {
        0..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    let rel = if future { format!("in {span}") } else { format!("{span} ago") };
    let exact = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(r#"<time datetime="{exact}" title="{exact}">{rel}</time>"#)
}

/// At most `n` characters of `s`, with an ellipsis when cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n).collect::<String>() + "…" }
}

/// A coloured badge: `class` is one of the stylesheet's states.
pub fn badge(class: &str, text: &str) -> String {
    format!(r#"<span class="badge {}">{}</span>"#, esc(class), esc(text))
}

/// The page around `body`.
pub fn page(title: &str, header_right: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · vqs</title>
<link rel="icon" href="/admin/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/admin/assets/dashboard.css">
<script src="/admin/assets/dashboard.js" defer></script>
</head>
<body>
<header><a class="brand" href="/admin">vqs</a><span class="title">{title}</span><span class="right">{header_right}</span></header>
{body}
</body>
</html>
"#,
        title = esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url("a b/c?d=<e>"), "a%20b%2Fc%3Fd%3D%3Ce%3E");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
