//! `web dead-letters [replay ID | discard ID | groups | retry-group TOPIC ERROR |
//! discard-group TOPIC ERROR]`: the admin API's dead-letter answers from the command line.

use anyhow::{Result, anyhow};
use serde_json::json;
use vqs::DeadLetterGroupAction;
use vqs_axum::admin_dead_letter_groups::{GroupBody, act};

use crate::cli::{DeadLetterAction, print, s};

pub(crate) async fn run(queue: &vqs::Queue, action: Option<DeadLetterAction>, json: bool) -> Result<()> {
    match action {
        None => {
            let rows = json!(queue.dead_letters(100).await?);
            print(json, &rows, |v| {
                let mut out = format!("{:>6}  {:<16} {:<36} {:>4}  error\n", "id", "topic", "message", "tries");
                for d in v.as_array().into_iter().flatten() {
                    out += &format!(
                        "{:>6}  {:<16} {:<36} {:>4}  {}\n",
                        s(&d["id"]),
                        s(&d["topic"]),
                        s(&d["message_id"]),
                        s(&d["attempts"]),
                        s(&d["error"])
                    );
                }
                out
            });
        }
        Some(DeadLetterAction::Replay { id }) => {
            let sent = queue.dead_letter_replay(id).await.map_err(|e| anyhow!("{e}"))?;
            print(json, &json!(sent), |v| format!("replayed as {}\n", s(&v["messageId"])));
        }
        Some(DeadLetterAction::Discard { id }) => {
            queue.dead_letter_discard(id).await.map_err(|e| anyhow!("{e}"))?;
            print(json, &json!({ "discarded": id }), |_| format!("discarded {id}\n"));
        }
        Some(DeadLetterAction::Groups) => {
            let rows = json!(queue.dead_letter_groups(100).await?);
            print(json, &rows, |v| {
                let mut out = format!("{:>6}  {:<16} {:<20} {:<20}  error\n", "count", "topic", "oldest", "newest");
                for g in v.as_array().into_iter().flatten() {
                    out += &format!(
                        "{:>6}  {:<16} {:<20} {:<20}  {}\n",
                        s(&g["count"]),
                        s(&g["topic"]),
                        s(&g["oldest_at"]).chars().take(19).collect::<String>(),
                        s(&g["newest_at"]).chars().take(19).collect::<String>(),
                        s(&g["error"])
                    );
                }
                out
            });
        }
        Some(DeadLetterAction::RetryGroup { topic, error }) => {
            let v = act(queue, &GroupBody { topic, error }, DeadLetterGroupAction::Replay)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            print(json, &v, |v| format!("replayed {}\n", s(&v["replayed"])));
        }
        Some(DeadLetterAction::DiscardGroup { topic, error }) => {
            let v = act(queue, &GroupBody { topic, error }, DeadLetterGroupAction::Discard)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            print(json, &v, |v| format!("discarded {}\n", s(&v["discarded"])));
        }
    }
    Ok(())
}
