//! Canvases on every backend: saves that replace the document and the asset's size and hash
//! at once, locks that only their token passes and that expire, snapshots kept to the limit,
//! deletion refused under a lock, nothing left behind by a delete, and all of it there after
//! a restart.

use easel_core::asset::{Asset, AssetEdit, AssetKind};
use easel_core::auth::Role;
use easel_core::canvas::MAX_SNAPSHOTS;
use easel_core::time;
use easel_core::ErrorKind;
use easel_store::canvases::{self, Save};
use easel_store::{assets, collections, users, Db};

use crate::testing::{backends, count};

fn canvas_asset(owner: &str, doc: &str) -> Asset {
    let now = time::now();
    Asset {
        id: easel_core::id::new(easel_core::id::ASSET),
        owner_id: owner.into(),
        job_id: None,
        output_index: None,
        kind: AssetKind::Canvas,
        mime_type: easel_core::canvas::MIME.into(),
        width: None,
        height: None,
        bytes: doc.len() as u64,
        sha256: canvases::hash(doc),
        metadata: serde_json::json!({}),
        parent_id: None,
        root_id: None,
        name: Some("board".into()),
        description: None,
        privacy: Default::default(),
        hidden: false,
        created_at: now,
        updated_at: now,
    }
}

fn doc_save<'a>(author: &'a str, doc: &'a str, lock_id: Option<&'a str>) -> Save<'a> {
    Save {
        author_id: author,
        document: Some(doc),
        lock_id,
        snapshot: true,
        ..Default::default()
    }
}

async fn rows(db: &Db, table: &str, id: &str) -> i64 {
    count(
        db,
        &format!("SELECT COUNT(*) AS n FROM {table} WHERE asset_id = '{id}'"),
    )
    .await
}

