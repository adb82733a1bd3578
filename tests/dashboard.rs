//! The Grafana dashboard in `dashboards/` must chart what Tessera and the resource server really
//! expose: every metric a panel queries, every label it groups by or matches on, and every label
//! value it matches, must appear on a live server's `/metrics`; every metric Tessera or the
//! resource server (`tessera_api`) defines must have a panel; and panels must not overlap.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use awc::http::StatusCode;
use common::api::{config, ApiServer};
use common::TestServer;
use tessera_api::ResourceServerConfig;

const DASHBOARD: &str = include_str!("../dashboards/tessera.json");

/// Prefixes of the metric names the dashboard charts: Tessera's and the resource server's.
const PREFIXES: &[&str] = &["tessera_", "api_"];

/// Series name → label name → values seen, from Prometheus text exposition.
fn exposed(text: &str) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.find('}').expect("closing brace")];
            for (k, v) in body.split(',').filter_map(|kv| kv.split_once('=')) {
                labels
                    .entry(k.to_owned())
                    .or_default()
                    .insert(v.trim_matches('"').to_owned());
            }
        }
    }
    series
}

/// A PromQL expression with its string literals, `{…}` selectors and `[…]` ranges blanked.
fn outside_selectors(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let (mut in_string, mut depth) = (false, 0);
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            '{' | '[' if !in_string => depth += 1,
            '}' | ']' if !in_string => depth -= 1,
            _ => {}
        }
        out.push(if in_string || depth > 0 || c == '"' { ' ' } else { c });
    }
    out
}

/// Every `tessera_…` or `api_…` identifier in a PromQL expression, outside selectors and strings.
fn metric_names(expr: &str) -> Vec<String> {
    outside_selectors(expr)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| PREFIXES.iter().any(|p| word.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// The label names of every `by (...)` clause in a PromQL expression.
fn grouping_labels(expr: &str) -> Vec<String> {
    expr.match_indices("by (")
        .flat_map(|(at, _)| {
            let inner = &expr[at + 4..];
            inner[..inner.find(')').expect("closing paren")]
                .split(',')
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The matchers of every `{…}` selector in a PromQL expression: (label, operator, value).
fn matchers(expr: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let mut body = &rest[open + 1..];
        loop {
            body = body.trim_start_matches([' ', ',']);
            if body.starts_with('}') || body.is_empty() {
                break;
            }
            let name_end = body.find(['=', '!']).expect("a matcher operator");
            let label = body[..name_end].trim().to_owned();
            let op_len = if body[name_end + 1..].starts_with(['=', '~']) {
                2
            } else {
                1
            };
            let op = body[name_end..name_end + op_len].to_owned();
            let value = body[name_end + op_len..].trim_start();
            assert!(value.starts_with('"'), "matcher value is a string: {expr}");
            let close = value[1..].find('"').expect("closing quote") + 1;
            found.push((label, op, value[1..close].to_owned()));
            body = &value[close + 1..];
        }
        rest = body;
    }
    found
}

/// The label values a matcher must find exposed: the value of `=`, the words of a `=~`
/// alternation of plain words; nothing for negative matchers or other regular expressions.
fn required_values(op: &str, value: &str) -> Vec<String> {
    let plain = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match op {
        "=" => vec![value.to_owned()],
        "=~" if value.split('|').all(plain) => value.split('|').map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Every panel, rows excluded, including those inside collapsed rows.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            all.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            all.push(panel);
        }
    }
    all
}

#[test]
fn the_expression_parsers_find_names_and_labels() {
    let expr = "sum by (route, le) (rate(tessera_a_bucket[1m])) / sum(tessera_b_total) + api_c";
    assert_eq!(metric_names(expr), ["tessera_a_bucket", "tessera_b_total", "api_c"]);
    assert_eq!(grouping_labels(expr), ["route", "le"]);
    let expr = r#"sum(rate(api_x_total{result=~"hit|negative_hit", route="/api/data"}[$__rate_interval])) / sum(api_y{a!="b"})"#;
    assert_eq!(metric_names(expr), ["api_x_total", "api_y"]);
    assert_eq!(
        matchers(expr),
        [
            ("result".to_owned(), "=~".to_owned(), "hit|negative_hit".to_owned()),
            ("route".to_owned(), "=".to_owned(), "/api/data".to_owned()),
            ("a".to_owned(), "!=".to_owned(), "b".to_owned()),
        ]
    );
    assert_eq!(required_values("=~", "hit|negative_hit"), ["hit", "negative_hit"]);
    assert_eq!(required_values("=", "/api/data"), ["/api/data"]);
    assert!(required_values("=~", "5..").is_empty());
    assert!(required_values("!=", "b").is_empty());
    let text = "# HELP x\nx_total{a=\"1\",b=\"2\"} 3\nx_total{a=\"4\"} 1\ny 1\n";
    let series = exposed(text);
    assert_eq!(series["x_total"].keys().collect::<Vec<_>>(), ["a", "b"], "label names");
    assert_eq!(series["x_total"]["a"], BTreeSet::from(["1".to_owned(), "4".to_owned()]));
    assert!(series["y"].is_empty());
}

#[test]
fn panels_have_unique_ids_and_do_not_overlap() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(&str, [u64; 4])> = Vec::new();
    let top = dashboard["panels"].as_array().expect("panels");
    let nested = top.iter().flat_map(|p| p["panels"].as_array().into_iter().flatten());
    for panel in top.iter().chain(nested) {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} ({title:?}) is used twice");
        let g = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().expect("gridPos"));
        assert!(w > 0 && h > 0 && x + w <= 24, "panel {title:?} lies outside the grid");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "panels {title:?} and {other:?} overlap");
        }
        boxes.push((title, [x, y, w, h]));
    }
}

