//! Spec validation: everything `submit()` checks about one ColonyOS-style FunctionSpec except the
//! shape of `args` and `kwargs` (opaque payload, checked in SQL and never parsed here).
//!
//! Compiled rather than SQL because a single submit spent most of its time rebuilding the
//! expression state of the SQL version (one large CASE of inlined checks) at every execution.
//! The messages name the field and the offending value; SQL prefixes `spec[i]: ` for batches.

use pgrx::prelude::*;
use serde_json::{Map, Value};

const TOP_KEYS: [&str; 10] = [
    "funcname",
    "args",
    "kwargs",
    "priority",
    "maxwaittime",
    "maxexectime",
    "maxretries",
    "label",
    "nodename",
    "conditions",
];
const CONDITION_KEYS: [&str; 7] = [
    "executortype",
    "executornames",
    "locationname",
    "dependencies",
    "preferredlocation",
    "localitywait",
    "colonyname",
];
/// Longest name (executor type, location, funcname, label, ...), in bytes.
const MAX_NAME: usize = 255;
/// 10 years: long enough for anything real, small enough for timestamptz arithmetic.
const MAX_SECONDS: i64 = 315_360_000;

/// What is wrong with one spec (given as JSON text without `args` and `kwargs`), or NULL.
#[pg_extern(immutable, parallel_safe)]
fn _spec_problem(spec: &str, colony: &str, in_workflow: bool) -> Option<String> {
    match serde_json::from_str::<Value>(spec) {
        Ok(value) => problem(&value, colony, in_workflow),
        // PostgreSQL already parsed it, so only serde's own limits can fail here.
        Err(e) if e.to_string().contains("recursion limit") => {
            Some("spec is nested more than 128 levels deep outside args and kwargs".into())
        }
        Err(_) => Some("spec contains a number out of range".into()),
    }
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn unknown_key(map: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    map.keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| Value::String(k.clone()).to_string())
}

/// An integer in [lo, hi]; 1.0 and 1e2 count, as they do for PostgreSQL's numeric.
fn int_problem(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    lo: i64,
    hi: i64,
) -> Option<String> {
    let v = present(map, key)?;
    let integral = match v {
        Value::Number(n) => n
            .as_i64()
            .map(|i| i as f64)
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0)),
        _ => None,
    };
    match integral {
        Some(i) if i >= lo as f64 && i <= hi as f64 => None,
        _ => Some(format!(
            "{path} must be an integer between {lo} and {hi} (got {})",
            show(v)
        )),
    }
}

/// A string of at most MAX_NAME bytes, non-empty unless `allow_empty`.
fn name_problem(v: Option<&Value>, path: &str, allow_empty: bool) -> Option<String> {
    match v? {
        Value::String(s) if s.len() > MAX_NAME => Some(format!(
            "{path} is too long: {} bytes, at most {MAX_NAME}",
            s.len()
        )),
        Value::String(s) if s.is_empty() && !allow_empty => {
            Some(format!("{path} must not be empty"))
        }
        Value::String(_) => None,
        other => Some(format!("{path} must be a string (got {})", show(other))),
    }
}

