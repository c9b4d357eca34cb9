//! CSV answers (RFC 4180): a header row, CRLF line ends, fields quoted when they hold a comma,
//! a quote or a line break (quotes doubled). Costs go in as the exact decimal strings, so a
//! spreadsheet sums them exactly.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The media type of a CSV answer.
pub const MEDIA: &str = "text/csv; charset=utf-8; header=present";

/// One field, quoted when it must be.
pub fn field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A table: the header row, then each row, every line ending in CRLF.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let line: Vec<String> = row.iter().map(|f| field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `text` as a CSV answer.
pub fn answer(text: String) -> Response {
    ([(header::CONTENT_TYPE, MEDIA)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(field("chatbot"), "chatbot");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(""), "");
        let t = table(
            &["feature".into(), "cost_usd".into()],
            &[vec!["a,b".into(), "0.000001".into()]],
        );
        assert_eq!(t, "feature,cost_usd\r\n\"a,b\",0.000001\r\n");
    }
}
