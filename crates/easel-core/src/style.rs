//! Style presets: named prompt templates that a dialect's style switch maps onto (OpenAI's
//! `style`; other dialects' presets add their own tables here). A template wraps the prompt
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

/// OpenAI's `style` (DALL·E 3): `vivid` leans to hyper-real, dramatic images, `natural` to
/// more natural, less hyper-real ones.
pub const OPENAI: &[Style] = &[
    Style {
        name: "vivid",
        prompt: "{prompt}, vivid colors, dramatic lighting, high contrast, highly detailed",
        negative: "dull, muted colors, flat lighting, washed out",
    },
    Style {
        name: "natural",
        prompt: "{prompt}, natural lighting, realistic colors, natural look",
        negative: "oversaturated, hyperreal, dramatic lighting, cartoon",
    },
];

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

    #[test]
    fn presets_wrap_the_prompt_and_extend_the_negative() {
        let vivid = find(OPENAI, "Vivid").unwrap();
        let (p, n) = vivid.apply("a fox", None);
        assert!(p.starts_with("a fox, vivid colors"), "{p}");
        assert_eq!(n.as_deref(), Some(vivid.negative));
        let (_, n) = vivid.apply("a fox", Some("blurry"));
        assert_eq!(n.unwrap(), format!("blurry, {}", vivid.negative));
        assert!(find(OPENAI, "cinematic").is_none());
        assert_eq!(names(OPENAI), ["vivid", "natural"]);
        for s in OPENAI {
            assert!(s.prompt.contains("{prompt}"), "{}", s.name);
        }
    }
}
