//! One module per screen. Each page handler asks the API for what it shows (in parallel where
//! the calls are independent), writes it with [`crate::format`] and [`crate::chart`], and
//! puts it in the shell ([`crate::shell::Page`]). A part whose call failed shows what failed
//! and a retry; the rest of the page still renders.

pub mod audit;
pub mod budgets;
pub mod events;
pub mod experiments;
pub mod features;
pub mod history;
pub mod keys;
pub mod models;
pub mod overview;
pub mod spending;
pub mod test_runs;

use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;

use crate::format;

/// A status word with its colour (the word is always there: colour is never the only cue).
pub fn badge(word: &str) -> Markup {
    html! { span class={"badge " (word)} { (word.replace('_', " ")) } }
}

/// A status word from JSON.
pub fn badge_of(value: &Value) -> Markup {
    badge(value.as_str().unwrap_or("unknown"))
}

/// A KPI card: label, one number, and what qualifies it.
pub fn kpi(id: &str, label: &str, value: String, sub: Option<Markup>) -> Markup {
    html! {
        div class="card kpi" id=(id) {
            div class="label" { (label) }
            div class="value" { (value) }
            @if let Some(sub) = sub { div class="sub" { (sub) } }
        }
    }
}

/// A time, relative, with the absolute time in its tooltip.
pub fn when(value: &Value, now: DateTime<Utc>) -> Markup {
    match format::instant(value) {
        Some(at) => html! {
            time datetime=(at.to_rfc3339()) title=(format::absolute(at)) { (format::relative(at, now)) }
        },
        None => html! { "—" },
    }
}

/// Money from an exact string, with the unpriced requests next to it (never hidden).
pub fn cost(usd: &Value, unpriced: &Value) -> Markup {
    let unpriced = unpriced.as_u64().unwrap_or(0);
    html! {
        (format::money_of(usd))
        @if unpriced > 0 {
            " " span class="note" { "+ " (format::grouped(u128::from(unpriced))) " unpriced requests" }
        }
    }
}

/// How many requests had no price (next to a total that leaves them out).
pub fn unpriced(count: &Value) -> Markup {
    match count.as_u64() {
        Some(0) | None => html! { "every request priced" },
        Some(n) => html! { "+ " (format::grouped(u128::from(n))) " unpriced requests" },
    }
}

/// The items of a JSON array (none when it is not one).
pub fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A change against the previous period, coloured by whether spending rose; `had_previous`
/// false when the previous period had nothing to compare with.
pub fn trend(percent: &Value, had_previous: bool) -> Markup {
    if !had_previous {
        return html! { "nothing in the previous period to compare with" };
    }
    let p = percent.as_f64().unwrap_or(0.0);
    let class = if p > 0.05 {
        "trend-up"
    } else if p < -0.05 {
        "trend-down"
    } else {
        ""
    };
    html! { span class=(class) { (format::change(p)) } " vs previous period" }
}
