//! Tags on assets, unique user names and usage by model, on every backend.

use easel_core::auth::Role;
use easel_core::ErrorKind;
use easel_store::{assets, tags, users};

use crate::testing::backends;

#[tokio::test]
async fn tags_filter_count_and_go_with_their_asset() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "tagger", Role::User).await.unwrap();
        let other = users::create_user(db, "other", Role::User).await.unwrap();
        let mine = |i: u32| crate::output_asset(&owner.id, "job_x", i, &[i as u8]);
        let (a, c) = (mine(0), mine(1));
        let theirs = crate::output_asset(&other.id, "job_y", 0, b"y");
        for x in [&a, &c, &theirs] {
            assets::insert(db, x).await.unwrap();
        }
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let ch = tags::change(db, &owner.id, &a.id, &s(&["fox", "snow"]), &[], true)
            .await
            .unwrap();
        assert_eq!(
            (ch.added.len(), ch.tags.clone()),
            (2, s(&["fox", "snow"])),
            "{n}"
        );
        tags::change(db, &owner.id, &c.id, &s(&["fox"]), &[], true)
            .await
            .unwrap();
        tags::change(db, &other.id, &theirs.id, &s(&["fox"]), &[], true)
            .await
            .unwrap();
        // Strict: a tag it has, or lacks, is a conflict and changes nothing.
        let e = tags::change(db, &owner.id, &a.id, &s(&["fox", "new"]), &[], true)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        let e = tags::change(db, &owner.id, &a.id, &[], &s(&["nope"]), true)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        // Lenient: skipped.
        let ch = tags::change(
            db,
            &owner.id,
            &a.id,
            &s(&["fox"]),
            &s(&["snow", "nope"]),
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            (ch.added, ch.deleted, ch.tags),
            (vec![], s(&["snow"]), s(&["fox"])),
            "{n}"
        );
        let counts: Vec<(String, u64)> = tags::list(db, &owner.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.count))
            .collect();
        assert_eq!(
            counts,
            vec![("fox".to_string(), 2)],
            "{n}: own tags only, used ones only"
        );
        let filter = assets::AssetFilter {
            owner_id: owner.id.clone(),
            tags: s(&["fox"]),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(assets::list(db, &filter).await.unwrap().len(), 2, "{n}");
        let of = tags::of_assets(db, &[&a.id, &c.id, &theirs.id])
            .await
            .unwrap();
        assert_eq!(of.len(), 3, "{n}");
        // Deleting an asset takes its tags.
        assert!(assets::delete(db, &a.id).await.unwrap(), "{n}");
        assert_eq!(tags::list(db, &owner.id).await.unwrap()[0].count, 1, "{n}");
        assert!(
            tags::of_assets(db, &[&a.id]).await.unwrap().is_empty(),
            "{n}"
        );
    }
}

#[tokio::test]
async fn user_names_are_unique() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        users::create_user(db, "ann", Role::User).await.unwrap();
        let e = users::create_user(db, "ann", Role::Admin)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        assert!(e.message.contains("ann"), "{n}: {e}");
        let found = users::user_by_name(db, "ann").await.unwrap().unwrap();
        assert_eq!(found.role, Role::User, "{n}");
        assert!(
            users::user_by_name(db, "nobody").await.unwrap().is_none(),
            "{n}"
        );
    }
}

