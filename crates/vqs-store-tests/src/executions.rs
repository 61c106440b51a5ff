//! Executions: one row per attempt, closed exactly once.

use std::time::Duration;

use vqs::store::*;

use crate::support::*;

pub async fn start_and_finish_record_an_attempt(s: Store) {
    let id = s
        .execution_start(ExecutionStartParams {
            topic: "t".into(),
            message_id: "msg_x".into(),
            consumer_group: "a".into(),
            attempt: 3,
            now: at(1),
        })
        .await
        .unwrap();
    let running = executions(&s, "msg_x").await;
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].status, running[0].attempt, running[0].started_at), (ExecutionStatus::Running, 3, at(1)));
    s.execution_finish(ExecutionFinishParams {
        id,
        status: ExecutionStatus::Failed,
        error: Some("boom".into()),
        began_at: None,
        now: at(3),
    })
    .await
    .unwrap();
    let done = executions(&s, "msg_x").await.remove(0);
    assert_eq!((done.status, done.error.as_deref()), (ExecutionStatus::Failed, Some("boom")));
    assert_eq!((done.finished_at, done.duration_ms), (Some(at(3)), Some(2000)));
}

pub async fn claim_records_running_attempts(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let m =
        s.delivery_claim(DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, at(1)) }).await.unwrap();
    let exec = m[0].execution_id.expect("an execution with the lease");
    let rows = executions(&s, &id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].status, rows[0].attempt), (exec, ExecutionStatus::Running, 1));
    let plain = claim(&s, "a", 1, at(40)).await;
    assert_eq!(plain[0].execution_id, None, "no execution without start_executions");
}

pub async fn settling_closes_the_attempt_once(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let claim_exec = |now| DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, now) };
    let m = s.delivery_claim(claim_exec(at(1))).await.unwrap().remove(0);
    s.delivery_retry(DeliveryRetryParams {
        lease: lease(&m, at(2)),
        delay: Duration::ZERO,
        execution: finish(m.execution_id, ExecutionStatus::Failed, at(2)),
    })
    .await
    .unwrap();
    let m2 = s.delivery_claim(claim_exec(at(3))).await.unwrap().remove(0);
    assert_eq!(m2.delivery_count, 2);
    s.delivery_ack(DeliveryAckParams {
        lease: lease(&m2, at(4)),
        execution: finish(m2.execution_id, ExecutionStatus::Success, at(4)),
    })
    .await
    .unwrap();
    let mut rows = executions(&s, &id).await;
    rows.sort_by_key(|r| r.attempt);
    let got: Vec<_> = rows.iter().map(|r| (r.attempt, r.status, r.finished_at)).collect();
    assert_eq!(got, [(1, ExecutionStatus::Failed, Some(at(2))), (2, ExecutionStatus::Success, Some(at(4)))]);
}

pub async fn abandoned_attempt_is_closed_on_re_lease(s: Store) {
    subscribe(&s, "t", "a").await;
    let id = send(&s, "t", at(0)).await;
    let claim_exec = |now| DeliveryClaimParams { start_executions: true, ..claim_params("a", 1, now) };
    let first = s.delivery_claim(claim_exec(at(1))).await.unwrap().remove(0);
    let second = s.delivery_claim(claim_exec(at(31))).await.unwrap().remove(0);
    assert_ne!(first.execution_id, second.execution_id);
    let rows = executions(&s, &id).await;
    let old = rows.iter().find(|r| Some(r.id) == first.execution_id).unwrap();
    assert_eq!((old.status, old.error.as_deref()), (ExecutionStatus::Failed, Some(ABANDONED_ERROR)));
    let new = rows.iter().find(|r| Some(r.id) == second.execution_id).unwrap();
    assert_eq!((new.status, new.attempt), (ExecutionStatus::Running, 2));
    // The stale worker's late acknowledgement neither settles nor reopens its attempt.
    let late = s.delivery_ack(DeliveryAckParams {
        lease: lease(&first, at(32)),
        execution: finish(first.execution_id, ExecutionStatus::Success, at(32)),
    });
    assert!(matches!(late.await, Err(StoreError::LeaseLost(_))));
    let old = executions(&s, &id).await.into_iter().find(|r| Some(r.id) == first.execution_id).unwrap();
    assert_eq!(old.status, ExecutionStatus::Failed, "closed exactly once: abandoned stays abandoned");
}
