//! Style presets: named prompt templates that a dialect's style switch maps onto. The type
//! and its rules live here; each dialect keeps its own table (`openai::styles`,
//! `leonardo::styles` in `easel-api`). A template wraps the prompt
//! (`{prompt}` is replaced by the caller's) and adds terms to the negative prompt, so a job's
//! stored input shows exactly what the style did.

/// One preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub name: &'static str,
    /// The prompt, with `{prompt}` where the caller's prompt goes.
    pub prompt: &'static str,
    /// Added to the negative prompt (after the caller's, comma-separated); empty: nothing.
    pub negative: &'static str,
}

/// The preset of `table` named `name` (case-insensitive).
pub fn find(table: &'static [Style], name: &str) -> Option<&'static Style> {
    table
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
}

/// The names of a table, for error messages.
pub fn names(table: &[Style]) -> Vec<&'static str> {
    table.iter().map(|s| s.name).collect()
}

impl Style {
    /// The prompt and negative prompt with the preset applied.
    pub fn apply(&self, prompt: &str, negative: Option<&str>) -> (String, Option<String>) {
        let p = self.prompt.replace("{prompt}", prompt);
        let n = match (negative.filter(|n| !n.trim().is_empty()), self.negative) {
            (None, "") => None,
            (None, extra) => Some(extra.to_string()),
            (Some(n), "") => Some(n.to_string()),
            (Some(n), extra) => Some(format!("{n}, {extra}")),
        };
        (p, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Style] = &[
        Style {
            name: "loud",
            prompt: "{prompt}, loud",
            negative: "quiet",
        },
        Style {
            name: "plain",
            prompt: "{prompt}",
            negative: "",
        },
    ];

    #[test]
    fn presets_wrap_the_prompt_and_extend_the_negative() {
        let loud = find(TABLE, "LOUD").unwrap();
        assert_eq!(
            loud.apply("a fox", None),
            ("a fox, loud".into(), Some("quiet".into()))
        );
        assert_eq!(
            loud.apply("a fox", Some("blurry")),
            ("a fox, loud".into(), Some("blurry, quiet".into()))
        );
        let plain = find(TABLE, " plain ").unwrap();
        assert_eq!(plain.apply("a fox", None), ("a fox".into(), None));
        assert_eq!(plain.apply("a fox", Some(" ")), ("a fox".into(), None));
        assert!(find(TABLE, "other").is_none());
        assert_eq!(names(TABLE), ["loud", "plain"]);
    }
}
