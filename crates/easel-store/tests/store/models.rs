//! The models registry: names and aliases resolve to exactly one model.

use easel_core::model::ModelSpec;
use easel_core::ErrorKind;
use easel_store::models;

use crate::testing::backends;

fn spec(v: serde_json::Value) -> ModelSpec {
    serde_json::from_value(v).expect("model spec")
}

#[tokio::test]
async fn create_resolve_update_list_delete() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let sd15 = models::create(
            db,
            &spec(serde_json::json!({
                "name": "sd15",
                "aliases": ["stable-diffusion-v1-5", "sd1"],
                "family": "sd15",
                "tasks": ["txt2img", "img2img"],
                "defaults": {"steps": 25},
                "tags": ["base"],
            })),
            false,
        )
        .await
        .unwrap();
        assert!(
            easel_core::id::is_valid(easel_core::id::MODEL, &sd15.id),
            "{n}: {}",
            sd15.id
        );
        assert_eq!(sd15.aliases, ["stable-diffusion-v1-5", "sd1"], "{n}");
        assert_eq!(sd15.defaults.steps, Some(25), "{n}");
        assert_eq!(sd15.provider, "local", "{n}");
        assert!(!sd15.discovered, "{n}");
        for name in ["sd15", "sd1", "stable-diffusion-v1-5", sd15.id.as_str()] {
            let m = models::resolve(db, name).await.unwrap();
            assert_eq!(m.as_ref(), Some(&sd15), "{n}: resolve {name}");
        }
        assert_eq!(models::resolve(db, "sd2").await.unwrap(), None, "{n}");

        // Names and aliases are unique across models; a failed create stores nothing.
        let e = models::create(db, &spec(serde_json::json!({"name": "sd15"})), false)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("name")),
            "{n}: {e}"
        );
        let e = models::create(
            db,
            &spec(serde_json::json!({"name": "sdxl", "aliases": ["xl", "sd1"]})),
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("aliases")),
            "{n}: {e}"
        );
        assert!(e.message.contains("sd1"), "{n}: {e}");
        assert_eq!(
            models::resolve(db, "sdxl").await.unwrap(),
            None,
            "{n}: rolled back"
        );
        assert_eq!(
            models::resolve(db, "xl").await.unwrap(),
            None,
            "{n}: rolled back"
        );
        let e = models::create(db, &spec(serde_json::json!({"name": "sd1"})), false)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("name")),
            "{n}: name = another's alias"
        );
        let e = models::create(db, &spec(serde_json::json!({"name": "bad name"})), false)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("name")),
            "{n}: {e}"
        );

        // Repeating a name in one's own list is not a conflict with another model.
        let sdxl = models::create(
            db,
            &spec(
                serde_json::json!({"name": "sdxl", "aliases": ["xl", "sdxl-base", "xl", "sdxl"]}),
            ),
            true,
        )
        .await
        .unwrap();
        assert!(sdxl.discovered, "{n}");
        assert_eq!(
            models::resolve(db, "xl").await.unwrap().map(|m| m.id),
            Some(sdxl.id.clone()),
            "{n}"
        );

        // Update: names are replaced as a whole; conflicts leave the model as it was.
        let mut s = sd15.spec();
        s.aliases = vec!["sd1".into(), "v15".into()];
        s.beta = true;
        let up = models::update(db, &sd15.id, &s).await.unwrap();
        assert!(up.beta, "{n}");
        assert_eq!(up.created_at, sd15.created_at, "{n}");
        assert!(up.updated_at >= sd15.updated_at, "{n}");
        assert_eq!(
            models::resolve(db, "stable-diffusion-v1-5").await.unwrap(),
            None,
            "{n}: old alias gone"
        );
        assert_eq!(
            models::resolve(db, "v15").await.unwrap().map(|m| m.id),
            Some(sd15.id.clone()),
            "{n}"
        );
        let mut clash = s.clone();
        clash.aliases.push("xl".into());
        let e = models::update(db, &sd15.id, &clash).await.unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("aliases")),
            "{n}: {e}"
        );
        let mut rename = s.clone();
        rename.name = "sdxl".into();
        let e = models::update(db, &sd15.id, &rename).await.unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("name")),
            "{n}: {e}"
        );
        assert_eq!(
            models::resolve(db, "v15").await.unwrap(),
            Some(up.clone()),
            "{n}: unchanged after conflicts"
        );
        assert_eq!(
            models::resolve(db, "xl").await.unwrap().map(|m| m.id),
            Some(sdxl.id.clone()),
            "{n}"
        );
        let e = models::update(db, "mdl_01jaaaaaaaaaaaaaaaaaaaaaaa", &s)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}");
        let mut renamed = s.clone();
        renamed.name = "sd-1.5".into();
        let r = models::update(db, &sd15.id, &renamed).await.unwrap();
        assert_eq!(r.name, "sd-1.5", "{n}");
        assert_eq!(
            models::resolve(db, "sd15").await.unwrap(),
            None,
            "{n}: old name released"
        );
        assert_eq!(
            models::resolve(db, "sd-1.5").await.unwrap().map(|m| m.id),
            Some(sd15.id.clone()),
            "{n}"
        );

        // List: by name, with a total count.
        for name in ["m-c", "m-a", "m-b"] {
            models::create(db, &spec(serde_json::json!({"name": name})), false)
                .await
                .unwrap();
        }
        let names =
            |ms: Vec<easel_core::model::Model>| ms.into_iter().map(|m| m.name).collect::<Vec<_>>();
        let (page, total) = models::list(db, models::Scope::Server, 0, 2).await.unwrap();
        assert_eq!(total, 5, "{n}");
        assert_eq!(names(page), ["m-a", "m-b"], "{n}");
        let (page, total) = models::list(db, models::Scope::Server, 2, 2).await.unwrap();
        assert_eq!(
            (names(page), total),
            (vec!["m-c".to_string(), "sd-1.5".into()], 5),
            "{n}"
        );
        let (page, _) = models::list(db, models::Scope::Server, 4, 2).await.unwrap();
        assert_eq!(names(page), ["sdxl"], "{n}");
        let (page, _) = models::list(db, models::Scope::Server, 10, 2)
            .await
            .unwrap();
        assert!(page.is_empty(), "{n}");

        // Delete frees the names.
        assert!(models::delete(&b.store, &sd15.id).await.unwrap(), "{n}");
        assert!(
            !models::delete(&b.store, &sd15.id).await.unwrap(),
            "{n}: already gone"
        );
        assert_eq!(models::get(db, &sd15.id).await.unwrap(), None, "{n}");
        assert_eq!(models::resolve(db, "sd1").await.unwrap(), None, "{n}");
        let reuse = models::create(db, &spec(serde_json::json!({"name": "sd1"})), false)
            .await
            .unwrap();
        assert_eq!(
            models::resolve(db, "sd1").await.unwrap().map(|m| m.id),
            Some(reuse.id),
            "{n}"
        );
        assert_eq!(
            models::list(db, models::Scope::Server, 0, 100)
                .await
                .unwrap()
                .1,
            5,
            "{n}"
        );
    }
}

