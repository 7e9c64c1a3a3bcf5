//! Specs: a ColonyOS-style FunctionSpec (JSON) parsed once into the typed row the scheduler
//! stores, with every rule checked on the way. This is the one place that knows the spec's keys:
//! [`TOP_KEYS`] and [`CONDITION_KEYS`] list them (and name them in "unknown key" messages), and
//! [`Spec::parse`] reads each into its column. Adding a field means a line in a key list and
//! one in `parse` (plus its column in sql/bootstrap.sql and `submit::insert_row`).
//!
//! `args` and `kwargs` are opaque payload: only their shape (array, object) is checked, and they
//! are never parsed into values, so their nesting is PostgreSQL's business (the top level is
//! read with serde_json's iterative raw-value scanner). The messages name the field and the
//! offending value; batches prefix `spec[i]: `.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Top-level keys, in the order "unknown key" messages list them.
pub const TOP_KEYS: [&str; 10] = [
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
/// Keys of `conditions`.
pub const CONDITION_KEYS: [&str; 7] = [
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
/// Most names in `executornames`, and dependencies of one workflow node.
const MAX_EXECUTOR_NAMES: usize = 100;
const MAX_DEPENDENCIES: usize = 1000;

/// What the scheduler reads from a spec (the spec itself is stored verbatim as well).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spec {
    pub funcname: String,
    pub priority: i32,
    /// Seconds; None = unlimited (ColonyOS writes -1 or 0).
    pub max_wait_time: Option<i32>,
    pub max_exec_time: Option<i32>,
    /// -1 = forever; default 0 = fail on the first execution timeout.
    pub max_retries: i32,
    /// Empty strings are stored as NULL, as ColonyOS treats them as unset.
    pub label: Option<String>,
    pub nodename: Option<String>,
    pub executor_type: String,
    /// None when absent or empty.
    pub executor_names: Option<Vec<String>>,
    pub location: Option<String>,
    pub preferred_location: Option<String>,
    pub locality_wait: Option<i32>,
    pub dependencies: Vec<String>,
}

/// How long a process with a preferred location waits for an executor there when the spec
/// does not say (`conditions.localitywait`), in seconds.
pub const DEFAULT_LOCALITY_WAIT: i32 = 5;

impl Spec {
    /// The preferred location this process waits for, and for how many seconds, if it does:
    /// only location-less, untargeted processes have a soft placement (a hard `locationname`
    /// or `executornames` already decides where they run), and a wait of 0 means none.
    pub fn locality(&self) -> Option<(&str, i32)> {
        let wait = self.locality_wait.unwrap_or(DEFAULT_LOCALITY_WAIT);
        match (
            &self.preferred_location,
            &self.location,
            &self.executor_names,
        ) {
            (Some(preferred), None, None) if wait > 0 => Some((preferred.as_str(), wait)),
            _ => None,
        }
    }

    /// Parses and checks one spec given as JSON text. `colony` is the colony it is submitted to
    /// (`conditions.colonyname` must name it); `in_workflow` allows dependencies.
    pub fn parse(text: &str, colony: &str, in_workflow: bool) -> Result<Spec, String> {
        let top: BTreeMap<String, &RawValue> = match serde_json::from_str(text) {
            Ok(top) => top,
            Err(_) => {
                // Not an object (PostgreSQL already checked it is JSON).
                return Err(format!(
                    "a spec must be a JSON object (got {})",
                    show_text(text)
                ));
            }
        };
        let kind = |key: &str| {
            top.get(key)
                .map(|raw| raw.get().trim_start().as_bytes().first().copied())
        };
        match kind("args") {
            None | Some(Some(b'[' | b'n')) => {}
            _ => {
                return Err(format!(
                    "spec.args must be an array (got {})",
                    show_text(top["args"].get())
                ));
            }
        }
        match kind("kwargs") {
            None | Some(Some(b'{' | b'n')) => {}
            _ => {
                return Err(format!(
                    "spec.kwargs must be an object (got {})",
                    show_text(top["kwargs"].get())
                ));
            }
        }
        let mut fields = Map::new();
        for (key, raw) in &top {
            if key == "args" || key == "kwargs" {
                continue;
            }
            let value: Value = serde_json::from_str(raw.get()).map_err(|e| {
                if e.to_string().contains("recursion limit") {
                    "spec is nested more than 128 levels deep outside args and kwargs".to_owned()
                } else {
                    "spec contains a number out of range".to_owned()
                }
            })?;
            fields.insert(key.clone(), value);
        }
        // Unknown keys are reported before anything else, whatever their position.
        if let Some(key) = top.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key {} in spec (allowed: {})",
                Value::String(key.clone()),
                TOP_KEYS.join(", ")
            ));
        }
        from_fields(&fields, colony, in_workflow)
    }
}

