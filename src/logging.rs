//! Log lines: text, or one JSON object per line, on standard error, filtered by `TESSERA_LOG`.
//!
//! Every line written while a request is served names it: `request_id=…` at the end of a text
//! line, a `request_id` member of a JSON one, read from the request's [`RequestContext`] (set by
//! `http::request_id`) when the line is formatted. So following one request end to end costs
//! nothing per request, only per line written; a tracing span per request would cost every
//! introspection about a microsecond of CPU.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::audit::RequestContext;

/// Installs the process's subscriber: `TESSERA_LOG` is the filter (default `info`);
/// `TESSERA_LOG_FORMAT=json` writes JSON lines instead of text.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().map_event_format(WithRequestId::json).init();
    } else {
        builder.map_event_format(WithRequestId::text).init();
    }
}

/// An event format that adds the current request's id to what `F` writes.
pub struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<F> WithRequestId<F> {
    /// Around a text format: ` request_id=…` ends the line.
    pub fn text(inner: F) -> Self {
        WithRequestId { inner, json: false }
    }

    /// Around a JSON format: `"request_id":"…"` opens the object.
    pub fn json(inner: F) -> Self {
        WithRequestId { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some(request) = RequestContext::current() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // The id is believed or made by `http::request_id` only from characters that need no
        // escaping in JSON or text.
        let id = &request.request_id;
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        match body.strip_prefix('{') {
            Some(members) if self.json => writeln!(writer, "{{\"request_id\":\"{id}\",{members}"),
            _ => writeln!(writer, "{body} request_id={id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn context(id: &str) -> RequestContext {
        RequestContext {
            request_id: id.into(),
            client_addr: None,
        }
    }

    #[actix_rt::test]
    async fn lines_inside_a_request_name_it() {
        let text = Buffer::default();
        let json = Buffer::default();
        let (t, j) = (text.clone(), json.clone());
        let text_sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || t.clone())
            .map_event_format(WithRequestId::text)
            .finish();
        let json_sub = tracing_subscriber::fmt()
            .json()
            .with_writer(move || j.clone())
            .map_event_format(WithRequestId::json)
            .finish();
        for sub in [tracing::Dispatch::new(text_sub), tracing::Dispatch::new(json_sub)] {
            let _guard = tracing::dispatcher::set_default(&sub);
            tracing::info!("outside");
            context("req-9").scope(async { tracing::warn!(n = 1, "inside") }).await;
        }
        let text = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("outside"), "{text}");
        assert!(
            lines[1].contains("inside n=1") && lines[1].ends_with(" request_id=req-9"),
            "{text}"
        );
        let json = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
        let objects: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(objects[0].get("request_id").is_none(), "{json}");
        assert_eq!(objects[1]["request_id"], "req-9", "{json}");
        assert_eq!(objects[1]["fields"]["message"], "inside", "{json}");
    }
}