#[tokio::test]
async fn records_are_edited_and_public_ones_listed() {
    use easel_core::asset::{AssetEdit, Privacy};
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "rec", Role::User).await.unwrap();
        let a = crate::output_asset(&owner.id, "job_r", 0, b"r");
        let c = crate::output_asset(&owner.id, "job_r", 1, b"s");
        for x in [&a, &c] {
            assets::insert(db, x).await.unwrap();
        }
        let got = assets::get(db, &a.id).await.unwrap().unwrap();
        assert_eq!(
            (got.privacy, got.name.clone()),
            (Privacy::Private, None),
            "{n}"
        );
        let e = AssetEdit {
            name: Some("fox".into()),
            description: Some("red".into()),
            privacy: Some(Privacy::Public),
            hidden: None,
        };
        let edited = assets::edit(db, &a.id, &e).await.unwrap().unwrap();
        assert_eq!(
            (
                edited.name.as_deref(),
                edited.description.as_deref(),
                edited.privacy
            ),
            (Some("fox"), Some("red"), Privacy::Public),
            "{n}"
        );
        assert!(edited.updated_at >= edited.created_at, "{n}");
        // Hidden: out of lists that ask for visible ones and of public reads, in those that
        // ask for hidden ones; shown again, back.
        let (owner_id, id) = (&a.owner_id, &a.id);
        let listed = |hidden: Option<bool>| {
            let f = assets::AssetFilter {
                owner_id: owner_id.clone(),
                hidden,
                limit: 10,
                ..Default::default()
            };
            async move {
                assets::list(db, &f)
                    .await
                    .unwrap()
                    .iter()
                    .any(|x| x.id == *id)
            }
        };
        let hide = |h: bool| AssetEdit {
            hidden: Some(h),
            ..Default::default()
        };
        let col = easel_store::collections::create(db, owner_id, "shown")
            .await
            .unwrap();
        easel_store::collections::change(
            db,
            &col.id,
            easel_store::collections::Kind::Asset,
            std::slice::from_ref(id),
            &[],
        )
        .await
        .unwrap();
        easel_store::tags::change(db, owner_id, id, &["kept".to_string()], &[], false)
            .await
            .unwrap();
        let counts = || async {
            let c = easel_store::collections::get(db, &col.id)
                .await
                .unwrap()
                .unwrap()
                .asset_count;
            let t = easel_store::tags::list(db, owner_id)
                .await
                .unwrap()
                .iter()
                .find(|t| t.name == "kept")
                .map_or(0, |t| t.count);
            (c, t)
        };
        assert_eq!(counts().await, (1, 1), "{n}");
        let hidden = assets::edit(db, &a.id, &hide(true)).await.unwrap().unwrap();
        assert!(hidden.hidden, "{n}");
        assert_eq!(hidden.privacy, Privacy::Public, "{n}: nothing else changes");
        assert!(!listed(Some(false)).await, "{n}");
        assert!(listed(Some(true)).await, "{n}");
        assert!(listed(None).await, "{n}");
        assert_eq!(counts().await, (0, 0), "{n}: counts follow the lists");
        let public = assets::list_public(db, None, &[], 100).await.unwrap();
        assert!(public.iter().all(|x| x.id != a.id), "{n}");
        assert!(
            !assets::edit(db, &a.id, &hide(false))
                .await
                .unwrap()
                .unwrap()
                .hidden
        );
        assert!(listed(Some(false)).await, "{n}");
        // "" clears; absent stays.
        let cleared = assets::edit(
            db,
            &a.id,
            &AssetEdit {
                description: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            (cleared.name.as_deref(), cleared.description),
            (Some("fox"), None),
            "{n}"
        );
        assert!(
            assets::edit(db, "ast_missing", &e).await.unwrap().is_none(),
            "{n}"
        );
        let public = assets::list_public(db, None, &[], 10).await.unwrap();
        assert!(public.iter().any(|x| x.id == a.id), "{n}");
        assert!(
            !public.iter().any(|x| x.id == c.id),
            "{n}: private ones are not listed"
        );
        let older = assets::list_public(db, Some(&a.id), &[], 10).await.unwrap();
        tags::change(db, &owner.id, &a.id, &["pub".to_string()], &[], true)
            .await
            .unwrap();
        let tagged = assets::list_public(db, None, &["pub".to_string(), "x".to_string()], 10)
            .await
            .unwrap();
        assert_eq!(tagged.len(), 1, "{n}");
        assert!(
            assets::list_public(db, None, &["x".to_string()], 10)
                .await
                .unwrap()
                .is_empty(),
            "{n}"
        );
        assert!(!older.iter().any(|x| x.id == a.id), "{n}: the cursor");
    }
}

