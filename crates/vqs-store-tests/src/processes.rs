//! Process heartbeats and rescue; wake-ups.

use vqs::store::*;

use crate::support::*;

fn beat(id: &str, secs: i64) -> ProcessBeatParams {
    ProcessBeatParams { process_id: id.into(), now: at(secs) }
}

pub async fn a_dead_process_leases_become_due(s: Store) {
    subscribe(&s, "t", "a").await;
    send(&s, "t", at(0)).await;
    send(&s, "t", at(0)).await;
    assert!(!s.process_beat(beat("p1", 1)).await.unwrap(), "the first beat registers");
    assert!(s.process_beat(beat("p1", 2)).await.unwrap());
    let held =
        DeliveryClaimParams { lease_holder: Some("p1".into()), visibility_seconds: 300, ..claim_params("a", 1, at(3)) };
    let m = s.delivery_claim(held).await.unwrap().remove(0);
    let remote = claim(&s, "a", 1, at(3)).await;
    assert_eq!(remote.len(), 1, "a lease with no holder");
    s.process_beat(beat("p2", 10)).await.unwrap();
    let alive = ProcessRescueParams { dead_before: at(1), rescuer: "p2".into(), now: at(10) };
    assert_eq!(s.process_rescue(alive).await.unwrap(), ProcessRescueReport::default(), "p1 beat at 2");
    let dead = ProcessRescueParams { dead_before: at(5), rescuer: "p2".into(), now: at(10) };
    assert_eq!(s.process_rescue(dead).await.unwrap(), ProcessRescueReport { processes: 1, deliveries: 1 });
    let again = claim(&s, "a", 10, at(10)).await;
    assert_eq!(again.iter().map(|x| x.message_id.as_str()).collect::<Vec<_>>(), [m.message_id.as_str()], "due at once");
    assert!(!s.process_beat(beat("p1", 11)).await.unwrap(), "forgotten: a late beat registers again");
}

pub async fn the_rescuer_is_never_presumed_dead(s: Store) {
    s.process_beat(beat("p1", 1)).await.unwrap();
    let p = ProcessRescueParams { dead_before: at(100), rescuer: "p1".into(), now: at(100) };
    assert_eq!(s.process_rescue(p).await.unwrap().processes, 0);
    assert!(s.process_beat(beat("p1", 101)).await.unwrap(), "still known");
}

pub async fn next_due_is_the_earliest_unfinished(s: Store) {
    subscribe(&s, "t", "a").await;
    assert_eq!(s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".to_owned() }).await.unwrap(), None);
    let delayed = |d| MessageSendParams { delay_seconds: d, ..send_params("t", "{}", at(0)) };
    s.message_send(delayed(50)).await.unwrap();
    s.message_send(delayed(20)).await.unwrap();
    assert_eq!(
        s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".to_owned() }).await.unwrap(),
        Some(at(20))
    );
    let m = claim(&s, "a", 1, at(20)).await.remove(0);
    assert_eq!(
        s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".to_owned() }).await.unwrap(),
        Some(at(50)),
        "the lease ends at 50 too"
    );
    ack(&s, &m, at(21)).await.unwrap();
    assert_eq!(
        s.delivery_next_due(DeliveryNextDueParams { consumer_group: "a".to_owned() }).await.unwrap(),
        Some(at(50))
    );
    assert_eq!(s.delivery_next_due(DeliveryNextDueParams { consumer_group: "nobody".to_owned() }).await.unwrap(), None);
}