#[tokio::test]
async fn canvases_save_lock_snapshot_and_delete() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let alice = users::create_user(db, "canvas-alice", Role::User)
            .await
            .unwrap();
        let admin = users::create_user(db, "canvas-admin", Role::Admin)
            .await
            .unwrap();
        let col = collections::create(db, &alice.id, "boards").await.unwrap();
        let v1 = r#"{"layers":[]}"#;
        let a = canvas_asset(&alice.id, v1);
        canvases::create(db, &a, v1, std::slice::from_ref(&col.id), None)
            .await
            .unwrap();
        let now = time::now();
        let c = canvases::get(db, &a.id, now).await.unwrap().unwrap();
        assert_eq!((c.version, c.lock.is_none()), (1, true), "{n}");
        assert_eq!(
            canvases::document(db, &a.id).await.unwrap().as_deref(),
            Some(v1)
        );
        assert_eq!(
            count(
                db,
                &format!(
                    "SELECT COUNT(*) AS n FROM collection_items WHERE item_id = '{}'",
                    a.id
                )
            )
            .await,
            1,
            "{n}: in its collection"
        );
        assert_eq!(rows(db, "canvas_snapshots", &a.id).await, 1, "{n}");
        // An image is not a canvas.
        assert!(canvases::get(db, "ast_nope", now).await.unwrap().is_none());

        // A save replaces the document, the asset's size and hash, the version.
        let v2 = r#"{"layers":[{"asset":"ast_x"}]}"#;
        let s = canvases::save(db, &a.id, &doc_save(&alice.id, v2, None), now)
            .await
            .unwrap();
        assert_eq!(s.canvas.version, 2, "{n}");
        assert_eq!(
            (s.asset.bytes, s.asset.sha256.as_str()),
            (v2.len() as u64, canvases::hash(v2).as_str()),
            "{n}"
        );
        // Saved again unchanged: no new snapshot; `snapshot: false`: none either.
        canvases::save(db, &a.id, &doc_save(&alice.id, v2, None), now)
            .await
            .unwrap();
        let mut quiet = doc_save(&alice.id, "[1]", None);
        quiet.snapshot = false;
        canvases::save(db, &a.id, &quiet, now).await.unwrap();
        assert_eq!(rows(db, "canvas_snapshots", &a.id).await, 2, "{n}");
        assert_eq!(
            canvases::document(db, &a.id).await.unwrap().as_deref(),
            Some("[1]")
        );

        // The admin locks it: alice's save without the token is refused naming the holder.
        let until = now + chrono::Duration::minutes(10);
        let locked = canvases::lock(db, &a.id, &admin.id, until, now)
            .await
            .unwrap();
        let token = locked.lock.as_ref().unwrap().id.clone().unwrap();
        let e = canvases::save(db, &a.id, &doc_save(&alice.id, "[2]", None), now)
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        assert!(e.message.contains("canvas-admin"), "{n}: {}", e.message);
        let e = canvases::save(db, &a.id, &doc_save(&alice.id, "[2]", Some("lck_x")), now)
            .await
            .err()
            .unwrap();
        assert_eq!(e.field.as_deref(), Some("lock_id"), "{n}");
        // A second lock, by anyone, is refused; so is a delete and an unlock without token.
        let e = canvases::lock(db, &a.id, &alice.id, until, now)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        let e = assets::delete(db, &a.id).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        let e = canvases::unlock(db, &a.id, None, false, now)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        // With the token a save passes, and extends the lock.
        let later = now + chrono::Duration::minutes(20);
        let mut with = doc_save(&admin.id, "[2]", Some(&token));
        with.lock_until = Some(later);
        with.edit = AssetEdit {
            name: Some("board 2".into()),
            ..Default::default()
        };
        let s = canvases::save(db, &a.id, &with, now).await.unwrap();
        assert_eq!(s.canvas.lock.unwrap().expires_at, later, "{n}");
        assert_eq!(s.asset.name.as_deref(), Some("board 2"), "{n}");
        let (snaps, _) = canvases::snapshots(db, &a.id, None, 10).await.unwrap();
        assert_eq!(
            (snaps[0].document.as_str(), snaps[0].author_id.as_str()),
            ("[2]", admin.id.as_str()),
            "{n}: newest first, by its author"
        );

        // After the lock's end it reads as none: anyone saves without a token.
        let after = later + chrono::Duration::seconds(1);
        assert!(canvases::get(db, &a.id, after)
            .await
            .unwrap()
            .unwrap()
            .lock
            .is_none());
        canvases::save(db, &a.id, &doc_save(&alice.id, "[3]", None), after)
            .await
            .unwrap();
        // Extending a lock that is not held is refused.
        let mut ext = doc_save(&alice.id, "[3]", None);
        ext.lock_until = Some(after + chrono::Duration::minutes(1));
        let e = canvases::save(db, &a.id, &ext, after).await.err().unwrap();
        assert_eq!(e.field.as_deref(), Some("lock_expires_at"), "{n}");
        // Force ends a live lock.
        let relock = after + chrono::Duration::minutes(5);
        canvases::lock(db, &a.id, &admin.id, relock, after)
            .await
            .unwrap();
        let c = canvases::unlock(db, &a.id, None, true, after)
            .await
            .unwrap();
        assert!(c.lock.is_none(), "{n}");

        // Snapshots stop at the limit, the oldest dropped; pages go back in time.
        for i in 0..MAX_SNAPSHOTS + 5 {
            canvases::save(
                db,
                &a.id,
                &doc_save(&alice.id, &format!("[{i}, 0]"), None),
                now,
            )
            .await
            .unwrap();
        }
        assert_eq!(
            rows(db, "canvas_snapshots", &a.id).await,
            MAX_SNAPSHOTS as i64,
            "{n}"
        );
        let (first, more) = canvases::snapshots(db, &a.id, None, 3).await.unwrap();
        assert!(more, "{n}");
        assert_eq!(first[0].document, format!("[{}, 0]", MAX_SNAPSHOTS + 4));
        assert!(first[0].version > first[1].version, "{n}: newest first");
        let (next, _) = canvases::snapshots(db, &a.id, Some(first[2].version), 1)
            .await
            .unwrap();
        assert_eq!(next[0].document, format!("[{}, 0]", MAX_SNAPSHOTS + 1));
        let (all, more) = canvases::snapshots(db, &a.id, None, 1000).await.unwrap();
        assert_eq!((all.len(), more), (MAX_SNAPSHOTS as usize, false), "{n}");

        // A restart (a new connection) sees the canvas as it was left.
        let again = Db::connect(&b.db_url).await.unwrap();
        let c = canvases::get(&again, &a.id, now).await.unwrap().unwrap();
        assert_eq!(c.version, 2 + 2 + 1 + 1 + (MAX_SNAPSHOTS + 5) as u64, "{n}");

        // A delete takes the canvas row and its snapshots with the asset.
        assert!(assets::delete(db, &a.id).await.unwrap(), "{n}");
        assert_eq!(rows(db, "canvases", &a.id).await, 0, "{n}");
        assert_eq!(rows(db, "canvas_snapshots", &a.id).await, 0, "{n}");
        let e = canvases::save(db, &a.id, &doc_save(&alice.id, "[]", None), now)
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}");
    }
}

