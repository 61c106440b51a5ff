//! W3C trace context, carried from a publisher to the job and on to the jobs it enqueues.
//!
//! A producer's `traceparent` is stored with the message (`headers_json`) and comes back on
//! the push (`x-vercel-queue-traceparent`). The consumer runs the job inside
//! [`TraceContext::scope`] with a child context (same trace id, a new span id), and
//! [`Queue::send`](crate::Queue::send) stamps that context on every message published from
//! inside the job, so a chain of jobs shares one trace id. A web handler can do the same
//! for the requests it serves.

use std::future::Future;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A parsed `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's id (32 hex digits).
    pub trace_id: String,
    /// The parent span's id (16 hex digits).
    pub parent_id: String,
    /// The trace flags (2 hex digits; `01` = sampled).
    pub flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// Parse a `traceparent` header value; `None` when it is not a valid version-00 value
    /// (an all-zero trace or parent id is invalid too).
    pub fn parse(traceparent: &str) -> Option<TraceContext> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" || !is_hex(trace_id, 32) || !is_hex(parent_id, 16) {
            return None;
        }
        if !is_hex(flags, 2) || trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(TraceContext { trace_id: trace_id.into(), parent_id: parent_id.into(), flags: flags.into() })
    }

    /// A new trace (no parent): a random trace id and span id, sampled.
    pub fn new_root() -> TraceContext {
        let id = uuid::Uuid::new_v4().simple().to_string();
        TraceContext { trace_id: id, parent_id: new_span_id(), flags: "01".into() }
    }

    /// The same trace with a new span id: the context of work done on behalf of this one.
    pub fn child(&self) -> TraceContext {
        TraceContext { trace_id: self.trace_id.clone(), parent_id: new_span_id(), flags: self.flags.clone() }
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }

    /// The context of the job (or request) running on this task, if any.
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Run `fut` with `self` as the current context: messages it publishes carry it.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

fn new_span_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_refuses_invalid_traceparents() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(tp).unwrap();
        assert_eq!((c.trace_id.as_str(), c.parent_id.as_str(), c.flags.as_str()), (&tp[3..35], &tp[36..52], "01"));
        assert_eq!(c.traceparent(), tp);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f35-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.parent_id, root.parent_id);
        assert!(TraceContext::parse(&child.traceparent()).is_some());
    }

    #[tokio::test]
    async fn the_current_context_is_scoped_to_the_task() {
        assert_eq!(TraceContext::current(), None);
        let c = TraceContext::new_root();
        let seen = c.clone().scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(c));
        assert_eq!(TraceContext::current(), None);
    }
}
