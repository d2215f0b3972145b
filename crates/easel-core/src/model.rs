//! The models registry: what can be run, by which provider, with which defaults and limits.
//! Every dialect's model selector resolves through a model's id, name or aliases.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::asset::Privacy;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::generate::LoraRef;
use crate::time::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
}

/// Family ids that are not engine families (those are in `easel_diffusion::family`).
pub mod family {
    /// A model whose family nobody determined (remote models, hand registrations).
    pub const UNKNOWN: &str = "unknown";
    /// A LoRA adapter found in the models folder.
    pub const LORA: &str = "lora";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Unique, URL-safe name (`sd15`, `my-lora`).
    pub name: String,
    /// Other names the model answers to (a dialect's model ids).
    pub aliases: Vec<String>,
    pub family: String,
    /// Tasks the model can do (`txt2img`, `img2img`, …).
    pub tasks: Vec<String>,
    /// Local path or hub repository id.
    pub source: Option<String>,
    /// Who runs it: Easel's kinds are `local`, `openai`, `replicate` and `easel`; other
    /// names (a registry's provider types such as `fal_standard`) are stored as given.
    pub provider: String,
    #[schema(value_type = Object)]
    pub provider_config: serde_json::Value,
    /// What the provider can do, as a registry names it (free strings); `null`: not said.
    pub provider_capabilities: Option<Vec<String>>,
    pub fallback_provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<serde_json::Value>,
    pub fallback_provider_capabilities: Option<Vec<String>>,
    pub defaults: ModelDefaults,
    pub limits: ModelLimits,
    /// An icon for UIs (a URL or a name).
    pub icon: Option<String>,
    /// The tools a UI offers the model in (`BASE_GENERATION`, …; free strings).
    pub tool_types: Vec<String>,
    pub recommended: bool,
    pub beta: bool,
    pub tags: Vec<String>,
    /// Set: a composition — the id of the server's model it runs, with `loras` and its own
    /// `defaults` and `limits` on top (see [`ModelSpec::base_model`]).
    #[serde(default)]
    pub base_model: Option<String>,
    /// The LoRAs a composition applies before a request's own.
    #[serde(default)]
    pub loras: Vec<LoraRef>,
    /// Markdown.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub short_description: Option<String>,
    /// Asset ids that show what the model makes, in order (the owner's assets).
    #[serde(default)]
    pub examples: Vec<String>,
    /// The user who owns the model; `None`: a model of the server (admins write those).
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Who else sees it ([`Model::visible_to`]).
    #[serde(default)]
    pub privacy: Privacy,
    /// Registered by the scan of `<data-dir>/models/` (rescans update it).
    pub discovered: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// The provider kinds this server runs. A model may name another provider (a registry's
/// provider type, such as `fal_standard`); it is stored as given, and runs only where a
/// provider of that name exists.
pub const PROVIDERS: &[&str] = &["local", "openai", "replicate", "easel"];

/// The base URL a remote provider of `kind` reaches with `config`: its http(s) `base_url`,
/// or without one the hosted service (`openai`, `replicate`; `easel` has none). `None`: the
/// config cannot reach anything (no default, or a `base_url` that is not http(s)).
pub fn provider_base_url<'a>(kind: &str, config: &'a serde_json::Value) -> Option<&'a str> {
    match config.get("base_url") {
        None | Some(serde_json::Value::Null) => match kind {
            "openai" => Some("https://api.openai.com/v1"),
            "replicate" => Some("https://api.replicate.com"),
            _ => None,
        },
        Some(u) => u
            .as_str()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://")),
    }
}

/// Whether a provider (as a job records it: `replicate`, `local (fallback)`) applies
/// perturbed-attention guidance (`pag_guidance`): a Replicate-style upstream passes it on; the
/// local engine applies it when the model's family has PAG (`family_pag`, from the engine's
/// family table: Sana).
pub fn provider_applies_pag(provider: &str, family_pag: bool) -> bool {
    match provider.split_whitespace().next() {
        Some("replicate") => true,
        Some("local") => family_pag,
        _ => false,
    }
}

/// Words that make a provider config key one that would hold a secret (`api_key`,
/// `fal_key`, `accessToken`, `headers.Authorization`, `x-api-key`, …): refused at any depth,
/// whatever the case. Keys come from the environment, named by a key whose last word is
/// `env` (`api_key_env`).
pub const SECRET_WORDS: &[&str] = &[
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "credential",
    "credentials",
    "bearer",
    "cookie",
];