/// Traffic that makes every resource-server metric appear: a miss and a hit, an unknown token
/// twice (miss, then negative_hit), 401 with no token, 403 for a read-only token on the update
/// route, and, on a second API whose Tessera is a closed port, a failed call that opens its
/// breaker (a transition). Returns the APIs, to stop.
async fn exercise_every_api_metric(tessera: &TestServer) -> Vec<ApiServer> {
    let api = ApiServer::start(config(&tessera.base, Duration::from_secs(30))).await;
    let token = tessera.issue("read").await;
    for _ in 0..2 {
        assert_eq!(api.get("/api/protected", Some(&token)).await.status, StatusCode::OK);
        let r = api.get("/api/protected", Some("tsa_unknown_to_tessera")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(api.get("/api/protected", None).await.status, StatusCode::UNAUTHORIZED);
    let r = api
        .post_json("/api/user/update", Some(&token), r#"{"display_name":"x"}"#)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let broken = ApiServer::start(ResourceServerConfig {
        tessera_url: format!("http://127.0.0.1:{closed_port}"),
        breaker_failures: 1,
        breaker_open: Duration::from_secs(60),
        upstream_timeout: Duration::from_millis(500),
        ..config(&tessera.base, Duration::from_secs(30))
    })
    .await;
    let r = broken.get("/api/protected", Some("tsa_any")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    vec![api, broken]
}

#[actix_rt::test]
async fn every_panel_queries_metrics_and_labels_that_metrics_exposes() {
    let s = TestServer::start(common::EVERY_METRIC_SETTINGS).await;
    common::exercise_every_metric(&s).await;
    // A Tessera whose tokens outlive the API traffic (the one above expires them in a second).
    let tessera = TestServer::start("").await;
    let apis = exercise_every_api_metric(&tessera).await;
    // One recorder per process: either server's /metrics shows Tessera's and the APIs' metrics.
    let m = s.get("/metrics").await;
    for api in apis {
        api.handle.stop(true).await;
    }
    tessera.stop().await;
    s.stop().await;
    let series = exposed(&m.text);

    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let panels = panels(&dashboard);
    assert!(!panels.is_empty());
    let mut charted = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {title:?}: {expr} names no Tessera or API metric"
            );
            let mut labels_seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for name in &names {
                let labels = series
                    .get(name)
                    .unwrap_or_else(|| panic!("panel {title:?} queries {name}, which /metrics does not expose"));
                for (label, values) in labels {
                    labels_seen
                        .entry(label)
                        .or_default()
                        .extend(values.iter().map(String::as_str));
                }
                charted.insert(name.clone());
            }
            for label in grouping_labels(expr) {
                assert!(
                    labels_seen.contains_key(label.as_str()),
                    "panel {title:?} groups by {label:?}, which none of {names:?} carries"
                );
            }
            for (label, op, value) in matchers(expr) {
                let values = labels_seen
                    .get(label.as_str())
                    .unwrap_or_else(|| panic!("panel {title:?} matches on {label:?}, which none of {names:?} carries"));
                for wanted in required_values(&op, &value) {
                    assert!(
                        values.contains(wanted.as_str()),
                        "panel {title:?} matches {label}{op}{value:?}, but /metrics has no {label}={wanted:?} on {names:?}"
                    );
                }
            }
        }
    }
    for defined in tessera::metrics::ALL.iter().chain(tessera_api::metrics::ALL) {
        assert!(
            charted
                .iter()
                .any(|c| c == defined || c.starts_with(&format!("{defined}_"))),
            "no panel charts {defined}"
        );
    }
}
