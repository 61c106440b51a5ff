//! Vercel's cron dialect, as a validator with reasons. Std-only on purpose: `xtask`
//! includes this file by path (it depends on no workspace crate), so the scheduler, the CLI
//! and the scaffolding share one validator.
//!
//! Accepted exactly as the Vercel CLI's `validateCronSchedule` (`vercel` 64, `crons add`)
//! accepts: at most 256 characters (UTF-16 units); exactly five fields split on white space
//! — minute 0–59, hour 0–23, day of month 1–31, month 1–12, day of week 0–7 (0 and 7 are
//! Sunday); each a comma list of `*`, a number or a range `a-b`, each optionally followed by
//! `/step` (an integer ≥ 1, any size). Numbers are read as JavaScript's `Number()` reads
//! them (`07`, `+5`, `5.0`, `0x1F`, `1e1`; an empty one is 0) and must be integers; text
//! after a second `/` is ignored, as the CLI ignores it. Refused: names, `L`, `W`, `#`, `?`,
//! macros, seconds or years — and, stricter than the CLI, control characters other than
//! white space (a NUL cannot be stored with a cron run).
//!
//! Meaning (the CLI says none; this is the Vixie/`cron-parser` reading): `a/n` runs from `a`
//! to the field's maximum every `n`; a step larger than the range keeps only its start; when
//! both the day of month and the day of week are restricted, a day matches either — unless
//! one of them starts with `*` (`*/2`), when it must match both (Vixie cron's rule).

const FIELDS: [(&str, u32, u32); 5] =
    [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];

/// A schedule the dialect accepts, field by field.
#[allow(dead_code)] // xtask reads only `validate`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The values each field allows, ascending (day of week: 0–7 as written).
    pub values: [Vec<u32>; 5],
    /// The field is exactly `*`.
    pub star: [bool; 5],
    /// The field starts with `*` (`*`, `*/2`): Vixie cron's rule for the two day fields.
    pub star_prefix: [bool; 5],
    /// The field has a `/step` somewhere (`*/2`, `1/2`, `0-10/5`): runtime schedules treat
    /// an hour field like this as an interval across DST changes.
    pub stepped: [bool; 5],
}

