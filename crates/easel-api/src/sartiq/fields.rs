//! The request body, read field by field as pydantic reads `GenerativeModelsCreate` and
//! `GenerativeModelsUpdate` (every error reported, `null` told apart from absent), and
//! applied to a model spec.

use super::*;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Mode {
    Create,
    Update,
}

/// A body field as read: absent, explicitly null, or a value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Got<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Got<T> {
    /// Set `slot` (a nullable field) when the body names the field.
    pub(super) fn set_nullable(self, slot: &mut Option<T>) {
        match self {
            Got::Absent => {}
            Got::Null => *slot = None,
            Got::Value(v) => *slot = Some(v),
        }
    }
    /// Set `slot` (a non-nullable field) when the body gives a value.
    pub(super) fn set(self, slot: &mut T) {
        if let Got::Value(v) = self {
            *slot = v;
        }
    }
}

/// The body's fields, type-checked the way pydantic checks `GenerativeModelsCreate` /
/// `GenerativeModelsUpdate`.
pub(super) struct Fields {
    name: Got<String>,
    icon: Got<String>,
    provider: Got<String>,
    provider_config: Got<Value>,
    provider_capabilities: Got<Vec<String>>,
    fallback_provider: Got<String>,
    fallback_provider_config: Got<Value>,
    fallback_provider_capabilities: Got<Vec<String>>,
    tool_types: Got<Vec<String>>,
    recommended: Got<bool>,
    beta: Got<bool>,
    max_output_width: Got<u64>,
    max_output_height: Got<u64>,
    max_size_pixels: Got<u64>,
}

/// What a field may hold.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str,
    Object,
    Strings,
    Bool,
    /// An integer from 1 to the bound.
    Int(u64),
}

pub(super) struct Reader<'a> {
    body: &'a Map<String, Value>,
    mode: Mode,
    errors: Vec<Detail>,
}

impl Reader<'_> {
    /// Read `field`. `required`/`nullable` are the Create schema's; in an update every
    /// field is optional and nullable.
    pub(super) fn read(
        &mut self,
        field: &str,
        kind: Kind,
        required: bool,
        nullable: bool,
    ) -> Got<Value> {
        let loc = vec![json!("body"), json!(field)];
        let create = self.mode == Mode::Create;
        match self.body.get(field) {
            None => {
                if create && required {
                    self.errors.push(
                        Detail::new(loc, "missing", "Field required")
                            .input(&Value::Object(self.body.clone())),
                    );
                }
                Got::Absent
            }
            Some(Value::Null) if nullable || !create => Got::Null,
            Some(v) => match check(v, kind, &loc) {
                Ok(v) => Got::Value(v),
                Err(mut d) => {
                    self.errors.append(&mut d);
                    Got::Absent
                }
            },
        }
    }
}

/// Type-check one value; the details of what is wrong otherwise.
pub(super) fn check(v: &Value, kind: Kind, loc: &[Value]) -> Result<Value, Vec<Detail>> {
    let err = |kind: &str, msg: &str| vec![Detail::new(loc.to_vec(), kind, msg).input(v)];
    match kind {
        Kind::Str if v.is_string() => Ok(v.clone()),
        Kind::Str => Err(err("string_type", "Input should be a valid string")),
        Kind::Object if v.is_object() => Ok(v.clone()),
        Kind::Object => Err(err("dict_type", "Input should be a valid dictionary")),
        Kind::Bool if v.is_boolean() => Ok(v.clone()),
        Kind::Bool => Err(err("bool_type", "Input should be a valid boolean")),
        Kind::Strings => {
            let Some(items) = v.as_array() else {
                return Err(err("list_type", "Input should be a valid list"));
            };
            let bad: Vec<Detail> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| !item.is_string())
                .map(|(i, item)| {
                    let mut loc = loc.to_vec();
                    loc.push(json!(i));
                    Detail::new(loc, "string_type", "Input should be a valid string").input(item)
                })
                .collect();
            if bad.is_empty() {
                Ok(v.clone())
            } else {
                Err(bad)
            }
        }
        Kind::Int(max) => {
            let n =
                match v {
                    Value::Number(n) if n.is_u64() || n.is_i64() => {
                        n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
                    }
                    Value::Number(n) => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.is_finite() => Some(f as i128),
                        _ => return Err(err(
                            "int_from_float",
                            "Input should be a valid integer, got a number with a fractional part",
                        )),
                    },
                    _ => None,
                };
            let Some(n) = n else {
                return Err(err("int_type", "Input should be a valid integer"));
            };
            if n < 1 {
                return Err(vec![Detail::new(
                    loc.to_vec(),
                    "greater_than_equal",
                    "Input should be greater than or equal to 1",
                )
                .input(v)
                .ctx(json!({"ge": 1}))]);
            }
            if n > max as i128 {
                return Err(vec![Detail::new(
                    loc.to_vec(),
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                )
                .input(v)
                .ctx(json!({"le": max}))]);
            }
            Ok(json!(n as u64))
        }
    }
}

