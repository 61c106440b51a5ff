//! Pushes from the local dispatcher go through the app's own router, without a socket.

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use tower::ServiceExt;
use vqs::{Delivery, Pusher};

use crate::queue_route::InProcessPush;

/// A [`Pusher`] that calls the router in process: same routes, same checks.
#[derive(Clone, Debug)]
pub struct InProcessPusher {
    router: Router,
}

impl InProcessPusher {
    pub fn new(router: Router) -> Self {
        InProcessPusher { router }
    }
}

#[async_trait]
impl Pusher for InProcessPusher {
    async fn push(&self, route_path: &str, delivery: Delivery) -> Result<u16, String> {
        let mut req = http::Request::post(route_path);
        for (name, value) in delivery.headers() {
            req = req.header(name, value);
        }
        let mut req = req.body(Body::from(delivery.body)).map_err(|e| e.to_string())?;
        req.extensions_mut().insert(InProcessPush);
        let resp = self.router.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    }
}
