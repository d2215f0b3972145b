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
        let (page, total) = models::list(db, 0, 2).await.unwrap();
        assert_eq!(total, 5, "{n}");
        assert_eq!(names(page), ["m-a", "m-b"], "{n}");
        let (page, total) = models::list(db, 2, 2).await.unwrap();
        assert_eq!(
            (names(page), total),
            (vec!["m-c".to_string(), "sd-1.5".into()], 5),
            "{n}"
        );
        let (page, _) = models::list(db, 4, 2).await.unwrap();
        assert_eq!(names(page), ["sdxl"], "{n}");
        let (page, _) = models::list(db, 10, 2).await.unwrap();
        assert!(page.is_empty(), "{n}");

        // Delete frees the names.
        assert!(models::delete(db, &sd15.id).await.unwrap(), "{n}");
        assert!(
            !models::delete(db, &sd15.id).await.unwrap(),
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
        assert_eq!(models::list(db, 0, 100).await.unwrap().1, 5, "{n}");
    }
}