fn names_problem(v: Option<&Value>, path: &str, max: usize) -> Option<String> {
    match v? {
        Value::Array(items) if items.len() > max => {
            Some(format!("{path} has {} entries, at most {max}", items.len()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| name_problem(Some(item), &format!("{path}[{i}]"), false)),
        other => Some(format!(
            "{path} must be an array of strings (got {})",
            show(other)
        )),
    }
}

pub fn problem(spec: &Value, colony: &str, in_workflow: bool) -> Option<String> {
    let Some(spec) = spec.as_object() else {
        return Some(format!("a spec must be a JSON object (got {})", show(spec)));
    };
    if let Some(key) = unknown_key(spec, &TOP_KEYS) {
        return Some(format!(
            "unknown key {key} in spec (allowed: funcname, args, kwargs, priority, maxwaittime, maxexectime, maxretries, label, nodename, conditions)"
        ));
    }
    match spec.get("funcname") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Some("spec.funcname is required and must be a non-empty string".into()),
    }
    let checks = [
        name_problem(spec.get("funcname"), "spec.funcname", false),
        int_problem(spec, "priority", "spec.priority", -50000, 50000),
        int_problem(spec, "maxwaittime", "spec.maxwaittime", -1, MAX_SECONDS),
        int_problem(spec, "maxexectime", "spec.maxexectime", -1, MAX_SECONDS),
        int_problem(spec, "maxretries", "spec.maxretries", -1, 1_000_000),
        name_problem(present(spec, "label"), "spec.label", true),
        name_problem(present(spec, "nodename"), "spec.nodename", true),
    ];
    if let Some(p) = checks.into_iter().flatten().next() {
        return Some(p);
    }
    let Some(conditions) = spec.get("conditions").and_then(Value::as_object) else {
        return Some(
            "spec.conditions is required and must be an object with at least executortype".into(),
        );
    };
    if let Some(key) = unknown_key(conditions, &CONDITION_KEYS) {
        return Some(format!(
            "unknown key {key} in spec.conditions (allowed: executortype, executornames, locationname, dependencies, preferredlocation, localitywait, colonyname)"
        ));
    }
    if !matches!(conditions.get("executortype"), Some(Value::String(_))) {
        return Some("spec.conditions.executortype is required and must be a string".into());
    }
    let checks = [
        name_problem(
            conditions.get("executortype"),
            "spec.conditions.executortype",
            false,
        ),
        names_problem(
            present(conditions, "executornames"),
            "spec.conditions.executornames",
            100,
        ),
        names_problem(
            present(conditions, "dependencies"),
            "spec.conditions.dependencies",
            1000,
        ),
        name_problem(
            present(conditions, "locationname"),
            "spec.conditions.locationname",
            true,
        ),
        name_problem(
            present(conditions, "preferredlocation"),
            "spec.conditions.preferredlocation",
            true,
        ),
        int_problem(
            conditions,
            "localitywait",
            "spec.conditions.localitywait",
            0,
            86400,
        ),
    ];
    if let Some(p) = checks.into_iter().flatten().next() {
        return Some(p);
    }
    if !in_workflow
        && present(conditions, "dependencies")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
    {
        return Some("spec.conditions.dependencies is only allowed in submit_workflow()".into());
    }
    match present(conditions, "colonyname") {
        None => None,
        Some(Value::String(c)) if c.is_empty() || c == colony => None,
        Some(Value::String(c)) => Some(format!(
            "spec.conditions.colonyname is {} but the spec is submitted to colony {}",
            Value::String(c.clone()),
            Value::String(colony.into())
        )),
        Some(_) => Some("spec.conditions.colonyname must be a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::problem;
    use serde_json::{Value, json};

    fn check(spec: Value) -> Option<String> {
        problem(&spec, "c", false)
    }

    fn base() -> Value {
        json!({"funcname": "f", "conditions": {"executortype": "t"}})
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut s = base();
        let mut target = &mut s;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target[path[path.len() - 1]] = value;
        s
    }

    #[test]
    fn valid_specs_pass() {
        assert_eq!(check(base()), None);
        let full = json!({"funcname": "f", "priority": -50000, "maxwaittime": -1, "maxexectime": 0, "maxretries": -1,
            "label": "", "nodename": "n", "conditions": {"executortype": "t", "executornames": ["a", "b"],
            "locationname": "", "preferredlocation": "p", "localitywait": 86400, "colonyname": "c"}});
        assert_eq!(check(full), None);
        assert_eq!(
            check(with(&["priority"], json!(1.0))),
            None,
            "1.0 is an integer, as in numeric"
        );
        assert_eq!(check(with(&["label"], Value::Null)), None, "null is absent");
        assert_eq!(
            problem(
                &with(&["conditions", "dependencies"], json!(["x"])),
                "c",
                true
            ),
            None
        );
    }

    #[test]
    fn each_rule_names_the_field() {
        let cases = [
            (json!([1]), "a spec must be a JSON object (got [1])"),
            (with(&["bogus"], json!(1)), "unknown key \"bogus\" in spec"),
            (
                json!({"conditions": {"executortype": "t"}}),
                "spec.funcname is required",
            ),
            (with(&["funcname"], json!("")), "spec.funcname is required"),
            (
                with(&["priority"], json!("high")),
                "spec.priority must be an integer between -50000 and 50000 (got \"high\")",
            ),
            (
                with(&["priority"], json!(1.5)),
                "spec.priority must be an integer",
            ),
            (
                with(&["priority"], json!(50001)),
                "spec.priority must be an integer",
            ),
            (
                with(&["maxretries"], json!(true)),
                "spec.maxretries must be an integer",
            ),
            (
                with(&["maxwaittime"], json!(1e12)),
                "spec.maxwaittime must be an integer",
            ),
            (
                with(&["label"], json!(["x"])),
                "spec.label must be a string",
            ),
            (
                with(&["conditions"], json!("t")),
                "spec.conditions is required",
            ),
            (
                with(&["conditions", "cpu"], json!("1m")),
                "unknown key \"cpu\" in spec.conditions",
            ),
            (
                with(&["conditions", "executortype"], Value::Null),
                "spec.conditions.executortype is required",
            ),
            (
                with(&["conditions", "executortype"], json!("x".repeat(256))),
                "spec.conditions.executortype is too long: 256 bytes",
            ),
            (
                with(&["conditions", "executornames"], json!("e")),
                "spec.conditions.executornames must be an array of strings",
            ),
            (
                with(&["conditions", "executornames"], json!(["ok", 1])),
                "spec.conditions.executornames[1] must be a string (got 1)",
            ),
            (
                with(&["conditions", "executornames"], json!([""])),
                "spec.conditions.executornames[0] must not be empty",
            ),
            (
                with(&["conditions", "localitywait"], json!(-1)),
                "spec.conditions.localitywait must be an integer between 0 and 86400",
            ),
            (
                with(&["conditions", "dependencies"], json!(["a"])),
                "only allowed in submit_workflow()",
            ),
            (
                with(&["conditions", "colonyname"], json!("d")),
                "spec.conditions.colonyname is \"d\" but the spec is submitted to colony \"c\"",
            ),
        ];
        for (spec, expected) in cases {
            let got = check(spec.clone()).unwrap_or_default();
            assert!(
                got.contains(expected),
                "{spec}: {got:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let got = check(with(&["priority"], json!("y".repeat(500)))).unwrap();
        assert!(got.len() < 150 && got.ends_with("...)"), "{got}");
    }
}
