//! The connections table that `status` prints, and the demo between its steps.

use serde_json::Value;

/// Renders a connections answer as a table.
pub fn connections_table(body: &Value) -> String {
    let list = body.get("connections").unwrap_or(body);
    let mut out = format!(
        "{:<10} {:<15} {:<18} {:>9} {:>6}  {}\n",
        "platform", "status", "account", "scheduled", "paused", "reason"
    );
    for c in list.as_array().into_iter().flatten() {
        let reason = match c.get("reason") {
            Some(r) if !r.is_null() => format!(
                "{} — {}",
                r["code"].as_str().unwrap_or(""),
                r["remedy"].as_str().unwrap_or("")
            ),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<10} {:<15} {:<18} {:>9} {:>6}  {}\n",
            c["platform"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or(""),
            c["account"]["handle"].as_str().unwrap_or("-"),
            c["scheduled"].as_u64().unwrap_or(0),
            c["paused"].as_u64().unwrap_or(0),
            reason
        ));
    }
    out
}
