//! Kubernetes `$(VAR)` expansion, as the kubelet applies it to `env` values, `command` and `args`.
//!
//! `$(NAME)` is replaced by the value of `NAME` when it is defined and kept verbatim otherwise; `$$` escapes a
//! literal `$`. This mirrors the kubelet's `third_party/forked/golang/expansion` package byte for byte.

use std::collections::HashMap;

/// Expands every `$(NAME)` in `input` using `vars`.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match vars.get(name) {
                            Some(value) => out.push_str(value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Not an expression: keep the `$` and the character after it.
                    let next = rest.chars().next().map_or(1, char::len_utf8);
                    out.push('$');
                    out.push_str(&rest[..next]);
                    next
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [("POD_IP", "127.1.0.1"), ("EMPTY", ""), ("NAME", "redis-0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replaces_defined_variables() {
        assert_eq!(expand("--bind $(POD_IP)", &vars()), "--bind 127.1.0.1");
        assert_eq!(expand("$(NAME).$(POD_IP)", &vars()), "redis-0.127.1.0.1");
        assert_eq!(expand("a$(EMPTY)b", &vars()), "ab");
    }

    #[test]
    fn keeps_undefined_variables_verbatim() {
        assert_eq!(expand("$(MISSING) x", &vars()), "$(MISSING) x");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("$$(POD_IP)", &vars()), "$(POD_IP)");
        assert_eq!(expand("$$$(POD_IP)", &vars()), "$127.1.0.1");
        assert_eq!(expand("cost: $$5", &vars()), "cost: $5");
    }

    #[test]
    fn incomplete_and_plain_dollars_survive() {
        assert_eq!(expand("$(POD_IP", &vars()), "$(POD_IP");
        assert_eq!(expand("$HOME", &vars()), "$HOME");
        assert_eq!(expand("end$", &vars()), "end$");
        assert_eq!(expand("$é", &vars()), "$é");
        assert_eq!(expand("", &vars()), "");
    }
}
