use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Where "now" comes from. Production uses [`Clock::system`]; tests inject a
/// [`Clock::manual`] clock and move it, so retries and leases are asserted without sleeping.
#[derive(Clone, Debug)]
pub struct Clock(Inner);

#[derive(Clone, Debug)]
enum Inner {
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Clock(Inner::System)
    }

    /// A clock that only moves when told to.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock(Inner::Manual(Arc::new(Mutex::new(start))))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Inner::System => Utc::now(),
            Inner::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: std::time::Duration) {
        if let Inner::Manual(t) = &self.0 {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            *t = chrono::Duration::from_std(by)
                .ok()
                .and_then(|by| t.checked_add_signed(by))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}