/// Whether a config key names a secret (see [`SECRET_WORDS`]).
pub fn is_secret_key(name: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    words.extend((!word.is_empty()).then_some(word));
    if words.last().is_some_and(|w| w == "env") {
        return false;
    }
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// The path (`headers.Authorization`, `auth[0].token`) of the first key in `config` that
/// names a secret, at any depth.
pub fn find_secret(config: &serde_json::Value) -> Option<String> {
    match config {
        serde_json::Value::Object(o) => o.iter().find_map(|(k, v)| {
            if is_secret_key(k) {
                Some(k.clone())
            } else {
                find_secret(v).map(|rest| {
                    format!("{k}{}{rest}", if rest.starts_with('[') { "" } else { "." })
                })
            }
        }),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_secret(v).map(|rest| format!("[{i}].{rest}"))),
        _ => None,
    }
}

/// The longest `icon` (a URL, a name, or a small `data:` URL).
pub const MAX_ICON_LEN: usize = 65_536;

/// Fields a client sets when creating a model; also the shape of a full update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default = "unknown_family")]
    pub family: String,
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "local_provider")]
    pub provider: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub provider_config: serde_json::Value,
    #[serde(default)]
    pub provider_capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub fallback_provider: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<serde_json::Value>,
    #[serde(default)]
    pub fallback_provider_capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub defaults: ModelDefaults,
    #[serde(default)]
    pub limits: ModelLimits,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub tool_types: Vec<String>,
    #[serde(default)]
    pub recommended: bool,
    #[serde(default)]
    pub beta: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The model this one runs, by id, name or alias: set, the model is a *composition* —
    /// its base's weights and provider with `loras` applied first and its own `defaults`
    /// and `limits` over the base's. A composition takes `family` and `tasks` from its base
    /// and sets no `source` or provider of its own. A composition of a composition runs
    /// the first one's base with both LoRA lists. Stored as the base's id.
    #[serde(default)]
    pub base_model: Option<String>,
    /// LoRAs (server's models tagged `lora`) a composition applies, at most 8.
    #[serde(default)]
    pub loras: Vec<LoraRef>,
    /// Markdown, at most 20,000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// At most 300 characters.
    #[serde(default)]
    pub short_description: Option<String>,
    /// Asset ids of the owner's images that show the model, in order (at most 50).
    #[serde(default)]
    pub examples: Vec<String>,
    /// Who else sees the model. Written to its own column, not the spec; absent: as it is
    /// (a new model: `private`).
    #[serde(default, skip_serializing)]
    pub privacy: Option<Privacy>,
}

fn unknown_family() -> String {
    family::UNKNOWN.to_string()
}
fn local_provider() -> String {
    "local".to_string()
}
fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A partial update: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub aliases: Option<Vec<String>>,
    pub family: Option<String>,
    pub tasks: Option<Vec<String>>,
    pub source: Option<String>,
    pub provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub provider_config: Option<serde_json::Value>,
    pub provider_capabilities: Option<Vec<String>>,
    pub fallback_provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub fallback_provider_config: Option<serde_json::Value>,
    pub fallback_provider_capabilities: Option<Vec<String>>,
    pub defaults: Option<ModelDefaults>,
    pub limits: Option<ModelLimits>,
    pub icon: Option<String>,
    pub tool_types: Option<Vec<String>>,
    pub recommended: Option<bool>,
    pub beta: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub base_model: Option<String>,
    pub loras: Option<Vec<LoraRef>>,
    /// `""` clears it.
    pub description: Option<String>,
    /// `""` clears it.
    pub short_description: Option<String>,
    pub examples: Option<Vec<String>>,
    pub privacy: Option<Privacy>,
}

