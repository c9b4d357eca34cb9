//! The console's stylesheet, script and icon: compiled into the binary, served by Tally
//! (nothing from a CDN, so the console works offline), named by a fingerprint of their
//! content and cached for a year (a new build changes the name).

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::BASE;

/// Where the assets are served.
pub const PREFIX: &str = "/platform/ai-management/assets/";

/// (name, media type, content).
const FILES: [(&str, &str, &str); 3] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../assets/icon.svg"),
    ),
];

/// (served name, media type, content): `app.1a2b3c4d.css`.
static SERVED: LazyLock<Vec<(String, &'static str, &'static str)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, media, content)| {
            let digest = Sha256::digest(content.as_bytes());
            let print: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            (format!("{stem}.{print}.{ext}"), *media, *content)
        })
        .collect()
});

/// The URL of asset `name` (`app.css`), fingerprinted.
pub fn url(name: &str) -> String {
    let served = FILES
        .iter()
        .position(|(n, _, _)| *n == name)
        .map_or(name, |i| SERVED[i].0.as_str());
    format!("{BASE}/assets/{served}")
}

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match SERVED.iter().find(|(name, _, _)| *name == file) {
        Some((_, media, content)) => (
            [
                (header::CONTENT_TYPE, *media),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *content,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
