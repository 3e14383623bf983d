//! `docs/fsm.md` is generated from the machine (and, after it, the operator's Events); this test fails when
//! the machine's part drifts. The operator's `fsm_docs_page_matches_the_code` checks the whole page.
//!
//! Regenerate with `redis-operator fsm --format doc > docs/fsm.md` (or `REDIS_OPERATOR_BLESS=1 cargo test
//! --lib fsm_docs` in the operator crate).

use std::path::Path;

const DOCS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fsm.md");

#[test]
fn docs_page_matches_the_machine() {
    let expected = redis_fsm::docs_page();
    let actual = std::fs::read_to_string(Path::new(DOCS_PATH)).unwrap_or_default();
    assert!(
        actual.starts_with(&expected),
        "docs/fsm.md is out of date with the phase machine. Regenerate it with \
         `redis-operator fsm --format doc > docs/fsm.md` (or `REDIS_OPERATOR_BLESS=1 cargo test --lib \
         fsm_docs`) and commit the result."
    );
}

#[test]
fn docs_page_embeds_every_rendering() {
    let page = redis_fsm::docs_page();
    for format in ["mermaid", "dot", "markdown"] {
        let rendered = redis_fsm::render(format.parse().unwrap());
        assert!(page.contains(&rendered), "{format} rendering missing");
    }
    assert!(page.contains("```mermaid\n"));
    assert!(page.contains("```dot\n"));
    assert!(page.contains("redis-operator fsm --format doc"));
    assert!(page.contains("do not edit by hand"));
    for input in redis_fsm::Input::ALL {
        assert!(page.contains(&format!("| `{input}` |")), "{input} missing");
    }
}
