use serde_json::Value;

/// Mask a field value for an agreement that grants it only `masked`.
///
/// Strings keep a quarter of their characters at each end (at least the first one)
/// and hide the middle with `*`, the way ID numbers and addresses are shown on
/// printed receipts: enough to recognise, not enough to reuse. Numbers and booleans
/// are hidden entirely as `"***"`; null stays null.
pub fn mask_value(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(mask_str(s)),
        _ => Value::String("***".to_owned()),
    }
}

fn mask_str(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n <= 1 {
        return "*".repeat(n);
    }
    let keep = (n / 4).max(1);
    let tail = if n > 3 { keep } else { 0 };
    let mut out = String::with_capacity(s.len());
    out.extend(&chars[..keep]);
    out.extend(std::iter::repeat_n('*', n - keep - tail));
    out.extend(&chars[n - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_keep_their_ends() {
        assert_eq!(
            mask_value(&json!("110101199003074573")),
            json!("1101**********4573")
        );
        assert_eq!(mask_value(&json!("张三")), json!("张*"));
        assert_eq!(mask_value(&json!("王小明")), json!("王**"));
        assert_eq!(
            mask_value(&json!("深圳市福田区福中三路1号")),
            json!("深圳市******路1号")
        );
    }

    #[test]
    fn other_values_are_hidden() {
        assert_eq!(mask_value(&json!(1000)), json!("***"));
        assert_eq!(mask_value(&json!(null)), json!(null));
        assert_eq!(mask_value(&json!("")), json!(""));
    }
}