impl Fields {
    pub(super) fn read(body: &Map<String, Value>, mode: Mode) -> Result<Fields, Failure> {
        let mut r = Reader {
            body,
            mode,
            errors: Vec::new(),
        };
        let str_of = |g: Got<Value>| map(g, |v| v.as_str().unwrap_or_default().to_string());
        let strings_of = |g: Got<Value>| {
            map(g, |v| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
        };
        let int_of = |g: Got<Value>| map(g, |v| v.as_u64().unwrap_or_default());
        let side = Kind::Int(u32::MAX as u64);
        let f = Fields {
            name: str_of(r.read("name", Kind::Str, true, false)),
            icon: str_of(r.read("icon", Kind::Str, false, true)),
            provider: str_of(r.read("provider", Kind::Str, true, false)),
            provider_config: r.read("provider_config", Kind::Object, true, false),
            provider_capabilities: strings_of(r.read(
                "provider_capabilities",
                Kind::Strings,
                false,
                true,
            )),
            fallback_provider: str_of(r.read("fallback_provider", Kind::Str, false, true)),
            fallback_provider_config: r.read("fallback_provider_config", Kind::Object, false, true),
            fallback_provider_capabilities: strings_of(r.read(
                "fallback_provider_capabilities",
                Kind::Strings,
                false,
                true,
            )),
            tool_types: strings_of(r.read("tool_types", Kind::Strings, false, false)),
            recommended: map(r.read("recommended", Kind::Bool, false, false), |v| {
                v.as_bool().unwrap_or_default()
            }),
            beta: map(r.read("beta", Kind::Bool, false, false), |v| {
                v.as_bool().unwrap_or_default()
            }),
            max_output_width: int_of(r.read("max_output_width", side, false, true)),
            max_output_height: int_of(r.read("max_output_height", side, false, true)),
            max_size_pixels: int_of(r.read("max_size_pixels", Kind::Int(u64::MAX), false, true)),
        };
        if r.errors.is_empty() {
            Ok(f)
        } else {
            Err(Failure::Invalid(r.errors))
        }
    }

    /// The spec these fields make: over `base` (an update), or a new model's defaults.
    pub(super) fn apply(self, base: Option<ModelSpec>) -> ModelSpec {
        let mut s = base.unwrap_or_else(|| ModelSpec {
            name: String::new(),
            aliases: vec![],
            family: easel_core::model::family::UNKNOWN.to_string(),
            tasks: vec![],
            source: None,
            provider: String::new(),
            provider_config: json!({}),
            provider_capabilities: None,
            fallback_provider: None,
            fallback_provider_config: None,
            fallback_provider_capabilities: None,
            defaults: Default::default(),
            limits: Default::default(),
            icon: None,
            tool_types: vec![],
            recommended: false,
            beta: false,
            tags: vec![],
            ..ModelSpec::new("")
        });
        self.name.set(&mut s.name);
        self.icon.set_nullable(&mut s.icon);
        self.provider.set(&mut s.provider);
        self.provider_config.set(&mut s.provider_config);
        self.provider_capabilities
            .set_nullable(&mut s.provider_capabilities);
        self.fallback_provider
            .set_nullable(&mut s.fallback_provider);
        self.fallback_provider_config
            .set_nullable(&mut s.fallback_provider_config);
        self.fallback_provider_capabilities
            .set_nullable(&mut s.fallback_provider_capabilities);
        self.tool_types.set(&mut s.tool_types);
        self.recommended.set(&mut s.recommended);
        self.beta.set(&mut s.beta);
        map(self.max_output_width, |v| v as u32).set_nullable(&mut s.limits.max_width);
        map(self.max_output_height, |v| v as u32).set_nullable(&mut s.limits.max_height);
        self.max_size_pixels.set_nullable(&mut s.limits.max_pixels);
        s
    }
}

pub(super) fn map<T, U>(g: Got<T>, f: impl FnOnce(T) -> U) -> Got<U> {
    match g {
        Got::Absent => Got::Absent,
        Got::Null => Got::Null,
        Got::Value(v) => Got::Value(f(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_needs_name_provider_and_config_and_reports_every_error() {
        let body =
            json!({"icon": 3, "tool_types": ["A", 1], "max_output_width": 0.5, "beta": "yes"});
        let Err(Failure::Invalid(d)) = Fields::read(body.as_object().unwrap(), Mode::Create) else {
            panic!("invalid");
        };
        let got: Vec<(String, String)> = d
            .iter()
            .map(|d| (serde_json::to_string(&d.loc).unwrap(), d.kind.clone()))
            .collect();
        let want = [
            (r#"["body","name"]"#, "missing"),
            (r#"["body","icon"]"#, "string_type"),
            (r#"["body","provider"]"#, "missing"),
            (r#"["body","provider_config"]"#, "missing"),
            (r#"["body","tool_types",1]"#, "string_type"),
            (r#"["body","beta"]"#, "bool_type"),
            (r#"["body","max_output_width"]"#, "int_from_float"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())),
            "{d:?}"
        );
    }

    #[test]
    fn update_null_clears_nullable_fields_and_keeps_the_others() {
        let base = Fields::read(
            json!({"name": "a", "provider": "local", "provider_config": {"k": 1},
                "icon": "i", "max_output_width": 64, "tool_types": ["T"], "beta": true})
            .as_object()
            .unwrap(),
            Mode::Create,
        )
        .ok()
        .unwrap()
        .apply(None);
        assert_eq!(base.limits.max_width, Some(64));
        let up = Fields::read(
            json!({"name": null, "icon": null, "max_output_width": null, "tool_types": null,
                "beta": null, "recommended": true, "max_size_pixels": 4096.0})
            .as_object()
            .unwrap(),
            Mode::Update,
        )
        .ok()
        .unwrap()
        .apply(Some(base.clone()));
        assert_eq!(up.name, "a");
        assert_eq!(up.icon, None);
        assert_eq!(up.limits.max_width, None);
        assert_eq!(up.limits.max_pixels, Some(4096));
        assert_eq!(up.tool_types, ["T"]);
        assert!(up.beta && up.recommended);
        assert_eq!(up.provider_config, json!({"k": 1}));
    }
}
