//! A tiny argument reader: the tasks take a positional name and a few `--flag value`s.

/// The arguments after the task name.
pub struct Args {
    rest: Vec<String>,
    pub dry_run: bool,
}

impl Args {
    pub fn new(mut rest: Vec<String>) -> Args {
        let before = rest.len();
        rest.retain(|a| a != "--dry-run");
        let dry_run = rest.len() != before;
        Args { rest, dry_run }
    }

    /// The first argument that is not a flag.
    pub fn positional(&mut self, what: &str) -> Result<String, String> {
        match self.rest.iter().position(|a| !a.starts_with("--")) {
            Some(i) if i == 0 || !self.rest[i - 1].starts_with("--") => Ok(self.rest.remove(i)),
            _ => Err(format!("missing {what}")),
        }
    }

    /// `--flag value` (or `--flag=value`).
    pub fn value(&mut self, flag: &str) -> Result<Option<String>, String> {
        let prefix = format!("{flag}=");
        if let Some(i) = self.rest.iter().position(|a| a.starts_with(&prefix)) {
            return Ok(Some(self.rest.remove(i)[prefix.len()..].to_owned()));
        }
        match self.rest.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) if i + 1 < self.rest.len() => {
                let v = self.rest.remove(i + 1);
                self.rest.remove(i);
                Ok(Some(v))
            }
            Some(_) => Err(format!("{flag} needs a value")),
        }
    }

    /// A flag without a value; true when it was given.
    pub fn flag(&mut self, flag: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != flag);
        self.rest.len() != before
    }

    /// Everything after a lone `--` (to hand to another program), removed from the rest.
    pub fn passthrough(&mut self) -> Vec<String> {
        match self.rest.iter().position(|a| a == "--") {
            Some(i) => {
                let tail = self.rest.split_off(i);
                tail[1..].to_vec()
            }
            None => Vec::new(),
        }
    }

    /// `--flag N` with `min <= N <= max`.
    pub fn number(&mut self, flag: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        match self.value(flag)? {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!("{flag} must be a whole number from {min} to {max}, got {v:?}")),
            },
        }
    }

    /// Refuse anything left over.
    pub fn finish(&self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument {a:?}")),
        }
    }
}