/// The registry fields a dialect such as Sartiq's sets (icon, capabilities, tool types, a
/// free provider name, the fallback) round-trip; rows written before these fields existed
/// read with their defaults.
#[tokio::test]
async fn registry_fields_round_trip_and_older_rows_read() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let full = spec(serde_json::json!({
            "name": "flux-pro",
            "provider": "fal_standard",
            "provider_config": {"fal_app_id": "fal-ai/flux-pro", "additional_properties": {}},
            "provider_capabilities": ["TEXT_TO_IMAGE", "IMAGE_TO_IMAGE"],
            "fallback_provider": "replicate",
            "fallback_provider_config": {"model": "black-forest-labs/flux-pro"},
            "fallback_provider_capabilities": [],
            "icon": "https://example.test/flux.png",
            "tool_types": ["BASE_GENERATION", "UPSCALE"],
            "limits": {"max_width": 2048, "max_height": 1536, "max_pixels": 3145728u64},
            "recommended": true,
            "privacy": "private",
        }));
        let m = models::create(db, &full, false).await.unwrap();
        assert_eq!(m.spec(), full, "{n}");
        assert_eq!(
            models::get(db, &m.id).await.unwrap().map(|m| m.spec()),
            Some(full.clone()),
            "{n}"
        );
        assert_eq!(m.provider, "fal_standard", "{n}");
        assert_eq!(
            m.icon.as_deref(),
            Some("https://example.test/flux.png"),
            "{n}"
        );
        assert_eq!(m.tool_types, ["BASE_GENERATION", "UPSCALE"], "{n}");
        assert_eq!(
            m.provider_capabilities.as_deref(),
            Some(&["TEXT_TO_IMAGE".to_string(), "IMAGE_TO_IMAGE".to_string()][..]),
            "{n}"
        );
        assert_eq!(m.fallback_provider_capabilities, Some(vec![]), "{n}");

        // Clearing: an update stores exactly the spec it is given.
        let mut cleared = full.clone();
        cleared.icon = None;
        cleared.provider_capabilities = None;
        cleared.tool_types = vec![];
        cleared.limits.max_width = None;
        let up = models::update(db, &m.id, &cleared).await.unwrap();
        assert_eq!(up.spec(), cleared, "{n}");

        // The core's rules hold for the new fields.
        let mut bad = full.clone();
        bad.name = "other".into();
        bad.tool_types = vec![String::new()];
        let e = models::create(db, &bad, false).await.unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("tool_types[0]")),
            "{n}"
        );
        bad.tool_types = vec![];
        bad.limits.max_height = Some(0);
        let e = models::create(db, &bad, false).await.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.max_height"), "{n}");

        // A row as the first release wrote it: no icon, capabilities or tool types.
        let old = r#"{"name":"old","aliases":["legacy"],"family":"sd15","tasks":["txt2img"],"source":"/m/old","provider":"local","provider_config":{},"fallback_provider":null,"fallback_provider_config":null,"defaults":{},"limits":{"max_width":768},"recommended":false,"beta":true,"tags":[]}"#;
        let id = easel_core::id::new(easel_core::id::MODEL);
        sqlx::query(
            "INSERT INTO models (id, name, spec, discovered, created_at, updated_at) VALUES ($1, $2, $3, 1, 1000, 1000)",
        )
        .bind(&id)
        .bind("old")
        .bind(old)
        .execute(&db.pool)
        .await
        .unwrap();
        let m = models::get(db, &id).await.unwrap().expect("old row");
        assert_eq!(
            (
                m.icon,
                m.provider_capabilities,
                m.fallback_provider_capabilities
            ),
            (None, None, None),
            "{n}"
        );
        assert!(m.tool_types.is_empty(), "{n}");
        assert_eq!(
            (m.limits.max_width, m.beta, m.discovered),
            (Some(768), true, true),
            "{n}"
        );
        assert_eq!(m.source.as_deref(), Some("/m/old"), "{n}");
    }
}

