//! The room functions a claim calls (migrations 0031 and 0032): `vqs_claim_room` takes the
//! consumer group's lock and returns the room under its `max_leased` and rate bucket;
//! `vqs_group_rooms` locks the ready message groups and returns each one's room. Both are
//! pushed here, with their shared arguments written once.

use sqlx::{Postgres, QueryBuilder};
use vqs::store::DeliveryClaimParams;

/// `vqs_claim_room(...)` for `p`: the consumer group's lock taken, the room left under its
/// `max_leased` and rate bucket.
pub(crate) fn push_claim_room<'a>(q: &mut QueryBuilder<'a, Postgres>, p: &'a DeliveryClaimParams) {
    q.push("vqs_claim_room(").push_bind(&p.consumer_group).push(", ").push_bind(p.now);
    push_room_limits(q, p);
}

/// The arguments `vqs_claim_room` takes after the consumer group and now (and
/// `vqs_group_rooms` after its own): the lease holder and its busy leases, `max_leased`, the
/// rate bucket's topic and the rate limit; then the closing parenthesis.
fn push_room_limits<'a>(q: &mut QueryBuilder<'a, Postgres>, p: &'a DeliveryClaimParams) {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    q.push(", ")
        .push_bind(&p.lease_holder)
        .push(", ")
        .push_bind(int(p.leased_here))
        .push(", ")
        .push_bind(p.max_leased.map(int))
        .push(", ")
        .push_bind(p.topic.clone().unwrap_or_default())
        .push(", ")
        .push_bind(p.rate_limit.map(|r| int(r.limit)))
        .push(", ")
        .push_bind(p.rate_limit.map(|r| int(r.period_seconds)))
        .push(")");
}

/// `vqs_group_rooms(...)` for `p` (migration 0032): the ready groups locked, each with its
/// room under `per_group`, within the consumer group's own limits when it has any.
pub(crate) fn push_group_rooms<'a>(q: &mut QueryBuilder<'a, Postgres>, p: &'a DeliveryClaimParams, per_group: u32) {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    q.push("vqs_group_rooms(")
        .push_bind(&p.consumer_group)
        .push(", ")
        .push_bind(p.now)
        .push(", ")
        .push_bind(int(per_group.max(1)))
        .push(", ")
        .push_bind(int(p.limit.max(1)))
        .push(", ")
        .push_bind(p.max_leased.is_some() || p.rate_limit.is_some());
    push_room_limits(q, p);
}
