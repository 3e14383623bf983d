//! The section anchors of a Markdown page as GitHub renders them (included by the test crates that check links).

/// Every heading's anchor: lower case, spaces to `-`, punctuation but `-` dropped.
pub fn anchors(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| h.trim_start_matches('#').trim().to_lowercase())
        .map(|h| {
            h.chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}