impl ModelSpec {
    /// A spec with `name` and every other field at its default (as a body of just
    /// `{"name": …}` reads).
    pub fn new(name: impl Into<String>) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            aliases: vec![],
            family: unknown_family(),
            tasks: vec![],
            source: None,
            provider: local_provider(),
            provider_config: empty_object(),
            provider_capabilities: None,
            fallback_provider: None,
            fallback_provider_config: None,
            fallback_provider_capabilities: None,
            defaults: ModelDefaults::default(),
            limits: ModelLimits::default(),
            icon: None,
            tool_types: vec![],
            recommended: false,
            beta: false,
            tags: vec![],
            base_model: None,
            loras: vec![],
            description: None,
            short_description: None,
            examples: vec![],
            privacy: None,
        }
    }

    /// Checks a model of the server: its `name` is a registry name ([`check_name`]).
    pub fn validate(&self) -> Result<()> {
        self.validate_as(false)
    }

    /// Checks a model, owned by a user or not. A user's model is a composition
    /// (`base_model` set) or a LoRA they uploaded ([`ModelSpec::user_lora`]: its `source` a
    /// blob of the store, which only an upload sets), without aliases, and its `name` is a
    /// title (1–200 characters, not blank, no control characters): it is found by its id,
    /// the name is not unique. A model of the server never names a blob.
    pub fn validate_as(&self, owned: bool) -> Result<()> {
        if owned {
            check_title("name", &self.name)?;
            if !self.aliases.is_empty() {
                return Err(Error::invalid(
                    "aliases",
                    "a user's model has no aliases: it is named by its id",
                ));
            }
            if self.blob_key().is_some() {
                self.check_user_lora()?;
            } else if self.base_model.is_none() {
                return Err(Error::invalid(
                    "base_model",
                    "a user's model runs a model of the server: name it in `base_model`",
                ));
            }
        } else {
            check_name("name", &self.name)?;
            if self.blob_key().is_some() {
                return Err(Error::invalid(
                    "source",
                    "a model of the server has its files in a models folder",
                ));
            }
        }
        self.check_composition()?;
        for (field, text, max) in [
            ("description", &self.description, MAX_DESCRIPTION),
            ("short_description", &self.short_description, 300),
        ] {
            if text.as_ref().is_some_and(|t| t.chars().count() > max) {
                return Err(Error::invalid(
                    field,
                    format!("must be at most {max} characters"),
                ));
            }
        }
        if self.examples.len() > MAX_EXAMPLES {
            return Err(Error::invalid(
                "examples",
                format!("at most {MAX_EXAMPLES} assets"),
            ));
        }
        for (i, a) in self.aliases.iter().enumerate() {
            if a.is_empty() || a.len() > 200 || a.chars().any(char::is_whitespace) {
                return Err(Error::invalid(
                    format!("aliases[{i}]"),
                    "must be 1 to 200 characters without spaces",
                ));
            }
        }
        for (field, p) in [
            ("provider", Some(&self.provider)),
            ("fallback_provider", self.fallback_provider.as_ref()),
        ] {
            if let Some(p) = p {
                if p.is_empty()
                    || p.len() > 100
                    || p.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "must be 1 to 100 characters without spaces (this server runs {})",
                            PROVIDERS.join(", ")
                        ),
                    ));
                }
            }
        }
        if !self.provider_config.is_object() {
            return Err(Error::invalid("provider_config", "must be an object"));
        }
        for (field, config) in [
            ("provider_config", Some(&self.provider_config)),
            (
                "fallback_provider_config",
                self.fallback_provider_config.as_ref(),
            ),
        ] {
            if let Some(secret) = config.and_then(find_secret) {
                return Err(Error::invalid(
                    format!("{field}.{secret}"),
                    "keys are not stored in the registry (it is readable by every caller \
                     of the models API): put the key in an environment variable of the \
                     server and name it in `api_key_env`",
                ));
            }
        }
        if self.fallback_provider.is_some()
            && self.fallback_provider.as_deref() == Some(&self.provider)
            && self.fallback_provider_config.as_ref() == Some(&self.provider_config)
        {
            return Err(Error::invalid(
                "fallback_provider",
                "is the same provider with the same config as `provider`",
            ));
        }
        if self
            .fallback_provider_config
            .as_ref()
            .is_some_and(|c| !c.is_object())
        {
            return Err(Error::invalid(
                "fallback_provider_config",
                "must be an object or null",
            ));
        }
        for (field, list) in [
            (
                "provider_capabilities",
                self.provider_capabilities.as_deref(),
            ),
            (
                "fallback_provider_capabilities",
                self.fallback_provider_capabilities.as_deref(),
            ),
            ("tool_types", Some(self.tool_types.as_slice())),
        ] {
            for (i, v) in list.unwrap_or_default().iter().enumerate() {
                if v.is_empty() || v.len() > 100 || v.chars().any(char::is_control) {
                    return Err(Error::invalid(
                        format!("{field}[{i}]"),
                        "must be 1 to 100 characters",
                    ));
                }
            }
        }
        if self.icon.as_ref().is_some_and(|i| i.len() > MAX_ICON_LEN) {
            return Err(Error::invalid(
                "icon",
                format!("must be at most {MAX_ICON_LEN} characters"),
            ));
        }
        let l = &self.limits;
        for (field, v) in [
            ("limits.max_width", l.max_width.map(u64::from)),
            ("limits.max_height", l.max_height.map(u64::from)),
            ("limits.max_pixels", l.max_pixels),
            ("limits.max_steps", l.max_steps.map(u64::from)),
            ("limits.max_count", l.max_count.map(u64::from)),
        ] {
            if v == Some(0) {
                return Err(Error::invalid(field, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// A user's LoRA as its upload registers it: the file the blob `key` holds (`source`
    /// `blob:<key>`), family `lora`, tagged `lora`, private.
    pub fn user_lora(name: impl Into<String>, key: &str) -> ModelSpec {
        ModelSpec {
            family: family::LORA.into(),
            tags: vec!["lora".into()],
            source: Some(format!("{BLOB_SOURCE}{key}")),
            privacy: Some(Privacy::Private),
            ..ModelSpec::new(name)
        }
    }

    /// The blob of the store that holds the model's file (a user's LoRA), if it is one.
    pub fn blob_key(&self) -> Option<&str> {
        blob_key_of(self.source.as_deref())
    }

    /// A user's LoRA keeps the shape its upload gave it: its family, its `lora` tag, the
    /// local provider with nothing of its own, no base; each error names the field.
    fn check_user_lora(&self) -> Result<()> {
        let shape = [
            ("base_model", self.base_model.is_some()),
            ("family", self.family != family::LORA),
            ("tags", !self.tags.iter().any(|t| t == "lora")),
            ("loras", !self.loras.is_empty()),
            ("tasks", !self.tasks.is_empty()),
        ];
        let wrong = shape.into_iter().chain(self.own_provider());
        match wrong.into_iter().find(|(_, w)| *w) {
            Some((field, _)) => Err(Error::invalid(
                field,
                "a LoRA you uploaded keeps the family `lora`, its `lora` tag and its file, \
                 and has no base, tasks or provider of its own",
            )),
            None => Ok(()),
        }
    }

    /// The provider fields, each with whether the spec sets one of its own (a provider
    /// other than `local`, a config that is not `{}`, anything else given).
    fn own_provider(&self) -> [(&'static str, bool); 6] {
        [
            ("provider", self.provider != "local"),
            (
                "provider_config",
                self.provider_config
                    .as_object()
                    .is_none_or(|o| !o.is_empty()),
            ),
            (
                "provider_capabilities",
                self.provider_capabilities.is_some(),
            ),
            ("fallback_provider", self.fallback_provider.is_some()),
            (
                "fallback_provider_config",
                self.fallback_provider_config.is_some(),
            ),
            (
                "fallback_provider_capabilities",
                self.fallback_provider_capabilities.is_some(),
            ),
        ]
    }

    /// A composition's own rules: nothing of a provider's (it runs its base's), at most 8
    /// LoRAs with scales from -4 to 4; LoRAs only on a composition.
    fn check_composition(&self) -> Result<()> {
        if self.base_model.is_none() {
            if !self.loras.is_empty() {
                return Err(Error::invalid(
                    "loras",
                    "only a composition (a model with `base_model`) applies LoRAs",
                ));
            }
            return Ok(());
        }
        if self.base_model.as_deref().is_some_and(str::is_empty) {
            return Err(Error::invalid("base_model", "must not be empty"));
        }
        let own = std::iter::once(("source", self.source.is_some())).chain(self.own_provider());
        if let Some((field, _)) = own.into_iter().find(|(_, set)| *set) {
            return Err(Error::invalid(
                field,
                "a composition (a model with `base_model`) runs on its base's weights and \
                 provider: leave it out",
            ));
        }
        if self.loras.len() > 8 {
            return Err(Error::invalid("loras", "at most 8 LoRAs"));
        }
        for (i, l) in self.loras.iter().enumerate() {
            if l.model.trim().is_empty() {
                return Err(Error::invalid(format!("loras[{i}].model"), "required"));
            }
            if !(-4.0..=4.0).contains(&l.scale) {
                return Err(Error::invalid(
                    format!("loras[{i}].scale"),
                    "must be between -4 and 4",
                ));
            }
        }
        Ok(())
    }

    /// Apply a patch, producing the spec to validate and store.
    pub fn patched(mut self, p: ModelPatch) -> ModelSpec {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = p.$f { self.$f = v; } )* };
        }
        set!(
            name,
            aliases,
            family,
            tasks,
            provider,
            provider_config,
            defaults,
            limits,
            tool_types,
            recommended,
            beta,
            tags,
            loras,
            examples
        );
        macro_rules! set_some {
            ($($f:ident),*) => { $( if p.$f.is_some() { self.$f = p.$f; } )* };
        }
        set_some!(
            source,
            provider_capabilities,
            fallback_provider,
            fallback_provider_config,
            fallback_provider_capabilities,
            icon,
            base_model,
            privacy
        );
        macro_rules! set_text {
            ($($f:ident),*) => { $( if let Some(v) = p.$f { self.$f = (!v.is_empty()).then_some(v); } )* };
        }
        set_text!(description, short_description);
        self
    }
}

/// Keys of a provider config that say where something is on this server's disk or
/// network (`support_dir`, an upstream's `base_url`): shown to admins only.
pub const LOCATION_KEYS: &[&str] = &["support_dir", "base_url"];

/// What a model row holds besides its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub id: String,
    pub owner_id: Option<String>,
    pub privacy: Privacy,
    pub discovered: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Model {
    /// The model a stored spec and its row make (the spec's `privacy` is ignored: the
    /// record's is the model's).
    pub fn from_spec(spec: ModelSpec, r: ModelRecord) -> Model {
        Model {
            id: r.id,
            name: spec.name,
            aliases: spec.aliases,
            family: spec.family,
            tasks: spec.tasks,
            source: spec.source,
            provider: spec.provider,
            provider_config: spec.provider_config,
            provider_capabilities: spec.provider_capabilities,
            fallback_provider: spec.fallback_provider,
            fallback_provider_config: spec.fallback_provider_config,
            fallback_provider_capabilities: spec.fallback_provider_capabilities,
            defaults: spec.defaults,
            limits: spec.limits,
            icon: spec.icon,
            tool_types: spec.tool_types,
            recommended: spec.recommended,
            beta: spec.beta,
            tags: spec.tags,
            base_model: spec.base_model,
            loras: spec.loras,
            description: spec.description,
            short_description: spec.short_description,
            examples: spec.examples,
            owner_id: r.owner_id,
            privacy: r.privacy,
            discovered: r.discovered,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    /// The blob of the store that holds the model's file (a user's LoRA), if it is one.
    pub fn blob_key(&self) -> Option<&str> {
        blob_key_of(self.source.as_deref())
    }

    /// A LoRA (a model tagged `lora`: the server's, or one a user uploaded): applied through
    /// `loras`, never run as a model. A composition is never one.
    pub fn is_lora(&self) -> bool {
        self.base_model.is_none() && self.tags.iter().any(|t| t == "lora")
    }

    /// The model as a caller who is not an admin sees it: without `source` and without the
    /// provider configs' locations (`LOCATION_KEYS`), which would tell where this server keeps
    /// files and which internal hosts it reaches.
    pub fn without_locations(mut self) -> Model {
        self.source = None;
        let strip = |c: &mut serde_json::Value| {
            if let Some(map) = c.as_object_mut() {
                map.retain(|k, _| !LOCATION_KEYS.contains(&k.as_str()));
            }
        };
        strip(&mut self.provider_config);
        if let Some(c) = self.fallback_provider_config.as_mut() {
            strip(c);
        }
        self
    }

    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            name: self.name.clone(),
            aliases: self.aliases.clone(),
            family: self.family.clone(),
            tasks: self.tasks.clone(),
            source: self.source.clone(),
            provider: self.provider.clone(),
            provider_config: self.provider_config.clone(),
            provider_capabilities: self.provider_capabilities.clone(),
            fallback_provider: self.fallback_provider.clone(),
            fallback_provider_config: self.fallback_provider_config.clone(),
            fallback_provider_capabilities: self.fallback_provider_capabilities.clone(),
            defaults: self.defaults.clone(),
            limits: self.limits.clone(),
            icon: self.icon.clone(),
            tool_types: self.tool_types.clone(),
            recommended: self.recommended,
            beta: self.beta,
            tags: self.tags.clone(),
            base_model: self.base_model.clone(),
            loras: self.loras.clone(),
            description: self.description.clone(),
            short_description: self.short_description.clone(),
            examples: self.examples.clone(),
            privacy: Some(self.privacy),
        }
    }

    /// Whether `who` may see the model (`None`: a caller without a key). Admins see every
    /// model; signed-in users the server's models, their own, and others' `public` or
    /// `unlisted` ones (those by id; lists show others' `public` ones only where asked);
    /// callers without a key `public` and `unlisted` models (by id).
    pub fn visible_to(&self, who: Option<&Principal>) -> bool {
        match (who, &self.owner_id) {
            (Some(p), _) if p.is_admin() => true,
            (Some(_), None) => true,
            (Some(p), Some(owner)) if *owner == p.user_id => true,
            _ => self.privacy != Privacy::Private,
        }
    }

    /// Whether `who` may change, delete or transfer the model and its presets: its owner,
    /// or an admin (the only ones who write the server's models).
    pub fn editable_by(&self, who: &Principal) -> bool {
        who.is_admin() || self.owner_id.as_deref() == Some(who.user_id.as_str())
    }

    /// How a job names the model: a model of the server by its registry name, a user's by
    /// its id (users' names are titles, not unique).
    pub fn job_name(&self) -> &str {
        if self.owner_id.is_some() {
            &self.id
        } else {
            &self.name
        }
    }

    /// Whether one of the model's providers may apply perturbed-attention guidance (see
    /// [`provider_applies_pag`]; `family_pag`: the model's family has it).
    pub fn may_apply_pag(&self, family_pag: bool) -> bool {
        provider_applies_pag(&self.provider, family_pag)
            || self
                .fallback_provider
                .as_deref()
                .is_some_and(|p| provider_applies_pag(p, family_pag))
    }

    /// Whether this server can run the model, checked at submit so that a job that could
    /// never run is refused with the reason instead of failing later: its provider, or else
    /// its fallback, is a kind this server has (`PROVIDERS`) with what that kind needs
    /// (`local`: weights in `source`; `easel`: an http(s) `base_url`; `openai`,
    /// `replicate`: an http(s) `base_url` when one is given, else the hosted service's). The
    /// error names `model` and says what to set.
    pub fn check_runnable(&self) -> Result<()> {
        let primary = provider_problem(&self.provider, &self.provider_config, self);
        let Some(problem) = primary else {
            return Ok(());
        };
        if let Some(fallback) = &self.fallback_provider {
            let config = self
                .fallback_provider_config
                .as_ref()
                .unwrap_or(&serde_json::Value::Null);
            match provider_problem(fallback, config, self) {
                None => return Ok(()),
                Some(second) => {
                    return Err(Error::invalid(
                        "model",
                        format!(
                            "the model `{}` cannot run here: {problem}; and its fallback: {second}",
                            self.name
                        ),
                    ))
                }
            }
        }
        Err(Error::invalid(
            "model",
            format!("the model `{}` cannot run here: {problem}", self.name),
        ))
    }
}

/// What keeps a provider of a model from running here, as its record says, if anything.
pub fn provider_problem(kind: &str, config: &serde_json::Value, m: &Model) -> Option<String> {
    match kind {
        "local" if m.source.as_deref().is_none_or(str::is_empty) => Some(format!(
            "its provider `local` needs weights: set its `source` (PATCH /v1/models/{} with a \
             folder or file under the models directory), or put the model in the models \
             directory",
            m.name
        )),
        "local" => None,
        "openai" | "replicate" | "easel" => provider_base_url(kind, config)
            .is_none()
            .then(|| format!("its provider `{kind}` needs an http(s) `base_url` in its config")),
        other => Some(format!(
            "this server has no provider `{other}` (it runs: {})",
            PROVIDERS.join(", ")
        )),
    }
}

/// The longest model `description` (markdown).
pub const MAX_DESCRIPTION: usize = 20_000;

/// The most example assets of a model.
pub const MAX_EXAMPLES: usize = 50;

/// The prefix of a `source` that is a blob of this server's store rather than a path: a
/// user's LoRA, written by its upload ([`lora_blob_key`]).
pub const BLOB_SOURCE: &str = "blob:";

/// The blob that holds the file of the user's LoRA `model_id`.
pub fn lora_blob_key(model_id: &str) -> String {
    format!("models/{model_id}.safetensors")
}

fn blob_key_of(source: Option<&str>) -> Option<&str> {
    source?.strip_prefix(BLOB_SOURCE)
}

/// The longest name of a user's model.
pub const MAX_TITLE_CHARS: usize = 200;

/// A user's model's name: 1–200 characters, not blank, no control characters.
pub fn check_title(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_TITLE_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            field,
            "must be 1 to 200 characters, not blank, without control characters",
        ));
    }
    Ok(())
}