/// JavaScript's white space (`\s`): what the CLI trims and splits on.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// JavaScript's `Number(s)` for a string: NaN when it is not a number, 0 when empty.
fn js_number(s: &str) -> f64 {
    let s = s.trim_matches(is_js_space);
    if s.is_empty() {
        return 0.0;
    }
    let b = s.as_bytes();
    if b.len() > 2 && b[0] == b'0' {
        let radix = match b[1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            b'b' | b'B' => 2,
            _ => 0,
        };
        if radix != 0 {
            let mut v = 0f64;
            for c in s[2..].chars() {
                match c.to_digit(radix) {
                    Some(d) => v = v * f64::from(radix) + f64::from(d),
                    None => return f64::NAN,
                }
            }
            return v;
        }
    }
    let (sign, body) = match b[0] {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    // DecimalDigits? (. DecimalDigits?)? ((e|E) (+|-)? DecimalDigits)?, with a digit somewhere
    // before the exponent. Rust's float syntax is wider (`inf`, `nan`): checked here first.
    let d = body.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < d.len() && d[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if i < d.len() && d[i] == b'.' {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return f64::NAN;
    }
    if i < d.len() && (d[i] == b'e' || d[i] == b'E') {
        i += 1;
        if i < d.len() && (d[i] == b'+' || d[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return f64::NAN;
        }
    }
    if i != d.len() {
        return f64::NAN;
    }
    body.parse::<f64>().map(|v| sign * v).unwrap_or(f64::NAN)
}

/// JavaScript's `Number.isInteger`.
fn is_integer(v: f64) -> bool {
    v.is_finite() && v.trunc() == v
}

/// The CLI's refusal, with a hint where the value looks like another cron dialect.
fn bad_value(field: &str, s: &str) -> String {
    let upper = s.to_ascii_uppercase();
    for bad in ['#', '?'] {
        if s.contains(bad) {
            return format!("{s:?} in the {field} field: '{bad}' is not supported by Vercel");
        }
    }
    if upper.bytes().any(|b| b.is_ascii_alphabetic()) {
        if ["L", "W", "LW"].contains(&upper.as_str()) || upper.ends_with('L') || upper.ends_with('W') {
            return format!("{s:?} in the {field} field: L and W are not supported by Vercel");
        }
        return format!(
            "{s:?} in the {field} field: names are not allowed by Vercel, use numbers (Sunday = 0, January = 1)"
        );
    }
    format!("{s:?} in the {field} field is not a whole number")
}

/// A value of a field, as the CLI reads it.
fn value(field: &str, s: &str, min: u32, max: u32) -> Result<u32, String> {
    let v = js_number(s);
    if !is_integer(v) {
        return Err(bad_value(field, s));
    }
    if v < f64::from(min) || v > f64::from(max) {
        return Err(format!("{s:?} is out of range for the {field} field ({min}-{max})"));
    }
    Ok(v as u32)
}

fn parse_field(field: &str, text: &str, min: u32, max: u32) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        // As the CLI: `[range, step] = part.split("/")` — anything after a second '/' is ignored.
        let mut pieces = part.split('/');
        let range = pieces.next().unwrap_or("");
        let step = match pieces.next() {
            None => 1,
            Some(s) => {
                let n = js_number(s);
                if !is_integer(n) || n < 1.0 {
                    return Err(format!(
                        "{part:?} in the {field} field: the step after '/' must be a whole number of at least 1"
                    ));
                }
                // Any larger step keeps only the start of the range.
                n.min(f64::from(max - min + 1)) as u32
            }
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if range.contains('-') {
            let ends: Vec<&str> = range.split('-').collect();
            if ends.len() != 2 || ends[0].is_empty() || ends[1].is_empty() {
                return Err(format!("{range:?} in the {field} field is not a range like 1-5"));
            }
            let (a, b) = (value(field, ends[0], min, max)?, value(field, ends[1], min, max)?);
            if a > b {
                return Err(format!("{range:?} in the {field} field: a range must go from low to high"));
            }
            (a, b)
        } else {
            let a = value(field, range, min, max)?;
            // `a/n` runs from a to the field's maximum; a lone value is itself.
            if part.contains('/') { (a, max) } else { (a, a) }
        };
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Parse `expr` as the Vercel CLI accepts it; the reason, in words a person can act on, when
/// it does not.
pub fn parse(expr: &str) -> Result<Fields, String> {
    if expr.encode_utf16().count() > 256 {
        return Err("a schedule is at most 256 characters".into());
    }
    // Stricter than the CLI on one point: a control character (a NUL, say, in text the CLI
    // would ignore after a second `/`) is refused, since a schedule is stored as text with
    // each cron run, and a database cannot store every such byte.
    if let Some((at, c)) = expr.char_indices().find(|(_, c)| c.is_control() && !is_js_space(*c)) {
        return Err(format!("a schedule is printable text: remove the control character {c:?} at byte {at}"));
    }
    if expr.trim_matches(is_js_space).starts_with('@') {
        return Err("macros like @daily are not supported by Vercel: write the five fields (e.g. 0 0 * * *)".into());
    }
    let fields: Vec<&str> = expr.split(is_js_space).filter(|f| !f.is_empty()).collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}{}",
            fields.len(),
            if fields.len() == 6 { ": seconds and years are not supported by Vercel" } else { "" }
        ));
    }
    let mut parsed =
        Fields { values: Default::default(), star: [false; 5], star_prefix: [false; 5], stepped: [false; 5] };
    for (i, (text, (field, min, max))) in fields.iter().zip(FIELDS).enumerate() {
        parsed.values[i] = parse_field(field, text, min, max)?;
        parsed.star[i] = *text == "*";
        parsed.star_prefix[i] = text.starts_with('*');
        parsed.stepped[i] = text.contains('/');
    }
    Ok(parsed)
}

/// `Ok` when Vercel accepts `expr`; otherwise the reason, in words a person can act on.
#[allow(dead_code)] // the scheduler uses `parse`; xtask uses this
pub fn validate(expr: &str) -> Result<(), String> {
    parse(expr).map(|_| ())
}
