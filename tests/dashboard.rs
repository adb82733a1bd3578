//! The Grafana dashboard in `dashboards/` must chart what Tessera really exposes: every metric
//! a panel queries, and every label it groups by, must appear on a live server's `/metrics`,
//! and every metric Tessera defines must have a panel.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestServer;

const DASHBOARD: &str = include_str!("../dashboards/tessera.json");

/// Series name → label names seen on it, from Prometheus text exposition.
fn exposed(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.find('}').expect("closing brace")];
            labels.extend(
                body.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k.to_owned()),
            );
        }
    }
    series
}

/// Every `tessera_…` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tessera_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
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

#[test]
fn the_expression_parsers_find_names_and_labels() {
    let expr = "sum by (route, le) (rate(tessera_a_bucket[1m])) / sum(tessera_b_total)";
    assert_eq!(metric_names(expr), ["tessera_a_bucket", "tessera_b_total"]);
    assert_eq!(grouping_labels(expr), ["route", "le"]);
    let text = "# HELP x\nx_total{a=\"1\",b=\"2\"} 3\ny 1\n";
    let series = exposed(text);
    assert_eq!(series["x_total"], BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    assert!(series["y"].is_empty());
}

#[actix_rt::test]
async fn every_panel_queries_metrics_and_labels_that_metrics_exposes() {
    let s = TestServer::start(common::EVERY_METRIC_SETTINGS).await;
    common::exercise_every_metric(&s).await;
    let m = s.get("/metrics").await;
    s.stop().await;
    let series = exposed(&m.text);

    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut charted = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {title:?}: {expr} names no Tessera metric");
            let mut labels_seen = BTreeSet::new();
            for name in &names {
                let labels = series
                    .get(name)
                    .unwrap_or_else(|| panic!("panel {title:?} queries {name}, which /metrics does not expose"));
                labels_seen.extend(labels.iter().cloned());
                charted.insert(name.clone());
            }
            for label in grouping_labels(expr) {
                assert!(
                    labels_seen.contains(&label),
                    "panel {title:?} groups by {label:?}, which none of {names:?} carries"
                );
            }
        }
    }
    for defined in tessera::metrics::ALL {
        assert!(
            charted
                .iter()
                .any(|c| c == defined || c.starts_with(&format!("{defined}_"))),
            "no panel charts {defined}"
        );
    }
}
