//! `GET /healthz` (the process answers) and `GET /readyz` (the pipeline is running and the
//! analytics store answers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::state::QueryState;
use axum::http::Method;
use tally_http::auth::{Access, Routes};

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.route(Method::GET, "/healthz", Access::Public, get(healthz))
        .doc("Liveness")
        .returns::<serde_json::Value>(200)
        .route(Method::GET, "/readyz", Access::Public, get(readyz))
        .doc("Readiness: the analytics store answers and the projector runs (503 otherwise)")
        .returns::<serde_json::Value>(200)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<QueryState>) -> impl IntoResponse {
    let pipeline = (state.pipeline)();
    let store_ok = state.analytics.ping().await.is_ok();
    let ready = pipeline.ready && store_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(
            json!({"status": if ready { "ready" } else { "not_ready" }, "analytics_store": store_ok, "pipeline": pipeline}),
        ),
    )
}