#[tokio::test]
async fn a_deleted_thumbnail_leaves_its_canvas_without_one() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let u = users::create_user(db, "thumbs", Role::User).await.unwrap();
        let a = canvas_asset(&u.id, "{}");
        canvases::create(db, &a, "{}", &[], None).await.unwrap();
        let thumb = |bytes: &[u8]| Asset {
            job_id: None,
            output_index: None,
            kind: AssetKind::Upload,
            parent_id: Some(a.id.clone()),
            ..crate::output_asset(&u.id, "job_none", 0, bytes)
        };
        let (t1, t2) = (thumb(b"one"), thumb(b"two"));
        let now = time::now();
        let save = |t| Save {
            author_id: &u.id,
            thumbnail: Some(t),
            ..Default::default()
        };
        // The thumbnail's row comes with the save; the one it replaces is named.
        let saved = canvases::save(db, &a.id, &save(&t1), now).await.unwrap();
        assert_eq!(saved.canvas.thumbnail_id.as_deref(), Some(t1.id.as_str()));
        assert_eq!(saved.replaced_thumbnail, None, "{n}");
        assert!(assets::get(db, &t1.id).await.unwrap().is_some(), "{n}");
        let saved = canvases::save(db, &a.id, &save(&t2), now).await.unwrap();
        assert_eq!(saved.replaced_thumbnail.as_deref(), Some(t1.id.as_str()));
        // Migration 0023 hides the thumbnails stored visible before it (as t2 is here).
        assert!(
            !assets::get(db, &t2.id).await.unwrap().unwrap().hidden,
            "{n}"
        );
        let migration = match n {
            "postgres" => include_str!("../../migrations/postgres/0023_hidden_thumbnails.sql"),
            _ => include_str!("../../migrations/sqlite/0023_hidden_thumbnails.sql"),
        };
        sqlx::raw_sql(migration).execute(&db.pool).await.unwrap();
        assert!(
            assets::get(db, &t2.id).await.unwrap().unwrap().hidden,
            "{n}"
        );
        // Refused by a lock: the thumbnail's row is not inserted.
        let other = users::create_user(db, "thumbs-2", Role::User)
            .await
            .unwrap();
        canvases::lock(
            db,
            &a.id,
            &other.id,
            now + chrono::Duration::minutes(1),
            now,
        )
        .await
        .unwrap();
        let t3 = thumb(b"three");
        assert!(canvases::save(db, &a.id, &save(&t3), now).await.is_err());
        assert!(assets::get(db, &t3.id).await.unwrap().is_none(), "{n}");
        canvases::unlock(db, &a.id, None, true, now).await.unwrap();
        let thumb = t2;
        assets::delete(db, &thumb.id).await.unwrap();
        let c = canvases::get(db, &a.id, now).await.unwrap().unwrap();
        assert_eq!(c.thumbnail_id, None, "{n}");
    }
}
