//! `GET /healthz` (the process answers) and `GET /readyz` (the pipeline is running and the
//! analytics store answers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::QueryState;
use tally_http::auth::Access;
use tally_http::route::{Route, Routes};

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get("/healthz", Access::Public, "Liveness", healthz)
            .returns::<serde_json::Value>(200),
    )
    .serve(
        Route::get(
            "/readyz",
            Access::Public,
            "Readiness: the analytics store answers and the projector runs (503 otherwise)",
            readyz,
        )
        .returns::<serde_json::Value>(200)
        .or_status(503),
    )
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
