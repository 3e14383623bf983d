//! `docs/fsm.md` is generated from the machine; this test fails when it drifts.
//!
//! Regenerate with `REDIS_OPERATOR_BLESS=1 cargo test -p redis-fsm --test docs_drift`
//! (or `redis-operator fsm --format doc > docs/fsm.md`).

use std::path::Path;

const DOCS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fsm.md");

#[test]
fn docs_page_matches_the_machine() {
    let expected = redis_fsm::docs_page();
    let path = Path::new(DOCS_PATH);
    if std::env::var("REDIS_OPERATOR_BLESS").as_deref() == Ok("1") {
        std::fs::write(path, &expected).expect("write docs/fsm.md");
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/fsm.md is out of date with the phase machine. Regenerate it with \
         `REDIS_OPERATOR_BLESS=1 cargo test -p redis-fsm --test docs_drift` \
         (or `redis-operator fsm --format doc > docs/fsm.md`) and commit the result."
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
