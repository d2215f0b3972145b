//! The one text-search rule of the store, for assets and models: a query's words (runs of
//! letters and digits) must each be a word of the row's searchable text or the start of one.
//! The text lives in a `<table>` (`asset_search`, `model_search`) kept by triggers, matched
//! by SQLite's FTS5 (`<table>_fts`) or PostgreSQL's GIN-indexed `doc` tsvector.

use crate::db::Backend;

/// The words of a text query: runs of letters and digits, lowercased, at most 16 of at most
/// 64 characters each.
pub fn query_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| w.chars().take(64).collect::<String>().to_lowercase())
        .collect()
}

/// The condition that `id_col` is a row whose text holds every word of `text`, and the value
/// to bind as `$<mark>`; `None` binds nothing: a text without words matches nothing.
pub fn condition(
    backend: Backend,
    table: &str,
    key: &str,
    id_col: &str,
    text: &str,
    mark: usize,
) -> (String, Option<String>) {
    let words = query_words(text);
    if words.is_empty() {
        return (" AND 1 = 0".into(), None);
    }
    // Each word as a prefix; words hold only letters and digits, so neither syntax can be
    // broken out of.
    let (query, test) = match backend {
        Backend::Sqlite => (
            words
                .iter()
                .map(|w| format!("\"{w}\"*"))
                .collect::<Vec<_>>()
                .join(" "),
            format!("n IN (SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ${mark})"),
        ),
        Backend::Postgres => (
            words
                .iter()
                .map(|w| format!("{w}:*"))
                .collect::<Vec<_>>()
                .join(" & "),
            format!("doc @@ to_tsquery('simple', ${mark})"),
        ),
    };
    (
        format!(" AND {id_col} IN (SELECT {key} FROM {table} WHERE {test})"),
        Some(query),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_letters_and_digits() {
        assert_eq!(
            query_words("Red-fox's \"snow\" *2024*"),
            ["red", "fox", "s", "snow", "2024"]
        );
        assert!(query_words(" -- ! ").is_empty());
        assert_eq!(query_words(&"a ".repeat(40)).len(), 16);
        let (c, b) = condition(Backend::Sqlite, "asset_search", "asset_id", "id", "fox", 3);
        assert!(c.contains("MATCH $3"), "{c}");
        assert_eq!(b.as_deref(), Some("\"fox\"*"));
        let (_, b) = condition(Backend::Postgres, "t", "k", "id", "red fox", 2);
        assert_eq!(b.as_deref(), Some("red:* & fox:*"));
        assert_eq!(condition(Backend::Sqlite, "t", "k", "id", "!!", 2).1, None);
    }
}