#[tokio::test]
async fn collections_count_filter_and_lose_deleted_items() {
    use easel_store::collections::{self, Kind};
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "col", Role::User).await.unwrap();
        let c = collections::create(db, &owner.id, "favourites")
            .await
            .unwrap();
        assert_eq!((c.asset_count, c.model_count), (0, 0), "{n}");
        let a = crate::output_asset(&owner.id, "job_c", 0, b"a");
        let d = crate::output_asset(&owner.id, "job_c", 1, b"d");
        for x in [&a, &d] {
            assets::insert(db, x).await.unwrap();
        }
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        collections::change(db, &c.id, Kind::Asset, &s(&[&a.id, &d.id, &a.id]), &[])
            .await
            .unwrap();
        collections::change(db, &c.id, Kind::Model, &s(&["mdl_x"]), &[])
            .await
            .unwrap();
        let got = collections::get(db, &c.id).await.unwrap().unwrap();
        assert_eq!(
            (got.asset_count, got.model_count),
            (2, 1),
            "{n}: a repeat adds nothing"
        );
        let f = assets::AssetFilter {
            owner_id: owner.id.clone(),
            collection_id: Some(c.id.clone()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(assets::list(db, &f).await.unwrap().len(), 2, "{n}");
        // A deleted asset leaves the collection; a removal of what is not there is a no-op.
        assert!(assets::delete(db, &a.id).await.unwrap(), "{n}");
        collections::change(db, &c.id, Kind::Asset, &[], &s(&["ast_none"]))
            .await
            .unwrap();
        assert_eq!(
            collections::get(db, &c.id)
                .await
                .unwrap()
                .unwrap()
                .asset_count,
            1,
            "{n}"
        );
        let of = collections::of_items(db, Kind::Asset, &[&d.id])
            .await
            .unwrap();
        assert_eq!(of[&d.id], vec![c.id.clone()], "{n}");
        let renamed = collections::rename(db, &c.id, "best")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renamed.name, "best", "{n}");
        assert_eq!(
            collections::list(db, &owner.id, None, 10)
                .await
                .unwrap()
                .len(),
            1,
            "{n}"
        );
        assert!(collections::delete(db, &c.id).await.unwrap(), "{n}");
        assert!(collections::get(db, &c.id).await.unwrap().is_none(), "{n}");
        assert!(
            assets::get(db, &d.id).await.unwrap().is_some(),
            "{n}: items stay"
        );
    }
}

