//! Uploads in parts on every backend: parts replaced without leaving their old blob, a
//! completion that inserts the asset and releases the parts at once, failure and expiry
//! that leave no part behind, and a restart in the middle that loses no part received.

use std::time::Duration;

use bytes::Bytes;
use easel_core::asset::blob_key;
use easel_core::auth::Role;
use easel_core::upload::{Upload, UploadKind, UploadOptions, UploadSpec, UploadStatus};
use easel_core::ErrorKind;
use easel_store::{assets, collections, intents, uploads, users, Store};

use crate::testing::{backends, count};

fn spec(size: u64, parts: u32, collection: Option<&str>) -> UploadSpec {
    UploadSpec {
        file_name: "photo.png".into(),
        content_type: "image/png".into(),
        file_size: size,
        parts,
        kind: UploadKind::Image,
        options: UploadOptions {
            name: None,
            parent_id: None,
            collection_ids: collection.into_iter().map(str::to_string).collect(),
            hidden: false,
        },
    }
}

async fn part_blobs(store: &Store, owner: &str, id: &str) -> usize {
    store
        .blobs
        .list_keys(&format!("uploads/{owner}/{id}/"))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn parts_complete_into_one_asset() {
    for b in backends().await {
        let n = b.name;
        let (db, store) = (b.db(), &b.store);
        let owner = users::create_user(db, "up", Role::User).await.unwrap();
        let col = collections::create(db, &owner.id, "inbox").await.unwrap();
        let u = Upload::new(&owner.id, spec(6, 2, Some(&col.id)));
        uploads::create(db, &u).await.unwrap();
        assert_eq!(
            uploads::get(db, &u.id).await.unwrap().as_ref(),
            Some(&u),
            "{n}"
        );

        // Part 2 first, part 1 twice: the second replaces the first and its blob goes.
        uploads::put_part(store, &u, 2, Bytes::from_static(b"def"))
            .await
            .unwrap();
        uploads::put_part(store, &u, 1, Bytes::from_static(b"xyz"))
            .await
            .unwrap();
        let p1 = uploads::put_part(store, &u, 1, Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(p1.bytes, 3, "{n}");
        let parts = uploads::parts(db, &u.id).await.unwrap();
        assert_eq!(
            parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2],
            "{n}"
        );
        assert_eq!(part_blobs(store, &owner.id, &u.id).await, 2, "{n}");
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM blob_intents").await,
            0,
            "{n}: every part has its row"
        );

        // A restart: a new connection to the same database and blobs sees every part.
        let again = Store {
            db: easel_store::Db::connect(&b.db_url).await.unwrap(),
            blobs: store.blobs.clone(),
        };
        let joined = uploads::read_joined(&again, &u.id, 6).await.unwrap();
        assert_eq!(joined.as_ref(), b"abcdef", "{n}");
        assert!(uploads::read_joined(&again, &u.id, 5).await.is_err(), "{n}");

        // More bytes than announced: refused.
        let e = uploads::put_part(store, &u, 2, Bytes::from_static(b"defg"))
            .await
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("part"), "{n}");

        // Complete: once validating, no part changes and no second completion begins.
        assert!(uploads::begin_validating(db, &u.id).await.unwrap(), "{n}");
        assert!(!uploads::begin_validating(db, &u.id).await.unwrap(), "{n}");
        let e = uploads::put_part(store, &u, 1, Bytes::from_static(b"abc"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        let e = uploads::delete(store, &u.id).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        assert_eq!(
            part_blobs(store, &owner.id, &u.id).await,
            2,
            "{n}: refused parts removed"
        );
        // The asset row, the collection, the upload's state and no part left.
        let mut asset = crate::output_asset(&owner.id, "job_x", 0, b"abcdef");
        asset.job_id = None;
        asset.output_index = None;
        asset.kind = easel_core::asset::AssetKind::Upload;
        let key = blob_key(&owner.id, &asset.id);
        intents::put(store, &asset.id, &key, Bytes::from_static(b"abcdef"))
            .await
            .unwrap();
        let (done, _) = uploads::finish(store, &u.id, &asset, std::slice::from_ref(&col.id))
            .await
            .unwrap();
        assert_eq!(done.status, UploadStatus::Complete, "{n}");
        assert_eq!(done.asset_id.as_deref(), Some(asset.id.as_str()), "{n}");
        assert!(assets::get(db, &asset.id).await.unwrap().is_some(), "{n}");
        let c = collections::get(db, &col.id).await.unwrap().unwrap();
        assert_eq!(c.asset_count, 1, "{n}");
        assert!(uploads::parts(db, &u.id).await.unwrap().is_empty(), "{n}");
        assert_eq!(part_blobs(store, &owner.id, &u.id).await, 0, "{n}");
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM blob_intents").await,
            0,
            "{n}"
        );

        // Closed: no more parts, no second completion.
        let e = uploads::put_part(store, &u, 1, Bytes::from_static(b"abc"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        assert_eq!(
            part_blobs(store, &owner.id, &u.id).await,
            0,
            "{n}: refused part removed"
        );
        let other = crate::output_asset(&owner.id, "job_x", 1, b"zz");
        let e = uploads::finish(store, &u.id, &other, &[])
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        assert!(assets::get(db, &other.id).await.unwrap().is_none(), "{n}");
        assert!(!uploads::begin_validating(db, &u.id).await.unwrap(), "{n}");

        // Listing: the owner's, newest first.
        let u2 = Upload::new(&owner.id, spec(3, 1, None));
        uploads::create(db, &u2).await.unwrap();
        let listed = uploads::list(db, Some(&owner.id), None, 10).await.unwrap();
        assert_eq!(
            listed.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            [u2.id.as_str(), u.id.as_str()],
            "{n}"
        );
        assert!(uploads::list(db, Some("usr_other"), None, 10)
            .await
            .unwrap()
            .is_empty());
    }
}

/// A new upload of two parts with its first part received.
async fn with_part(store: &Store, owner: &str) -> Upload {
    let u = Upload::new(owner, spec(4, 2, None));
    uploads::create(&store.db, &u).await.unwrap();
    uploads::put_part(store, &u, 1, Bytes::from_static(b"ab"))
        .await
        .unwrap();
    u
}

#[tokio::test]
async fn failed_expired_and_deleted_uploads_leave_nothing() {
    for b in backends().await {
        let n = b.name;
        let (db, store) = (b.db(), &b.store);
        let owner = users::create_user(db, "up", Role::User).await.unwrap();

        // Failed: its parts go, the message stays.
        let failed = with_part(store, &owner.id).await;
        uploads::fail(store, &failed.id, "not an image")
            .await
            .unwrap();
        let got = uploads::get(db, &failed.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.error.as_deref()),
            (UploadStatus::Failed, Some("not an image")),
            "{n}"
        );
        assert_eq!(part_blobs(store, &owner.id, &failed.id).await, 0, "{n}");

        // Expired: not before its time; then failed, its part rows gone at once and its
        // blobs left to their intents, which the collector deletes.
        let stale = with_part(store, &owner.id).await;
        let fresh = with_part(store, &owner.id).await;
        assert_eq!(
            uploads::expire(db, easel_core::time::now()).await.unwrap(),
            0,
            "{n}"
        );
        let later = stale.expires_at + chrono::Duration::seconds(1);
        // `fresh` expires a moment after `stale`: move its expiry on.
        sqlx::query("UPDATE uploads SET expires_at = expires_at + 3600000 WHERE id = $1")
            .bind(&fresh.id)
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(uploads::expire(db, later).await.unwrap(), 1, "{n}");
        let got = uploads::get(db, &stale.id).await.unwrap().unwrap();
        assert_eq!(got.status, UploadStatus::Failed, "{n}");
        assert!(got.error.unwrap().starts_with("expired"), "{n}");
        assert!(
            uploads::parts(db, &stale.id).await.unwrap().is_empty(),
            "{n}"
        );
        assert_eq!(
            part_blobs(store, &owner.id, &stale.id).await,
            1,
            "{n}: until collected"
        );
        intents::collect(store, Duration::ZERO).await.unwrap();
        assert_eq!(part_blobs(store, &owner.id, &stale.id).await, 0, "{n}");
        assert_eq!(
            part_blobs(store, &owner.id, &fresh.id).await,
            1,
            "{n}: kept"
        );
        assert_eq!(uploads::parts(db, &fresh.id).await.unwrap().len(), 1, "{n}");

        // A crash after a part's blob was written, before its row: the collector takes it.
        let crashed = easel_core::id::new(easel_core::id::UPLOAD_PART);
        let key = format!("uploads/{}/{}/2-{crashed}", owner.id, fresh.id);
        intents::put(store, &crashed, &key, Bytes::from_static(b"cd"))
            .await
            .unwrap();
        assert_eq!(part_blobs(store, &owner.id, &fresh.id).await, 2, "{n}");
        intents::collect(store, Duration::ZERO).await.unwrap();
        assert_eq!(part_blobs(store, &owner.id, &fresh.id).await, 1, "{n}");
        assert_eq!(uploads::parts(db, &fresh.id).await.unwrap().len(), 1, "{n}");

        // Deleted: row and parts.
        assert!(uploads::delete(store, &fresh.id).await.unwrap(), "{n}");
        assert!(uploads::get(db, &fresh.id).await.unwrap().is_none(), "{n}");
        assert_eq!(part_blobs(store, &owner.id, &fresh.id).await, 0, "{n}");
        assert_eq!(
            count(db, "SELECT COUNT(*) AS n FROM upload_parts").await,
            0,
            "{n}"
        );
    }
}

/// An import (`source_url`) is recorded `validating` within its owner's bound, touched while
/// in hand, failed as stopped once untouched past `VALIDATING_STALE`, and may be deleted
/// while fetched; an upload in parts being completed is left to its expiry (and is not
/// deleted meanwhile); a touch after the end says so.
#[tokio::test]
async fn a_stopped_import_fails_once_untouched() {
    use easel_core::upload::VALIDATING_STALE;
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let owner = users::create_user(db, "imp", Role::User).await.unwrap();
        let mut s = spec(1, 1, None);
        s.kind = UploadKind::Lora;
        let mut import = Upload::new(&owner.id, s.clone());
        import.source_url = Some("hf://acme/ink".into());
        import.status = UploadStatus::Validating;
        uploads::create_import(db, &import, 1).await.unwrap();
        // The owner's one import in flight: a second is refused.
        let mut second = Upload::new(&owner.id, s);
        second.source_url = Some("hf://acme/other".into());
        second.status = UploadStatus::Validating;
        let e = uploads::create_import(db, &second, 1).await.unwrap_err();
        assert_eq!(e.kind, easel_core::ErrorKind::RateLimited, "{n}");
        assert!(uploads::get(db, &second.id).await.unwrap().is_none(), "{n}");
        let parts = with_part(&b.store, &owner.id).await;
        assert!(
            uploads::begin_validating(db, &parts.id).await.unwrap(),
            "{n}"
        );
        // Deleting a part upload being completed is a conflict; an import, not.
        assert_eq!(
            uploads::delete(&b.store, &parts.id).await.unwrap_err().kind,
            easel_core::ErrorKind::Conflict,
            "{n}"
        );
        let later = easel_core::time::now()
            + chrono::Duration::from_std(VALIDATING_STALE).unwrap()
            + chrono::Duration::seconds(1);
        assert!(uploads::touch(db, &import.id).await.unwrap(), "{n}");
        assert_eq!(
            uploads::expire(db, easel_core::time::now()).await.unwrap(),
            0,
            "{n}"
        );
        assert_eq!(uploads::expire(db, later).await.unwrap(), 1, "{n}");
        let got = uploads::get(db, &import.id).await.unwrap().unwrap();
        assert_eq!(got.status, UploadStatus::Failed, "{n}");
        assert!(got.error.unwrap().contains("import stopped"), "{n}");
        let got = uploads::get(db, &parts.id).await.unwrap().unwrap();
        assert_eq!(got.status, UploadStatus::Validating, "{n}: not an import");
        assert!(!uploads::touch(db, &import.id).await.unwrap(), "{n}");
        // The failed import no longer counts.
        uploads::create_import(db, &second, 1).await.unwrap();
        assert!(uploads::delete(&b.store, &second.id).await.unwrap(), "{n}");
        assert!(!uploads::touch(db, &second.id).await.unwrap(), "{n}");
    }
}

