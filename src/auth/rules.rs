//! Whether a live user holds the rules the operator gave it: the whole rule set as `ACL GETUSER` reports it
//! (flags, passwords, commands, keys, channels, selectors), not only its passwords. Redis reports rules in its
//! own spelling (commands reordered, `allkeys` as `~*`, rules a later `+@all` overrides dropped), so both sides
//! are brought to one form first. Pure.

use std::collections::BTreeSet;

use crate::redis::{AclSelector, AclUser};

/// Command, key and channel rules in one spelling: whether all commands are the base, the command rules after
/// the last `+@all`/`-@all` (later rules of the same command replace earlier ones), key and channel patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleSet {
    all_commands: bool,
    commands: BTreeSet<String>,
    keys: BTreeSet<String>,
    channels: BTreeSet<String>,
}

impl RuleSet {
    fn apply(&mut self, word: &str) {
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "+@all" | "allcommands" => {
                self.all_commands = true;
                self.commands.clear();
            }
            "-@all" | "nocommands" => {
                self.all_commands = false;
                self.commands.clear();
            }
            "allkeys" => {
                self.keys.insert("~*".into());
            }
            "resetkeys" => self.keys.clear(),
            "allchannels" => {
                self.channels.insert("&*".into());
            }
            "resetchannels" => self.channels.clear(),
            _ if lower.starts_with(['+', '-']) => {
                let name = &lower[1..];
                self.commands.retain(|c| &c[1..] != name);
                self.commands.insert(lower);
            }
            // Patterns keep their case: `~Secret:*` and `~secret:*` are different keys.
            _ if word.starts_with('~') => {
                self.keys.insert(word.to_string());
            }
            _ if word.starts_with('%') => {
                // `%RW~pattern` is `~pattern`.
                let key = match word.split_once('~') {
                    Some((perms, pattern)) => match perms.to_ascii_uppercase().as_str() {
                        "%RW" | "%WR" => format!("~{pattern}"),
                        perms => format!("{perms}~{pattern}"),
                    },
                    None => word.to_string(),
                };
                self.keys.insert(key);
            }
            _ if word.starts_with('&') => {
                self.channels.insert(word.to_string());
            }
            // Flags and passwords: compared separately.
            _ => {}
        }
    }

    fn of<'a>(words: impl IntoIterator<Item = &'a str>) -> RuleSet {
        let mut rules = RuleSet::default();
        for word in words {
            rules.apply(word);
        }
        rules
    }

    fn observed(commands: &str, keys: &str, channels: &str) -> RuleSet {
        RuleSet::of(
            commands
                .split_whitespace()
                .chain(keys.split_whitespace())
                .chain(channels.split_whitespace()),
        )
    }
}

/// The user-level rules and the selectors (`(...)`, each its own rule set) of `ACL SETUSER` words.
fn desired(words: &[String]) -> (RuleSet, Vec<RuleSet>) {
    let mut root = RuleSet::default();
    let mut selectors = Vec::new();
    let mut open: Option<Vec<String>> = None;
    for word in words {
        if let Some(selector) = open.as_mut() {
            selector.push(word.clone());
        } else if word.starts_with('(') {
            open = Some(vec![word.clone()]);
        } else if word.eq_ignore_ascii_case("clearselectors") {
            selectors.clear();
        } else {
            root.apply(word);
        }
        if open.as_ref().is_some_and(|_| word.ends_with(')')) {
            let text = open.take().unwrap_or_default().join(" ");
            let inner = text.trim_start_matches('(').trim_end_matches(')');
            selectors.push(RuleSet::of(inner.split_whitespace()));
        }
    }
    selectors.sort();
    (root, selectors)
}

fn observed_selectors(selectors: &[AclSelector]) -> Vec<RuleSet> {
    let mut out: Vec<RuleSet> = selectors
        .iter()
        .map(|s| RuleSet::observed(&s.commands, &s.keys, &s.channels))
        .collect();
    out.sort();
    out
}

/// Whether `observed` is the user `words` (the `ACL SETUSER` words the operator sends) make, with exactly
/// `hashes` as passwords: on, not `nopass`, not `skip-sanitize-payload`, and the same commands, keys, channels
/// and selectors.
pub fn holds(words: &[String], hashes: &[String], observed: &AclUser) -> bool {
    let flag = |f: &str| observed.flags.iter().any(|x| x == f);
    let mut passwords = observed.passwords.clone();
    passwords.sort();
    let (root, selectors) = desired(words);
    flag("on")
        && !flag("off")
        && !flag("nopass")
        && !flag("skip-sanitize-payload")
        && passwords == hashes
        && RuleSet::observed(&observed.commands, &observed.keys, &observed.channels) == root
        && observed_selectors(&observed.selectors) == selectors
}

