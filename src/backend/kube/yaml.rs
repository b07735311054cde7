//! A YAML writer for JSON values, for manifests a person reads and `kubectl apply` takes.
//!
//! Block style throughout; a string is written plain when YAML 1.1 and 1.2 both read it back as
//! the same string, and JSON-quoted otherwise (a JSON string is a valid YAML double-quoted
//! scalar), so what is written always reads back as the value it came from.

use serde_json::Value;

/// The documents, each opened by `---`.
pub fn documents(docs: &[Value]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        block(&mut out, d, 0);
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes a mapping or sequence as lines at `depth`; a scalar as one line.
fn block(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                indent(out, depth);
                out.push_str(&scalar_str(k));
                out.push(':');
                value_after_key(out, v, depth);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for v in a {
                indent(out, depth);
                out.push('-');
                match v {
                    // `- key: v` with the mapping's further keys aligned under the first.
                    Value::Object(m) if !m.is_empty() => {
                        out.push(' ');
                        let mut first = true;
                        for (k, v) in m {
                            if !first {
                                indent(out, depth + 2);
                            }
                            first = false;
                            out.push_str(&scalar_str(k));
                            out.push(':');
                            value_after_key(out, v, depth + 2);
                        }
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        block(out, v, depth + 2);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&inline(v));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            indent(out, depth);
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn value_after_key(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(out, v, depth + 2);
        }
        // Sequences under a key are not indented further, as kubectl writes them.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(out, v, depth);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_str(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// `s` plain if that reads back as the same string, else JSON-quoted.
fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // Words YAML 1.1 or 1.2 reads as booleans or null.
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Anything that starts like a number (or .inf/.nan) is quoted, so it stays a string.
    if first.is_ascii_digit() || matches!(first, '-' | '+' | '.') {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_style_and_quotes_what_would_change_meaning() {
        let doc = json!({
            "kind": "Deployment",
            "metadata": {"name": "web-v1", "labels": {"sdnbed.run": "7"}, "annotations": {}},
            "spec": {"replicas": 4, "args": ["serve", "--startup", "1s", "yes", ""],
                     "containers": [{"name": "a", "ports": [{"containerPort": 8080}]}]},
        });
        assert_eq!(
            documents(&[doc]),
            "---\nkind: Deployment\nmetadata:\n  name: web-v1\n  labels:\n    sdnbed.run: \"7\"\n  \
annotations: {}\nspec:\n  replicas: 4\n  args:\n  - serve\n  - \"--startup\"\n  - \"1s\"\n  \
- \"yes\"\n  - \"\"\n  containers:\n  - name: a\n    ports:\n    - containerPort: 8080\n"
        );
    }
}