impl ModelDefaults {
    /// These defaults with `base`'s where these leave one out (a composition over its base).
    pub fn over(&self, base: &ModelDefaults) -> ModelDefaults {
        ModelDefaults {
            width: self.width.or(base.width),
            height: self.height.or(base.height),
            steps: self.steps.or(base.steps),
            guidance: self.guidance.or(base.guidance),
            scheduler: self.scheduler.clone().or_else(|| base.scheduler.clone()),
        }
    }
}

impl ModelLimits {
    /// The tighter of these limits and `base`'s, each.
    pub fn within(&self, base: &ModelLimits) -> ModelLimits {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        ModelLimits {
            max_width: min(self.max_width, base.max_width),
            max_height: min(self.max_height, base.max_height),
            max_pixels: min(self.max_pixels, base.max_pixels),
            max_steps: min(self.max_steps, base.max_steps),
            max_count: min(self.max_count, base.max_count),
        }
    }
}

/// Model names: 1–100 of letters, digits, `-`, `_`, `.`.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(Error::invalid(
            field,
            "must be 1 to 100 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_and_validation() {
        let s: ModelSpec = serde_json::from_value(serde_json::json!({"name": "sd15"})).unwrap();
        assert_eq!(s.provider, "local");
        assert!(s.validate().is_ok());
        // Providers are free names (a registry's provider types), but not blank.
        let fal = ModelSpec {
            provider: "fal_standard".into(),
            fallback_provider: Some("replicate".into()),
            ..s.clone()
        };
        assert!(fal.validate().is_ok());
        let field = |s: ModelSpec| s.validate().unwrap_err().field;
        let bad = ModelSpec {
            provider: "fal standard".into(),
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("provider"));
        let bad = ModelSpec {
            fallback_provider: Some(String::new()),
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("fallback_provider"));
        let bad = ModelSpec {
            fallback_provider_config: Some(serde_json::json!([1])),
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("fallback_provider_config"));
        let bad = ModelSpec {
            tool_types: vec!["BASE_GENERATION".into(), String::new()],
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("tool_types[1]"));
        let bad = ModelSpec {
            provider_capabilities: Some(vec![String::new()]),
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("provider_capabilities[0]"));
        let bad = ModelSpec {
            limits: ModelLimits {
                max_pixels: Some(0),
                ..Default::default()
            },
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("limits.max_pixels"));
        let bad = ModelSpec {
            icon: Some("x".repeat(MAX_ICON_LEN + 1)),
            ..s.clone()
        };
        assert_eq!(field(bad).as_deref(), Some("icon"));
        let bad = ModelSpec {
            name: "a b".into(),
            ..s.clone()
        };
        assert_eq!(bad.validate().unwrap_err().field.as_deref(), Some("name"));
        let p = s.patched(ModelPatch {
            beta: Some(true),
            tags: Some(vec!["x".into()]),
            ..Default::default()
        });
        assert!(p.beta);
        assert_eq!(p.tags, vec!["x".to_string()]);
        assert_eq!(p.name, "sd15");
        assert_eq!((p.icon.as_deref(), p.tool_types.len()), (None, 0));
        let p = p.patched(ModelPatch {
            icon: Some("https://example.test/i.png".into()),
            tool_types: Some(vec!["BASE_GENERATION".into()]),
            provider_capabilities: Some(vec!["txt2img".into()]),
            ..Default::default()
        });
        assert_eq!(p.icon.as_deref(), Some("https://example.test/i.png"));
        assert_eq!(p.tool_types, ["BASE_GENERATION"]);
        assert_eq!(p.provider_capabilities, Some(vec!["txt2img".to_string()]));
        assert!(p.beta, "fields a patch leaves out stay");
    }

    #[test]
    fn secrets_are_found_at_any_depth_whatever_their_spelling() {
        for k in [
            "api_key",
            "apiKey",
            "API_KEY",
            "key",
            "fal_key",
            "x-api-key",
            "accessToken",
            "token",
            "Authorization",
            "client_secret",
            "password",
            "credentials",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "api_key_env",
            "TOKEN_ENV",
            "base_url",
            "model",
            "version",
            "tokenizer",
            "max_tokens",
            "timeout_s",
            "support_dir",
            "keyframes",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
        let cfg = serde_json::json!({
            "base_url": "http://x", "api_key_env": "K",
            "headers": {"Accept": "x", "Authorization": "Bearer sk-1"}
        });
        assert_eq!(find_secret(&cfg).as_deref(), Some("headers.Authorization"));
        let cfg = serde_json::json!({"auth": [{"user": "u"}, {"fal_key": "k"}]});
        assert_eq!(find_secret(&cfg).as_deref(), Some("auth[1].fal_key"));
        assert_eq!(find_secret(&serde_json::json!({"api_key_env": "K"})), None);
        let s: ModelSpec = serde_json::from_value(serde_json::json!({
            "name": "r", "provider": "openai",
            "provider_config": {"base_url": "http://x", "extra_headers": {"X-Api-Key": "k"}}
        }))
        .unwrap();
        let e = s.validate().unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("provider_config.extra_headers.X-Api-Key")
        );
    }

    #[test]
    fn runnable_models_have_a_provider_this_server_runs_with_what_it_needs() {
        let model = |spec: serde_json::Value| -> Model {
            let mut v = serde_json::json!({
                "id": "mdl_01j00000000000000000000000", "name": "m", "aliases": [],
                "family": "sd15", "tasks": [], "source": null, "provider": "local",
                "provider_config": {}, "provider_capabilities": null, "fallback_provider": null,
                "fallback_provider_config": null, "fallback_provider_capabilities": null,
                "defaults": {}, "limits": {}, "icon": null, "tool_types": [],
                "recommended": false, "beta": false, "tags": [], "discovered": false,
                "base_model": null, "loras": [], "description": null,
                "short_description": null, "examples": [], "owner_id": null,
                "privacy": "private",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
            });
            for (k, x) in spec.as_object().unwrap() {
                v[k] = x.clone();
            }
            serde_json::from_value(v).unwrap()
        };
        let why = |spec| model(spec).check_runnable().map_err(|e| e.message);
        assert!(why(serde_json::json!({})).unwrap_err().contains("`source`"));
        assert!(why(serde_json::json!({"source": "/m"})).is_ok());
        assert!(why(serde_json::json!({"provider": "fal_standard"}))
            .unwrap_err()
            .contains("no provider `fal_standard`"));
        assert!(why(serde_json::json!({"provider": "easel"}))
            .unwrap_err()
            .contains("`base_url`"));
        assert!(why(
            serde_json::json!({"provider": "easel", "provider_config": {"base_url": "ftp://x"}})
        )
        .is_err());
        assert!(why(
            serde_json::json!({"provider": "replicate", "provider_config": {"model": "a/b"}})
        )
        .is_ok());
        // A fallback that can run makes the model runnable; both failing name both.
        let with_fallback = serde_json::json!({"provider": "fal_standard", "fallback_provider": "easel",
            "fallback_provider_config": {"base_url": "http://gpu:7878"}});
        assert!(why(with_fallback).is_ok());
        let both =
            why(serde_json::json!({"provider": "fal_standard", "fallback_provider": "local"}))
                .unwrap_err();
        assert!(
            both.contains("fal_standard") && both.contains("its fallback"),
            "{both}"
        );
    }
}