/// How Redis would report the user `words` make (for tests and for reading a rule set back): commands, keys,
/// channels and selectors, in the operator's spelling.
pub fn as_reported(words: &[String], hashes: &[String]) -> AclUser {
    let render = |rules: &RuleSet| {
        let base = if rules.all_commands { "+@all" } else { "-@all" };
        let commands = std::iter::once(base.to_string())
            .chain(rules.commands.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(" ");
        (commands, join(&rules.keys), join(&rules.channels))
    };
    let (root, selectors) = desired(words);
    let (commands, keys, channels) = render(&root);
    AclUser {
        flags: vec!["on".into()],
        passwords: hashes.to_vec(),
        commands,
        keys,
        channels,
        selectors: selectors
            .iter()
            .map(|s| {
                let (commands, keys, channels) = render(s);
                AclSelector {
                    commands,
                    keys,
                    channels,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(ToString::to_string).collect()
    }

    fn user(commands: &str, keys: &str, channels: &str) -> AclUser {
        AclUser {
            flags: vec!["on".into()],
            passwords: vec!["ab".into()],
            commands: commands.into(),
            keys: keys.into(),
            channels: channels.into(),
            selectors: vec![],
        }
    }

    const EXPORTER: &str = "on resetpass #ab resetkeys resetchannels sanitize-payload -@all +ping \
                            +info +slowlog|get";
    const DEFAULT: &str = "on resetpass #ab resetkeys resetchannels sanitize-payload -@all ~* &* \
                           +@all -@admin";

    #[test]
    fn redis_spelling_of_the_same_rules_holds() {
        let hashes = vec!["ab".to_string()];
        // As Redis 7.0 reports them (commands reordered, the rules before `+@all` dropped).
        assert!(holds(
            &words(EXPORTER),
            &hashes,
            &user("-@all +slowlog|get +ping +info", "", "")
        ));
        assert!(holds(
            &words(DEFAULT),
            &hashes,
            &user("+@all -@admin", "~*", "&*")
        ));
        let mut with_flag = user("+@all -@admin", "~*", "&*");
        with_flag.flags.push("sanitize-payload".into());
        assert!(holds(&words(DEFAULT), &hashes, &with_flag));
        assert!(holds(
            &words(EXPORTER),
            &hashes,
            &as_reported(&words(EXPORTER), &hashes)
        ));
    }

    #[test]
    fn every_widening_is_a_difference() {
        let hashes = vec!["ab".to_string()];
        let exporter = words(EXPORTER);
        for widened in [
            user("+@all", "", ""),
            user("-@all +slowlog|get +ping +info +config|get", "", ""),
            user("-@all +slowlog|get +ping +info", "~*", ""),
            user("-@all +slowlog|get +ping +info", "%R~secret:*", ""),
            user("-@all +slowlog|get +ping +info", "", "&*"),
        ] {
            assert!(!holds(&exporter, &hashes, &widened), "{widened:?}");
        }
        let default = words(DEFAULT);
        assert!(!holds(&default, &hashes, &user("+@all", "~*", "&*")));
        let base = user("+@all -@admin", "~*", "&*");
        for flags in [
            vec!["on", "nopass"],
            vec!["off"],
            vec!["on", "skip-sanitize-payload"],
        ] {
            let mut flagged = base.clone();
            flagged.flags = flags.iter().map(ToString::to_string).collect();
            assert!(!holds(&default, &hashes, &flagged), "{flags:?}");
        }
        let mut selector = base.clone();
        selector.selectors.push(AclSelector {
            commands: "-@all +get".into(),
            keys: "~*".into(),
            channels: String::new(),
        });
        assert!(!holds(&default, &hashes, &selector));
        let mut other_password = base;
        other_password.passwords.push("cd".into());
        assert!(!holds(&default, &hashes, &other_password));
    }

    #[test]
    fn selectors_the_rules_ask_for_are_compared_too() {
        let hashes = vec!["ab".to_string()];
        let rules = words("on resetpass #ab resetkeys resetchannels -@all +ping (~cache:* +get)");
        let reported = as_reported(&rules, &hashes);
        assert_eq!(reported.selectors.len(), 1);
        assert!(holds(&rules, &hashes, &reported));
        let mut widened = reported;
        widened.selectors[0].commands = "+@all".into();
        assert!(!holds(&rules, &hashes, &widened));
    }
}