/// Text search: words of the prompt, name, description and tags (as prefixes, every word
/// needed), kept current by the database through edits, tag changes and deletion; public
/// assets of others with `with_public`; offset pages with the total; both orders.
#[tokio::test]
async fn search_finds_words_and_follows_edits_tags_and_deletion() {
    use easel_core::asset::{AssetEdit, Privacy};
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "searcher", Role::User)
            .await
            .unwrap();
        let other = users::create_user(db, "someone", Role::User).await.unwrap();
        let with = |who: &str, i: u32, prompt: &str| {
            let mut a = crate::output_asset(who, "job_s", i, &[i as u8]);
            a.metadata = serde_json::json!({"prompt": prompt, "seed": i});
            a
        };
        let fox = with(&owner.id, 0, "A red fox in the snow");
        let mut boat = with(&owner.id, 1, "a boat on a lake, Fjällräven");
        boat.name = Some("lake.png".into());
        let theirs = with(&other.id, 2, "a red fox at night");
        let mut broken = with(&owner.id, 3, "");
        broken.metadata = serde_json::json!("just text, no prompt");
        for x in [&fox, &boat, &theirs, &broken] {
            assets::insert(db, x).await.unwrap();
        }
        let find = |text: &str, with_public: bool| assets::AssetFilter {
            owner_id: owner.id.clone(),
            text: Some(text.to_string()),
            with_public,
            limit: 10,
            ..Default::default()
        };
        let ids = |v: (Vec<easel_core::asset::Asset>, u64)| -> (Vec<String>, u64) {
            (v.0.into_iter().map(|a| a.id).collect(), v.1)
        };
        let search = |f: assets::AssetFilter| async move {
            ids(assets::search(db, &f, assets::SearchOrder::CreatedDesc, 0)
                .await
                .unwrap())
        };
        assert_eq!(
            search(find("fox", false)).await,
            (vec![fox.id.clone()], 1),
            "{n}"
        );
        // Every word, as a prefix, any case; punctuation is not syntax.
        assert_eq!(search(find("RED sno", false)).await.1, 1, "{n}");
        assert_eq!(search(find("red boat", false)).await.1, 0, "{n}");
        assert_eq!(search(find("\"fox\" * (-:", false)).await.1, 1, "{n}");
        assert_eq!(
            search(find("fjällräven", false)).await.0,
            vec![boat.id.clone()],
            "{n}"
        );
        // File names split at their dots on both databases.
        assert_eq!(
            search(find("png", false)).await.0,
            vec![boat.id.clone()],
            "{n}"
        );
        // A text without letters or digits matches nothing (it is not "no text").
        assert_eq!(search(find("--- !", false)).await.1, 0, "{n}");
        // Not others' private assets; their public ones with `with_public`.
        assert_eq!(search(find("fox", true)).await.1, 1, "{n}");
        let public = AssetEdit {
            privacy: Some(Privacy::Public),
            ..Default::default()
        };
        assets::edit(db, &theirs.id, &public)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(search(find("fox", true)).await.1, 2, "{n}");
        assert_eq!(search(find("fox", false)).await.1, 1, "{n}");
        // Names, descriptions and tags, as they change.
        let named = AssetEdit {
            name: Some("Sunset harbour".into()),
            description: Some("golden light".into()),
            ..Default::default()
        };
        assets::edit(db, &boat.id, &named).await.unwrap().unwrap();
        assert_eq!(
            search(find("harbour golden", false)).await.0,
            vec![boat.id.clone()],
            "{n}"
        );
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        tags::change(db, &owner.id, &broken.id, &s(&["keeper"]), &[], true)
            .await
            .unwrap();
        assert_eq!(
            search(find("keeper", false)).await.0,
            vec![broken.id.clone()],
            "{n}"
        );
        tags::change(db, &owner.id, &broken.id, &[], &s(&["keeper"]), true)
            .await
            .unwrap();
        assert_eq!(search(find("keeper", false)).await.1, 0, "{n}");
        // No words: every asset of the scope, paged by offset, both orders.
        let all = assets::AssetFilter {
            text: None,
            ..find("", false)
        };
        let (first, total) = ids(assets::search(
            db,
            &assets::AssetFilter {
                limit: 2,
                ..all.clone()
            },
            assets::SearchOrder::CreatedAsc,
            1,
        )
        .await
        .unwrap());
        assert_eq!(
            (first, total),
            (vec![boat.id.clone(), broken.id.clone()], 3),
            "{n}"
        );
        // Deleted: gone from the search.
        assert!(assets::delete(db, &fox.id).await.unwrap(), "{n}");
        assert_eq!(search(find("fox", false)).await.1, 0, "{n}");
        assert_eq!(
            search(find("fox", true)).await.0,
            vec![theirs.id.clone()],
            "{n}"
        );
    }
}