/// Text search over the registry: names, aliases, family, tasks and tags, every word as a
/// prefix, following updates and deletion.
#[tokio::test]
async fn search_finds_models_by_their_words() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let a = models::create(
            db,
            &spec(serde_json::json!({
                "name": "dreamshaper-8",
                "aliases": ["flux.1-dev"],
                "family": "sd15",
                "tasks": ["txt2img"],
                "tags": ["portrait"],
            })),
            false,
        )
        .await
        .unwrap();
        let b2 = models::create(
            db,
            &spec(serde_json::json!({"name": "sana-600m", "family": "sana", "tasks": ["txt2img"]})),
            false,
        )
        .await
        .unwrap();
        let names = |ids: Vec<String>| -> Vec<String> {
            let mut v: Vec<String> = ids
                .iter()
                .map(|id| {
                    if *id == a.id {
                        "dreamshaper-8".to_string()
                    } else if *id == b2.id {
                        "sana-600m".to_string()
                    } else {
                        id.clone()
                    }
                })
                .collect();
            v.sort();
            v
        };
        for (q, want) in [
            ("dream", vec!["dreamshaper-8"]),
            ("flux 1", vec!["dreamshaper-8"]),
            ("PORTRAIT", vec!["dreamshaper-8"]),
            ("sana", vec!["sana-600m"]),
            ("txt2img", vec!["dreamshaper-8", "sana-600m"]),
            ("sd15 sana", vec![]),
            ("--", vec![]),
        ] {
            assert_eq!(
                names(models::search(db, q).await.unwrap()),
                want,
                "{n}: {q}"
            );
        }
        let mut s =
            spec(serde_json::json!({"name": "dreamshaper-8", "family": "sd15", "tags": ["anime"]}));
        s.tasks = vec!["txt2img".into()];
        models::update(db, &a.id, &s).await.unwrap();
        assert!(
            models::search(db, "portrait").await.unwrap().is_empty(),
            "{n}"
        );
        assert_eq!(
            names(models::search(db, "anime").await.unwrap()),
            ["dreamshaper-8"],
            "{n}"
        );
        assert!(models::delete(&b.store, &b2.id).await.unwrap(), "{n}");
        assert!(models::search(db, "sana").await.unwrap().is_empty(), "{n}");
    }
}