fn from_fields(spec: &Map<String, Value>, colony: &str, in_workflow: bool) -> Result<Spec, String> {
    let funcname = match spec.get("funcname") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("spec.funcname is required and must be a non-empty string".into()),
    };
    name_problem(spec.get("funcname"), "spec.funcname", false)?;
    let priority = int(spec, "priority", "spec.priority", -50000, 50000)?.unwrap_or(0);
    let max_wait_time = int(spec, "maxwaittime", "spec.maxwaittime", -1, MAX_SECONDS)?;
    let max_exec_time = int(spec, "maxexectime", "spec.maxexectime", -1, MAX_SECONDS)?;
    let max_retries = int(spec, "maxretries", "spec.maxretries", -1, 1_000_000)?.unwrap_or(0);
    let label = opt_name(present(spec, "label"), "spec.label")?;
    let nodename = opt_name(present(spec, "nodename"), "spec.nodename")?;

    let Some(conditions) = spec.get("conditions").and_then(Value::as_object) else {
        return Err(
            "spec.conditions is required and must be an object with at least executortype".into(),
        );
    };
    if let Some(key) = conditions
        .keys()
        .find(|k| !CONDITION_KEYS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown key {} in spec.conditions (allowed: {})",
            Value::String(key.clone()),
            CONDITION_KEYS.join(", ")
        ));
    }
    let executor_type = match conditions.get("executortype") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("spec.conditions.executortype is required and must be a string".into()),
    };
    name_problem(
        conditions.get("executortype"),
        "spec.conditions.executortype",
        false,
    )?;
    let executor_names = names(
        present(conditions, "executornames"),
        "spec.conditions.executornames",
        MAX_EXECUTOR_NAMES,
    )?
    .filter(|n| !n.is_empty());
    let dependencies = names(
        present(conditions, "dependencies"),
        "spec.conditions.dependencies",
        MAX_DEPENDENCIES,
    )?
    .unwrap_or_default();
    let location = opt_name(
        present(conditions, "locationname"),
        "spec.conditions.locationname",
    )?;
    let preferred_location = opt_name(
        present(conditions, "preferredlocation"),
        "spec.conditions.preferredlocation",
    )?;
    let locality_wait = int(
        conditions,
        "localitywait",
        "spec.conditions.localitywait",
        0,
        86400,
    )?;
    if !in_workflow && !dependencies.is_empty() {
        return Err("spec.conditions.dependencies is only allowed in submit_workflow()".into());
    }
    match present(conditions, "colonyname") {
        None => {}
        Some(Value::String(c)) if c.is_empty() || c == colony => {}
        Some(Value::String(c)) => {
            return Err(format!(
                "spec.conditions.colonyname is {} but the spec is submitted to colony {}",
                Value::String(c.clone()),
                Value::String(colony.into())
            ));
        }
        Some(_) => return Err("spec.conditions.colonyname must be a string".into()),
    }
    let seconds = |s: Option<i64>| s.filter(|s| *s > 0).map(|s| s as i32);
    Ok(Spec {
        funcname,
        priority: priority as i32,
        max_wait_time: seconds(max_wait_time),
        max_exec_time: seconds(max_exec_time),
        max_retries: max_retries as i32,
        label,
        nodename,
        executor_type,
        executor_names,
        location,
        preferred_location,
        locality_wait: locality_wait.map(|s| s as i32),
        dependencies,
    })
}

fn show(v: &Value) -> String {
    show_text(&v.to_string())
}

/// A JSON text shortened for error messages (as `_show` did in SQL).
fn show_text(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text.to_owned()
    }
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// An integer in [lo, hi]; 1.0 and 1e2 count, as they do for PostgreSQL's numeric.
fn int(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>, String> {
    let Some(v) = present(map, key) else {
        return Ok(None);
    };
    let integral = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    match integral {
        Some(i) if i >= lo && i <= hi => Ok(Some(i)),
        _ => Err(format!(
            "{path} must be an integer between {lo} and {hi} (got {})",
            show(v)
        )),
    }
}

/// A string of at most MAX_NAME bytes, non-empty unless `allow_empty`.
fn name_problem(v: Option<&Value>, path: &str, allow_empty: bool) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(Value::String(s)) if s.len() > MAX_NAME => Err(format!(
            "{path} is too long: {} bytes, at most {MAX_NAME}",
            s.len()
        )),
        Some(Value::String(s)) if s.is_empty() && !allow_empty => {
            Err(format!("{path} must not be empty"))
        }
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("{path} must be a string (got {})", show(other))),
    }
}

