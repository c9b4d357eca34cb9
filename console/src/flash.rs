//! One-shot messages across a form's redirect: what happened, or what failed, the field it
//! names and what was typed (so the form comes back filled in), carried in a short-lived
//! cookie (`HttpOnly`, `SameSite=Strict`) and cleared once shown. Never a secret: the forms
//! that carry one (sign-in, a new key) answer directly instead of redirecting.

use std::collections::{BTreeMap, HashMap};

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use crate::api::encode;
use crate::cookies::{cookie, set_cookie};

/// The one-shot message shown after a form's redirect.
const FLASH_COOKIE: &str = "tally_flash";

/// A one-shot message for the next page: what happened, or what failed and which field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flash {
    pub ok: bool,
    pub message: String,
    pub field: Option<String>,
    /// The refused form's fields, to fill it in again (never its CSRF token).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

/// Longest field value kept for refilling a form (a cookie holds about 4 KB in all).
const MAX_KEPT: usize = 500;

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Flash {
    pub fn ok(message: impl Into<String>) -> Flash {
        Flash {
            ok: true,
            message: message.into(),
            field: None,
            values: BTreeMap::new(),
        }
    }

    pub fn error(message: impl Into<String>, field: Option<String>) -> Flash {
        Flash {
            ok: false,
            message: message.into(),
            field,
            values: BTreeMap::new(),
        }
    }

    /// Keeps what the refused form held (but its token and return address) to fill it in again.
    pub fn keeping(mut self, form: &HashMap<String, String>) -> Flash {
        self.values = form
            .iter()
            .filter(|(k, v)| !["csrf", "back"].contains(&k.as_str()) && v.len() <= MAX_KEPT)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self
    }

    /// The flash a request carries, if any.
    pub fn read(headers: &HeaderMap) -> Option<Flash> {
        let text = decode(cookie(headers, FLASH_COOKIE)?)?;
        serde_json::from_str(&text).ok()
    }

    /// A redirect (`303`) to `to` that shows this message there.
    pub fn redirect(self, to: &str) -> Response {
        let value = encode(&serde_json::to_string(&self).unwrap_or_default());
        let mut response = Redirect::to(to).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(FLASH_COOKIE, &value, 60, false),
        );
        response
    }

    /// Clears the flash once shown.
    pub fn clear() -> HeaderValue {
        set_cookie(FLASH_COOKIE, "", 0, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flashes_survive_their_cookie() {
        let flash = Flash::error("amount: must be positive; 100%", Some("amount".into()));
        let response = flash.clone().redirect("/x");
        let set = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("cookie")
            .to_string();
        let value = set
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .expect("value");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{FLASH_COOKIE}={value}")).expect("header"),
        );
        assert_eq!(Flash::read(&h), Some(flash));
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    }
}