/// Lineage roots: an asset derived from a derived one has the first as its root; the root
/// filter lists the lineage; edit-time bounds narrow by the record's last edit.
#[tokio::test]
async fn roots_follow_the_lineage_and_edit_times_filter() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "lineage", Role::User).await.unwrap();
        let a = crate::output_asset(&owner.id, "job_l", 0, b"a");
        let mut b1 = crate::output_asset(&owner.id, "job_l", 1, b"b");
        b1.parent_id = Some(a.id.clone());
        let mut c = crate::output_asset(&owner.id, "job_l", 2, b"c");
        c.parent_id = Some(b1.id.clone());
        let mut orphan = crate::output_asset(&owner.id, "job_l", 3, b"o");
        orphan.parent_id = Some("ast_01jgone000000000000000000".into());
        for x in [&a, &b1, &c, &orphan] {
            assets::insert(db, x).await.unwrap();
        }
        let root = |id: String| async move { assets::get(db, &id).await.unwrap().unwrap().root_id };
        assert_eq!(root(a.id.clone()).await, None, "{n}");
        assert_eq!(
            root(b1.id.clone()).await.as_deref(),
            Some(a.id.as_str()),
            "{n}"
        );
        assert_eq!(
            root(c.id.clone()).await.as_deref(),
            Some(a.id.as_str()),
            "{n}"
        );
        assert_eq!(
            root(orphan.id.clone()).await.as_deref(),
            Some("ast_01jgone000000000000000000"),
            "{n}: a parent that is gone is its own root"
        );
        let f = assets::AssetFilter {
            owner_id: owner.id.clone(),
            root_id: Some(a.id.clone()),
            limit: 10,
            ..Default::default()
        };
        let got: Vec<String> = assets::list(db, &f)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(got, vec![c.id.clone(), b1.id.clone()], "{n}");
        // Edit times: only what was edited since.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mark = easel_core::time::to_millis(easel_core::time::now());
        let named = easel_core::asset::AssetEdit {
            name: Some("later".into()),
            ..Default::default()
        };
        assets::edit(db, &a.id, &named).await.unwrap().unwrap();
        let since = assets::AssetFilter {
            owner_id: owner.id.clone(),
            updated_after: Some(mark),
            limit: 10,
            ..Default::default()
        };
        let got: Vec<String> = assets::list(db, &since)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(got, vec![a.id.clone()], "{n}");
        let until = assets::AssetFilter {
            updated_after: None,
            updated_before: Some(mark),
            ..since
        };
        assert_eq!(assets::list(db, &until).await.unwrap().len(), 3, "{n}");
    }
}

/// Migration 0013's backfill, run on rows as they were before it (no `root_id`), gives the
/// roots the insert gives: up the chain that is still there, and a gone ancestor is a root.
#[tokio::test]
async fn the_roots_backfill_follows_the_insert_rule() {
    use easel_store::db::Backend;
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "backfill", Role::User)
            .await
            .unwrap();
        let mut made: Vec<String> = Vec::new();
        for (i, parent) in [None, Some(0), Some(1), Some(usize::MAX), Some(3)]
            .into_iter()
            .enumerate()
        {
            let mut a = crate::output_asset(&owner.id, "job_r", i as u32, &[i as u8]);
            a.parent_id = match parent {
                None => None,
                Some(usize::MAX) => Some("ast_01jgone000000000000000001".to_string()),
                Some(p) => Some(made[p].clone()),
            };
            assets::insert(db, &a).await.unwrap();
            made.push(a.id);
        }
        let inserted: Vec<Option<String>> = {
            let mut v = Vec::new();
            for id in &made {
                v.push(assets::get(db, id).await.unwrap().unwrap().root_id);
            }
            v
        };
        sqlx::query("UPDATE assets SET root_id = NULL WHERE owner_id = $1")
            .bind(&owner.id)
            .execute(&db.pool)
            .await
            .unwrap();
        let file = match db.backend {
            Backend::Sqlite => include_str!("../../migrations/sqlite/0013_asset_roots.sql"),
            Backend::Postgres => include_str!("../../migrations/postgres/0013_asset_roots.sql"),
        };
        let update = &file[file.find("UPDATE assets").unwrap()..];
        let update = &update[..=update.find(';').unwrap()];
        sqlx::query(update).execute(&db.pool).await.unwrap();
        let mut backfilled = Vec::new();
        for id in &made {
            backfilled.push(assets::get(db, id).await.unwrap().unwrap().root_id);
        }
        assert_eq!(backfilled, inserted, "{n}");
        assert_eq!(inserted[2].as_deref(), Some(made[0].as_str()), "{n}");
        assert_eq!(
            inserted[4].as_deref(),
            Some("ast_01jgone000000000000000001"),
            "{n}"
        );
    }
}