/// An optional name; "" means unset.
fn opt_name(v: Option<&Value>, path: &str) -> Result<Option<String>, String> {
    name_problem(v, path, true)?;
    Ok(v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned))
}

fn names(v: Option<&Value>, path: &str, max: usize) -> Result<Option<Vec<String>>, String> {
    match v {
        None => Ok(None),
        Some(Value::Array(items)) if items.len() > max => {
            Err(format!("{path} has {} entries, at most {max}", items.len()))
        }
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                name_problem(Some(item), &format!("{path}[{i}]"), false)?;
                out.push(item.as_str().unwrap_or_default().to_owned());
            }
            Ok(Some(out))
        }
        Some(other) => Err(format!(
            "{path} must be an array of strings (got {})",
            show(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{CONDITION_KEYS, Spec, TOP_KEYS};
    use serde_json::{Value, json};

    fn check(spec: Value) -> Option<String> {
        Spec::parse(&spec.to_string(), "c", false).err()
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
    fn valid_specs_pass_and_parse_into_their_row() {
        assert_eq!(check(base()), None);
        let full = json!({"funcname": "f", "priority": -50000, "maxwaittime": -1, "maxexectime": 0, "maxretries": -1,
            "label": "", "nodename": "n", "args": [1, [2]], "kwargs": {"k": null},
            "conditions": {"executortype": "t", "executornames": ["a", "b"],
            "locationname": "", "preferredlocation": "p", "localitywait": 86400, "colonyname": "c"}});
        let spec = Spec::parse(&full.to_string(), "c", false).unwrap();
        assert_eq!(
            spec,
            Spec {
                funcname: "f".into(),
                priority: -50000,
                max_wait_time: None,
                max_exec_time: None,
                max_retries: -1,
                label: None,
                nodename: Some("n".into()),
                executor_type: "t".into(),
                executor_names: Some(vec!["a".into(), "b".into()]),
                location: None,
                preferred_location: Some("p".into()),
                locality_wait: Some(86400),
                dependencies: vec![],
            }
        );
        assert_eq!(
            check(with(&["priority"], json!(1.0))),
            None,
            "1.0 is an integer, as in numeric"
        );
        assert_eq!(check(with(&["label"], Value::Null)), None, "null is absent");
        assert_eq!(
            Spec::parse(
                &with(&["conditions", "executornames"], json!([])).to_string(),
                "c",
                false
            )
            .unwrap()
            .executor_names,
            None,
            "an empty executornames means any executor"
        );
        let deps = with(&["conditions", "dependencies"], json!(["x"]));
        assert_eq!(
            Spec::parse(&deps.to_string(), "c", true)
                .unwrap()
                .dependencies,
            vec!["x".to_owned()]
        );
    }

    #[test]
    fn every_listed_key_is_accepted() {
        for key in TOP_KEYS {
            let value = match key {
                "funcname" => json!("f"),
                "args" => json!([]),
                "kwargs" => json!({}),
                "conditions" => json!({"executortype": "t"}),
                "label" | "nodename" => json!("x"),
                _ => json!(1),
            };
            assert_eq!(check(with(&[key], value)), None, "{key}");
        }
        for key in CONDITION_KEYS {
            let value = match key {
                "executornames" => json!(["e"]),
                "dependencies" => json!([]),
                "localitywait" => json!(1),
                "colonyname" => json!("c"),
                _ => json!("x"),
            };
            assert_eq!(check(with(&["conditions", key], value)), None, "{key}");
        }
    }

    #[test]
    fn args_and_kwargs_are_opaque_however_deep() {
        let mut deep = json!(1);
        for _ in 0..1000 {
            deep = json!([deep]);
        }
        // serde_json's Value would refuse this depth; the raw scanner does not care.
        let text = format!(
            r#"{{"funcname": "f", "args": {deep}, "conditions": {{"executortype": "t"}}}}"#
        );
        assert_eq!(Spec::parse(&text, "c", false).err(), None);
    }

    #[test]
    fn each_rule_names_the_field() {
        let cases = [
            (json!([1]), "a spec must be a JSON object (got [1])"),
            (with(&["bogus"], json!(1)), "unknown key \"bogus\" in spec"),
            (
                with(&["args"], json!({"a": 1})),
                "spec.args must be an array",
            ),
            (
                with(&["kwargs"], json!([1])),
                "spec.kwargs must be an object",
            ),
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
