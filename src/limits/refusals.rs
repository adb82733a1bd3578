//! What a refusal leaves behind. Every one is counted in `tessera_rate_limited_total`; the audit
//! log gets the first of each second for each endpoint and reason, so that a flood costs the log
//! one line a second instead of one per request, while the metric still counts them all.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Limited;
use crate::audit::{Audit, AuditEvent};

pub struct Refusals {
    audit: Audit,
    /// The last second audited per (endpoint, reason): a set bounded by the route patterns
    /// times the reasons, since both are static strings.
    last: Mutex<HashMap<(&'static str, &'static str), u64>>,
}

impl Refusals {
    pub fn new(audit: Audit) -> Self {
        Refusals {
            audit,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Records that a request to `endpoint` (a route pattern) was refused at unix second `now`.
    pub fn record(&self, endpoint: &'static str, limited: &Limited, now: u64) {
        crate::metrics::rate_limited(endpoint, limited.reason);
        let first_this_second = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.insert((endpoint, limited.reason), now) != Some(now)
        };
        if first_this_second {
            self.audit.emit(
                AuditEvent::new("rate_limited", "refused")
                    .target(endpoint)
                    .reason(limited.reason),
            );
        }
    }

    /// The last second a refusal of `endpoint` for `reason` was audited (for tests).
    #[cfg(test)]
    fn audited_at(&self, endpoint: &'static str, reason: &'static str) -> Option<u64> {
        self.last.lock().unwrap().get(&(endpoint, reason)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_audit_line_a_second_per_endpoint_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::start(&crate::audit::AuditTarget::File(path.clone())).unwrap();
        let r = Refusals::new(audit);
        let limited = Limited {
            reason: "address_rate",
            retry_after: Duration::from_secs(1),
        };
        for _ in 0..100 {
            r.record("/oauth/login", &limited, 10);
        }
        r.record("/oauth/authorize", &limited, 10);
        r.record("/oauth/login", &limited, 11);
        assert_eq!(r.audited_at("/oauth/login", "address_rate"), Some(11));
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect();
            if lines.len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let targets: Vec<&str> = lines.iter().map(|l| l["target"].as_str().unwrap()).collect();
        assert_eq!(targets, ["/oauth/login", "/oauth/authorize", "/oauth/login"]);
        assert!(lines
            .iter()
            .all(|l| l["event"] == "rate_limited" && l["reason"] == "address_rate"));
    }
}
