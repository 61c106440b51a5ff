//! Maintenance and retention: prune by age and count, never an unfinished message.

use vqs::store::*;

use crate::support::*;

/// Sends `n` messages a second apart from `at(0)`, acknowledges the first `finished`.
async fn messages(s: &Store, n: i64, finished: usize) -> Vec<String> {
    subscribe(s, "t", "a").await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(send(s, "t", at(i)).await);
    }
    for id in &ids[..finished] {
        let by_id = DeliveryClaimParams { message_id: Some(id.clone()), ..claim_params("a", 1, at(100)) };
        let m = s.delivery_claim(by_id).await.unwrap().remove(0);
        ack(s, &m, at(101)).await.unwrap();
    }
    ids
}

async fn kept(s: &Store, ids: &[String]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(s.message_get(MessageGetParams { id: id.to_string() }).await.unwrap().is_some());
    }
    out
}

pub async fn prunes_finished_messages_by_age(s: Store) {
    let ids = messages(&s, 4, 3).await;
    // At 1000 s, a retention of 998.5 s cuts off at 1.5 s: messages 0 and 1 are old enough.
    let p = MaintenanceParams { message_retention_seconds: 998, ..keep_everything(at(1000)) };
    let r = s.maintenance_run(p).await.unwrap();
    assert_eq!(r.finished_messages_pruned, 2);
    assert_eq!(kept(&s, &ids).await, [false, false, true, true]);
    // Everything old enough now, but message 3 is unfinished.
    let r = s
        .maintenance_run(MaintenanceParams { message_retention_seconds: 1, ..keep_everything(at(5000)) })
        .await
        .unwrap();
    assert_eq!(r.finished_messages_pruned, 1);
    assert_eq!(kept(&s, &ids).await, [false, false, false, true]);
}

pub async fn prunes_finished_messages_by_count_never_unfinished(s: Store) {
    let ids = messages(&s, 5, 2).await;
    let r = s.maintenance_run(MaintenanceParams { max_messages: 1, ..keep_everything(at(200)) }).await.unwrap();
    assert_eq!(r.finished_messages_pruned, 2, "only the finished ones go, even above the count");
    assert_eq!(kept(&s, &ids).await, [false, false, true, true, true]);
    assert!(s.maintenance_run(keep_everything(at(300))).await.unwrap().is_empty(), "nothing more to do");
}

pub async fn rescues_abandoned_executions_and_prunes_rows(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    s.delivery_claim(DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, at(1)) }).await.unwrap();
    let r = s.maintenance_run(keep_everything(at(20))).await.unwrap();
    assert_eq!(r.executions_rescued, 0, "the lease still holds");
    let r = s.maintenance_run(keep_everything(at(40))).await.unwrap();
    assert_eq!(r.executions_rescued, 1);
    let e = executions(&s, &id).await.remove(0);
    assert_eq!((e.status, e.error.as_deref()), (ExecutionStatus::Failed, Some(ABANDONED_ERROR)));
    let r = s
        .maintenance_run(MaintenanceParams { execution_retention_seconds: 10, ..keep_everything(at(100)) })
        .await
        .unwrap();
    assert_eq!(r.executions_pruned, 1);
    assert!(executions(&s, &id).await.is_empty());
}
