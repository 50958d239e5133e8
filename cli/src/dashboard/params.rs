//! Reading what a request asks for: query parameters, page sizes, times,
//! durations and dead-letter filters. Anything malformed is a 400 that says
//! what and why; an unknown parameter too, so a typo is not a silent
//! "everything".

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use xnai_streams::DlqFilter;

use super::error::{ApiError, ApiResult};
use crate::output::{parse_duration, parse_time};

/// The largest page the API returns; larger requests get this many.
pub(crate) const MAX_PAGE: usize = 500;

/// The parameters of a dead-letter filter, in queries and in bodies.
pub(crate) const FILTER_KEYS: [&str; 6] =
    ["stream", "group", "reason", "since", "until", "older_than"];

/// The query parameters of one request.
#[derive(Debug, Default)]
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    /// The pairs of a query, each key one of `allowed`, none twice.
    pub(crate) fn new(pairs: Vec<(String, String)>, allowed: &[&str]) -> ApiResult<Self> {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{key}` (this path takes: {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
            if map.insert(key.clone(), value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "parameter `{key}` is given twice"
                )));
            }
        }
        Ok(Self(map))
    }

    /// A text parameter; an empty one counts as not given.
    pub(crate) fn text(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A text parameter that must be given.
    pub(crate) fn required(&self, key: &str) -> ApiResult<&str> {
        self.text(key)
            .ok_or_else(|| ApiError::bad_request(format!("parameter `{key}` is required")))
    }

    /// A page size: `default` when not given, at least 1, at most
    /// [`MAX_PAGE`] (larger asks are cut down, not refused).
    pub(crate) fn limit(&self, default: usize) -> ApiResult<usize> {
        let Some(text) = self.text("limit") else {
            return Ok(default);
        };
        let n: u64 = text.parse().map_err(|_| {
            ApiError::bad_request(format!("`limit` must be a whole number, not `{text}`"))
        })?;
        if n == 0 {
            return Err(ApiError::bad_request("`limit` must be at least 1"));
        }
        Ok(usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE))
    }

    /// A duration parameter (`30s`, `5m`, `2h`).
    pub(crate) fn duration(&self, key: &str) -> ApiResult<Option<Duration>> {
        self.text(key).map(|t| duration(key, t)).transpose()
    }

    /// A dead-letter filter from the parameters of [`FILTER_KEYS`].
    pub(crate) fn dlq_filter(&self) -> ApiResult<DlqFilter> {
        FilterBody {
            stream: self.text("stream").map(str::to_owned),
            group: self.text("group").map(str::to_owned),
            reason: self.text("reason").map(str::to_owned),
            since: self.text("since").map(str::to_owned),
            until: self.text("until").map(str::to_owned),
            older_than: self.text("older_than").map(str::to_owned),
        }
        .filter()
    }
}

/// A duration as people write it, or a 400 naming the parameter.
pub(crate) fn duration(key: &str, text: &str) -> ApiResult<Duration> {
    parse_duration(text).map_err(|e| ApiError::bad_request(format!("`{key}`: {e}")))
}

fn time(key: &str, text: &str) -> ApiResult<SystemTime> {
    parse_time(text).map_err(|e| ApiError::bad_request(format!("`{key}`: {e}")))
}

/// A dead-letter filter as a request body gives it: every field optional,
/// times as RFC 3339 or a duration ago (`1h`), ages as durations (`7d`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterBody {
    stream: Option<String>,
    group: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    until: Option<String>,
    older_than: Option<String>,
}

impl FilterBody {
    /// The filter, or a 400 for a malformed time or duration.
    pub(crate) fn filter(&self) -> ApiResult<DlqFilter> {
        let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let mut f = DlqFilter::new();
        if let Some(s) = given(&self.stream) {
            f = f.with_stream(s);
        }
        if let Some(g) = given(&self.group) {
            f = f.with_group(g);
        }
        if let Some(r) = given(&self.reason) {
            f = f.with_reason(r);
        }
        if let Some(t) = given(&self.since) {
            f = f.failed_since(time("since", &t)?);
        }
        if let Some(t) = given(&self.until) {
            f = f.failed_before(time("until", &t)?);
        }
        if let Some(d) = given(&self.older_than) {
            f = f.older_than(duration("older_than", &d)?);
        }
        Ok(f)
    }
}

/// A JSON request body, or a 400 that says what is wrong with it. An empty
/// body is `{}`.
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)], allowed: &[&str]) -> ApiResult<Params> {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            allowed,
        )
    }

    #[test]
    fn limits_are_capped_and_checked() {
        let p = |v| params(&[("limit", v)], &["limit"]).unwrap().limit(50);
        assert_eq!(p("10").unwrap(), 10);
        assert_eq!(p("100000").unwrap(), MAX_PAGE);
        assert_eq!(p("99999999999999999999").unwrap_err().status(), 400);
        assert!(p("0").is_err());
        assert!(p("-1").is_err());
        assert!(p("ten").is_err());
        assert_eq!(p("").unwrap(), 50, "empty is not given");
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert!(params(&[("stream", "s")], &["group"]).is_err());
        assert!(params(&[("group", "a"), ("group", "b")], &["group"]).is_err());
        assert!(params(&[("group", "a")], &["group"]).is_ok());
    }

    #[test]
    fn filters_parse_or_say_why() {
        let all = FILTER_KEYS;
        let f = params(&[("reason", "boom"), ("older_than", "7d")], &all)
            .unwrap()
            .dlq_filter()
            .unwrap();
        assert_eq!(f.reason.as_deref(), Some("boom"));
        assert_eq!(f.older_than, Some(Duration::from_secs(7 * 86_400)));
        for (k, v) in [
            ("since", "yesterday"),
            ("until", "soon"),
            ("older_than", "7 fortnights"),
        ] {
            let e = params(&[(k, v)], &all).unwrap().dlq_filter().unwrap_err();
            assert!(format!("{e:?}").contains(k), "{e:?}");
        }
        let body: FilterBody = body(br#"{"since":"1h","group":"g"}"#).unwrap();
        assert_eq!(body.filter().unwrap().group.as_deref(), Some("g"));
        assert!(super::body::<FilterBody>(br#"{"sinse":"1h"}"#).is_err());
        assert!(super::body::<FilterBody>(b"{").is_err());
        assert!(super::body::<FilterBody>(b"  ").is_ok());
    }
}