/// A LoRA's upload completes into a model whose blob its row keeps from the collector; a
/// crash between the blob and the row leaves only an intent, which the collector turns into
/// nothing; deleting the model deletes its blob; a closed upload makes no second model.
#[tokio::test]
async fn a_lora_upload_completes_into_a_model_and_its_blob() {
    use easel_core::model::{lora_blob_key, ModelSpec};
    use easel_store::models;
    for b in backends().await {
        let n = b.name;
        let (db, store) = (b.db(), &b.store);
        let owner = users::create_user(db, "lo", Role::User).await.unwrap();
        let mut s = spec(3, 1, None);
        s.kind = UploadKind::Lora;
        s.file_name = "style.safetensors".into();
        let u = Upload::new(&owner.id, s);
        uploads::create(db, &u).await.unwrap();
        uploads::put_part(store, &u, 1, Bytes::from_static(b"abc"))
            .await
            .unwrap();
        let model_id = easel_core::id::new(easel_core::id::MODEL);
        let key = lora_blob_key(&model_id);
        let lora = ModelSpec::user_lora(u.model_name(), &key);
        intents::put(store, &model_id, &key, Bytes::from_static(b"abc"))
            .await
            .unwrap();
        let done = uploads::finish_model(store, &u.id, &model_id, &lora, 3)
            .await
            .unwrap();
        assert_eq!(
            (
                done.status,
                done.model_id.as_deref(),
                done.asset_id.as_deref()
            ),
            (UploadStatus::Complete, Some(model_id.as_str()), None),
            "{n}"
        );
        assert_eq!(part_blobs(store, &owner.id, &u.id).await, 0, "{n}");
        let m = models::get(db, &model_id).await.unwrap().unwrap();
        assert_eq!(m.name, "style", "{n}");
        assert_eq!(m.owner_id.as_deref(), Some(owner.id.as_str()), "{n}");
        assert_eq!(m.blob_key(), Some(key.as_str()), "{n}");
        // Its row keeps its blob from the collector, even under an intent (as a delete
        // that failed to commit would leave).
        intents::record(store, &[(model_id.clone(), key.clone())])
            .await
            .unwrap();
        intents::collect(store, Duration::ZERO).await.unwrap();
        intents::collect(store, Duration::ZERO).await.unwrap();
        assert_eq!(&store.blobs.get(&key).await.unwrap()[..], b"abc", "{n}");
        // The store keeps a LoRA's source its own: not another model's blob, never changed.
        let mut other = ModelSpec::user_lora("x", &key);
        other.privacy = None;
        let e = models::create_owned(db, &other, &owner.id)
            .await
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("source"), "{n}");
        let mut moved = m.spec();
        moved.source = Some(format!("blob:{}", lora_blob_key("mdl_other")));
        let e = models::update(db, &model_id, &moved).await.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("source"), "{n}");
        // A second completion of the closed upload: a conflict, no second model.
        let again = easel_core::id::new(easel_core::id::MODEL);
        let e = uploads::finish_model(store, &u.id, &again, &lora, 3)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{n}");
        assert!(models::get(db, &again).await.unwrap().is_none(), "{n}");

        // A crash after the blob, before the row: the collector deletes the blob.
        let lost = easel_core::id::new(easel_core::id::MODEL);
        let lost_key = lora_blob_key(&lost);
        intents::put(store, &lost, &lost_key, Bytes::from_static(b"x"))
            .await
            .unwrap();
        intents::collect(store, Duration::ZERO).await.unwrap();
        assert!(store.blobs.get(&lost_key).await.is_err(), "{n}");

        // Deleting the model deletes its blob, and leaves no intent behind.
        assert!(models::delete(store, &model_id).await.unwrap(), "{n}");
        assert!(store.blobs.get(&key).await.is_err(), "{n}");
        assert_eq!(
            count(
                db,
                &format!("SELECT COUNT(*) AS n FROM blob_intents WHERE asset_id = '{model_id}'")
            )
            .await,
            0,
            "{n}"
        );
    }
}
