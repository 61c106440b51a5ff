//! Vercel's cron dialect, as a validator with reasons. Std-only on purpose: `xtask`
//! includes this file by path (it depends on no workspace crate), so the scheduler, the CLI
//! and the scaffolding share one validator.
//!
//! Exactly five fields — minute 0–59, hour 0–23, day of month 1–31, month 1–12, day of
//! week 0–7 (0 and 7 are Sunday) — each `*`, a number, a range `a-b`, a step `*/n` or
//! `a-b/n`, or a comma list of those. No names, no `L`, `W`, `#`, `?`, no macros, no seconds
//! or years, and never both a day of month and a day of week.

const FIELDS: [(&str, u32, u32); 5] =
    [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];

fn number(field: &str, s: &str, min: u32, max: u32) -> Result<u32, String> {
    if s.is_empty() {
        return Err(format!("the {field} field has an empty value"));
    }
    if s.bytes().any(|b| b.is_ascii_alphabetic()) {
        let upper = s.to_ascii_uppercase();
        if ["L", "W", "LW"].contains(&upper.as_str()) || upper.ends_with('L') || upper.ends_with('W') {
            return Err(format!("{s:?} in the {field} field: L and W are not supported by Vercel"));
        }
        return Err(format!(
            "{s:?} in the {field} field: names are not allowed by Vercel, use numbers (Sunday = 0, January = 1)"
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} in the {field} field is not a number"));
    }
    let n: u32 = s.parse().map_err(|_| format!("{s:?} in the {field} field is too large"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range for the {field} field ({min}-{max})"));
    }
    Ok(n)
}

fn check_item(field: &str, item: &str, min: u32, max: u32) -> Result<(), String> {
    for bad in ['#', '?'] {
        if item.contains(bad) {
            return Err(format!("{item:?} in the {field} field: '{bad}' is not supported by Vercel"));
        }
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    if let Some(step) = step {
        let n = number(field, step, 1, u32::MAX).map_err(|_| {
            format!("{item:?} in the {field} field: the step after '/' must be a whole number of at least 1")
        })?;
        if n > max {
            return Err(format!(
                "{item:?} in the {field} field: step {n} is larger than the field's range ({min}-{max})"
            ));
        }
    }
    match range {
        "*" => Ok(()),
        r => match r.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(field, a, min, max)?, number(field, b, min, max)?);
                if a > b {
                    return Err(format!("{r:?} in the {field} field: a range must go from low to high"));
                }
                Ok(())
            }
            None if step.is_some() => Err(format!(
                "{item:?} in the {field} field: a step needs '*' or a range before it (e.g. */{0} or {1}-{max}/{0})",
                step.unwrap_or_default(),
                r
            )),
            None => number(field, r, min, max).map(|_| ()),
        },
    }
}

/// `Ok` when Vercel accepts `expr`; otherwise the reason, in words a person can act on.
pub fn validate(expr: &str) -> Result<(), String> {
    if expr.trim().starts_with('@') {
        return Err("macros like @daily are not supported by Vercel: write the five fields (e.g. 0 0 * * *)".into());
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}{}",
            fields.len(),
            if fields.len() == 6 { ": seconds and years are not supported by Vercel" } else { "" }
        ));
    }
    if expr.len() < 9 || expr.len() > 256 {
        return Err("a schedule is 9 to 256 characters: five fields, e.g. 0 * * * *".into());
    }
    for (value, (field, min, max)) in fields.iter().zip(FIELDS) {
        for item in value.split(',') {
            check_item(field, item, min, max)?;
        }
    }
    if fields[2] != "*" && fields[4] != "*" {
        return Err("Vercel cannot set both day of month and day of week: make one of them *".into());
    }
    Ok(())
}