/// A user's model: found by id only (its title is not a registry name and need not be
/// unique), listed by scope, edited, copied with its presets, transferred, deleted with
/// its presets; the search finds it by a word of its title and its description.
#[tokio::test]
async fn owned_models_scopes_presets_copy_transfer() {
    use easel_core::model::Privacy;
    use easel_core::preset::{PresetParams, PresetSpec};
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let base = models::create(
            db,
            &spec(serde_json::json!({"name": "base15", "family": "sd15", "tasks": ["txt2img"]})),
            false,
        )
        .await
        .unwrap();
        let mine = spec(serde_json::json!({
            "name": "My Anime Look",
            "base_model": base.id,
            "family": "sd15",
            "defaults": {"steps": 12},
            "description": "Soft watercolour portraits",
        }));
        let a = models::create_owned(db, &mine, "usr_alice").await.unwrap();
        let twin = models::create_owned(db, &mine, "usr_bob").await.unwrap();
        assert_eq!(a.name, "My Anime Look", "{n}: titles need not be unique");
        assert_eq!(a.owner_id.as_deref(), Some("usr_alice"), "{n}");
        assert_eq!(a.privacy, Privacy::Private, "{n}: private by default");
        assert_eq!(a.base_model.as_deref(), Some(base.id.as_str()), "{n}");
        assert_eq!(
            models::resolve(db, &a.id).await.unwrap().as_ref(),
            Some(&a),
            "{n}"
        );
        assert_eq!(
            models::resolve(db, "My Anime Look").await.unwrap(),
            None,
            "{n}: a title is not a registry name"
        );
        assert_eq!(
            models::resolve_run(db, &a.id).await.unwrap().map(|m| m.id),
            Some(base.id.clone()),
            "{n}: a composition runs its base"
        );
        // A user's model must be a composition, without aliases.
        let e = models::create_owned(db, &spec(serde_json::json!({"name": "x"})), "usr_alice")
            .await
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("base_model"), "{n}: {e}");
        let e = models::create_owned(
            db,
            &spec(serde_json::json!({"name": "x", "base_model": base.id, "aliases": ["x1"]})),
            "usr_alice",
        )
        .await
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("aliases"), "{n}: {e}");
        let e = models::create(
            db,
            &spec(serde_json::json!({"name": "c", "base_model": base.id, "source": "/m"})),
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("source"), "{n}: {e}");

        // Scopes.
        let ids = |ms: Vec<easel_core::model::Model>| {
            let mut v: Vec<String> = ms.into_iter().map(|m| m.id).collect();
            v.sort();
            v
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let list = |s| async move { models::list(db, s, 0, 100).await.unwrap() };
        assert_eq!(
            ids(list(models::Scope::Server).await.0),
            std::slice::from_ref(&base.id),
            "{n}"
        );
        assert_eq!(
            ids(list(models::Scope::For("usr_alice")).await.0),
            sorted(vec![base.id.clone(), a.id.clone()]),
            "{n}"
        );
        assert_eq!(
            ids(list(models::Scope::OwnedBy("usr_bob")).await.0),
            std::slice::from_ref(&twin.id),
            "{n}"
        );
        assert_eq!(list(models::Scope::Public).await.1, 0, "{n}");
        assert_eq!(list(models::Scope::All).await.1, 3, "{n}");

        // Privacy is its own column: an update that gives one sets it, one that does not
        // keeps it.
        let mut s = a.spec();
        s.privacy = Some(Privacy::Public);
        s.short_description = Some("watercolour".into());
        let a = models::update(db, &a.id, &s).await.unwrap();
        assert_eq!(a.privacy, Privacy::Public, "{n}");
        let mut s = a.spec();
        s.privacy = None;
        s.name = "Renamed Look".into();
        let a = models::update(db, &a.id, &s).await.unwrap();
        assert_eq!(
            (a.privacy, a.name.as_str()),
            (Privacy::Public, "Renamed Look"),
            "{n}"
        );
        assert_eq!(
            ids(list(models::Scope::Public).await.0),
            std::slice::from_ref(&a.id),
            "{n}"
        );
        // An edit made of a read loses no edit made meanwhile: the stale one is a conflict.
        let read = a.clone();
        let mut first = read.spec();
        first.tags = vec!["first".into()];
        let a = models::update_from(db, &read, &first).await.unwrap();
        let mut second = read.spec();
        second.short_description = Some("second".into());
        let e = models::update_from(db, &read, &second).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}: {e}");
        assert_eq!(a.tags, ["first"], "{n}");
        let mut again = a.spec();
        again.short_description = Some("watercolour".into());
        let a = models::update_from(db, &a, &again).await.unwrap();
        assert_eq!(
            (a.tags.as_slice(), a.short_description.as_deref()),
            (&["first".to_string()][..], Some("watercolour")),
            "{n}"
        );
        // Search: the title and the description are searchable.
        assert_eq!(
            models::search(db, "renamed").await.unwrap(),
            std::slice::from_ref(&a.id),
            "{n}"
        );
        assert_eq!(
            sorted(models::search(db, "watercolour").await.unwrap()),
            sorted(vec![a.id.clone(), twin.id.clone()]),
            "{n}"
        );

        // Presets: one default at a time, by id or name; validated in the core.
        let p1 = models::create_preset(
            db,
            &a.id,
            "usr_alice",
            &PresetSpec {
                name: Some("fast".into()),
                params: Some(PresetParams {
                    steps: Some(6),
                    ..Default::default()
                }),
                is_default: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let p2 = models::create_preset(
            db,
            &a.id,
            "usr_alice",
            &PresetSpec {
                name: Some("slow".into()),
                task: Some("txt2img".into()),
                params: Some(PresetParams {
                    steps: Some(40),
                    guidance: Some(9.0),
                    ..Default::default()
                }),
                is_default: Some(true),
            },
        )
        .await
        .unwrap();
        let ps = models::presets(db, &a.id).await.unwrap();
        assert_eq!(
            ps.iter()
                .map(|p| (p.name.as_str(), p.is_default))
                .collect::<Vec<_>>(),
            [("fast", false), ("slow", true)],
            "{n}: the newer default took over"
        );
        assert_eq!(
            models::preset(db, &a.id, "fast")
                .await
                .unwrap()
                .map(|p| p.id),
            Some(p1.id.clone()),
            "{n}"
        );
        assert_eq!(
            models::preset(db, &twin.id, &p1.id).await.unwrap(),
            None,
            "{n}: per model"
        );
        let up = models::update_preset(
            db,
            &a.id,
            &p1.id,
            &PresetSpec {
                is_default: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(up.is_default && up.params.steps == Some(6), "{n}: {up:?}");
        assert!(
            !models::preset(db, &a.id, &p2.id)
                .await
                .unwrap()
                .unwrap()
                .is_default,
            "{n}"
        );
        let e = models::update_preset(db, &twin.id, &p1.id, &PresetSpec::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}");

        // Copy: a new model of the copier with the presets (the copier their author).
        let mut cs = a.spec();
        cs.name = "Bob's copy".into();
        let c = models::copy(db, &a.id, &cs, "usr_bob").await.unwrap();
        assert_eq!(c.owner_id.as_deref(), Some("usr_bob"), "{n}");
        let cps = models::presets(db, &c.id).await.unwrap();
        assert_eq!(cps.len(), 2, "{n}");
        assert!(
            cps.iter()
                .all(|p| p.author_id == "usr_bob" && p.model_id == c.id),
            "{n}"
        );
        assert_eq!(
            models::presets(db, &a.id).await.unwrap().len(),
            2,
            "{n}: kept"
        );

        // Transfer: a user's model only.
        let t = models::transfer(db, &a.id, "usr_carol").await.unwrap();
        assert_eq!(t.owner_id.as_deref(), Some("usr_carol"), "{n}");
        assert_eq!(
            models::presets(db, &a.id).await.unwrap().len(),
            2,
            "{n}: presets follow"
        );
        let e = models::transfer(db, &base.id, "usr_carol")
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::NotFound,
            "{n}: the server's models are no one's"
        );

        // Delete takes the presets along.
        assert!(
            models::delete_preset(db, &a.id, &p2.id).await.unwrap(),
            "{n}"
        );
        assert!(
            !models::delete_preset(db, &a.id, &p2.id).await.unwrap(),
            "{n}"
        );
        assert!(models::delete(&b.store, &a.id).await.unwrap(), "{n}");
        assert_eq!(models::presets(db, &a.id).await.unwrap().len(), 0, "{n}");
        assert_eq!(models::search(db, "renamed").await.unwrap().len(), 0, "{n}");
    }
}