/// Where a local model's files may be: a `source` (or `support_dir`) must lie under one of
/// `roots` (canonical folders: the models folder, then `--model-roots`). A relative path is
/// taken under the first root; a path with `..` is refused. The check is on the path as
/// written (no I/O): links an operator places inside a root are followed.
pub fn confine_path(
    field: &str,
    path: &str,
    roots: &[std::path::PathBuf],
) -> Result<std::path::PathBuf> {
    use std::path::{Component, Path};
    let outside = || {
        Error::invalid(
            field,
            "must be a file or folder under the models folder (or a folder of --model-roots)",
        )
    };
    let p = Path::new(path);
    if path.is_empty() || p.components().any(|c| c == Component::ParentDir) {
        return Err(outside());
    }
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        roots.first().ok_or_else(outside)?.join(p)
    };
    if roots.iter().any(|r| full.starts_with(r)) {
        Ok(full)
    } else {
        Err(outside())
    }
}

impl ModelSpec {
    /// `source` and each provider config's `support_dir` confined to `roots`
    /// (`confine_path`), for models whose files this server reads.
    pub fn check_paths(&self, roots: &[std::path::PathBuf]) -> Result<()> {
        if let Some(src) = self.source.as_deref().filter(|s| !s.is_empty()) {
            confine_path("source", src, roots)?;
        }
        let configs = [
            ("provider_config", Some(&self.provider_config)),
            (
                "fallback_provider_config",
                self.fallback_provider_config.as_ref(),
            ),
        ];
        for (name, config) in configs {
            if let Some(dir) = config.and_then(|c| c.get("support_dir")) {
                let field = format!("{name}.support_dir");
                let dir = dir
                    .as_str()
                    .ok_or_else(|| Error::invalid(&field, "must be a path"))?;
                confine_path(&field, dir, roots)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn local_paths_stay_under_the_roots() {
        let roots = [PathBuf::from("/data/models"), PathBuf::from("/mnt/weights")];
        let ok = |p: &str| confine_path("source", p, &roots);
        assert_eq!(
            ok("/data/models/sd15").unwrap(),
            PathBuf::from("/data/models/sd15")
        );
        assert_eq!(
            ok("sd15/unet").unwrap(),
            PathBuf::from("/data/models/sd15/unet")
        );
        assert!(ok("/mnt/weights/x.safetensors").is_ok());
        for bad in [
            "/etc/passwd",
            "/data/models/../secret",
            "../x",
            "/data/modelsX/y",
            "",
        ] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("source"), "{bad}");
        }
        assert!(confine_path("source", "x", &[]).is_err());
    }

    #[test]
    fn non_admins_see_no_locations() {
        let spec: ModelSpec = serde_json::from_value(serde_json::json!({
            "name": "x", "family": "sd15", "source": "/data/models/x",
            "provider_config": {"support_dir": "/data/s", "model": "m"},
            "fallback_provider": "easel",
            "fallback_provider_config": {"base_url": "http://10.0.0.2"}
        }))
        .unwrap();
        let m = Model::from_spec(
            spec,
            ModelRecord {
                id: "mdl_x".into(),
                owner_id: None,
                privacy: Privacy::Private,
                discovered: false,
                created_at: crate::time::now(),
                updated_at: crate::time::now(),
            },
        )
        .without_locations();
        assert_eq!(m.source, None);
        assert_eq!(m.provider_config, serde_json::json!({"model": "m"}));
        assert_eq!(m.fallback_provider_config, Some(serde_json::json!({})));
    }
}

/// How a prompt fits a model's text encoder (a prompt check: the model's tokenizer only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromptCheck {
    /// The prompt's tokens (special tokens left out).
    pub tokens: usize,
    /// How many tokens the encoder takes at once.
    pub window: usize,
    /// The windows the prompt is encoded in (SD's longer prompts are encoded in several,
    /// as A1111's; none of their tokens is dropped).
    pub chunks: usize,
    /// Tokens past what the encoder takes: dropped.
    pub truncated: usize,
    /// The smallest and largest emphasis weights the prompt gives (`(word:1.3)`, `[word]`);
    /// 1 without emphasis.
    pub min_weight: f32,
    pub max_weight: f32,
}

impl PromptCheck {
    /// The share of the prompt's tokens the encoder sees (1 when none are dropped).
    pub fn kept_share(&self) -> f64 {
        if self.tokens == 0 {
            1.0
        } else {
            (self.tokens - self.truncated.min(self.tokens)) as f64 / self.tokens as f64
        }
    }
}
