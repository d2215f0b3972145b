//! Users and API keys.

use easel_core::auth::{self, Role};
use easel_core::ErrorKind;
use easel_store::users;

use crate::testing::backends;

#[tokio::test]
async fn keys_authenticate_until_revoked() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let root = users::create_user(db, "root", Role::Admin).await.unwrap();
        let bob = users::create_user(db, "bob", Role::User).await.unwrap();
        assert!(
            easel_core::id::is_valid(easel_core::id::USER, &root.id),
            "{n}"
        );
        assert_eq!(
            users::get_user(db, &bob.id).await.unwrap(),
            Some(bob.clone()),
            "{n}"
        );
        assert_eq!(users::list_users(db).await.unwrap().len(), 2, "{n}");
        assert!(!users::has_admin_key(db).await.unwrap(), "{n}: no keys yet");

        let (rk, rfull) = users::create_key(db, &root.id, "cli", None).await.unwrap();
        assert!(rfull.starts_with("esk_key_"), "{n}: {rfull}");
        assert_eq!(rk.prefix, rfull[..12], "{n}");
        assert_eq!(
            (rk.role, rk.user_name.as_str()),
            (Role::Admin, "root"),
            "{n}"
        );
        let p = users::authenticate(db, &rfull).await.unwrap().expect(n);
        assert_eq!(
            (p.user_id.as_str(), p.role, p.key_id.as_str()),
            (root.id.as_str(), Role::Admin, rk.id.as_str()),
            "{n}"
        );
        assert!(users::has_admin_key(db).await.unwrap(), "{n}");

        let (bk, bfull) = users::create_key(db, &bob.id, "laptop", None)
            .await
            .unwrap();
        let p = users::authenticate(db, &bfull).await.unwrap().expect(n);
        assert_eq!(
            (p.user_id.as_str(), p.role),
            (bob.id.as_str(), Role::User),
            "{n}"
        );

        // Wrong secret for a real key id, other keys' secrets, garbage.
        let (id, secret) = auth::split_key(&bfull).unwrap();
        let mut wrong = secret.to_string();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        let (_, rsecret) = auth::split_key(&rfull).unwrap();
        for bad in [
            auth::join_key(id, &wrong),
            auth::join_key(id, rsecret),
            auth::join_key(&rk.id, secret),
            format!("{bfull}x"),
            bfull[..bfull.len() - 1].to_string(),
            String::new(),
            "esk_".into(),
            "esk_key_x_y".into(),
            "Bearer abc".into(),
            "not a key at all".into(),
        ] {
            assert_eq!(
                users::authenticate(db, &bad).await.unwrap(),
                None,
                "{n}: {bad:?} authenticated"
            );
        }

        // Revocation.
        assert!(users::revoke_key(db, &bk.id).await.unwrap(), "{n}");
        assert!(
            !users::revoke_key(db, &bk.id).await.unwrap(),
            "{n}: already revoked"
        );
        assert_eq!(
            users::authenticate(db, &bfull).await.unwrap(),
            None,
            "{n}: revoked key"
        );
        let listed = users::list_keys(db).await.unwrap();
        let b_listed = listed
            .iter()
            .find(|k| k.id == bk.id)
            .expect("revoked keys are listed");
        assert!(b_listed.revoked_at.is_some(), "{n}");

        // An operator-chosen, free-form key; another with the same 12-character prefix.
        let (ck, cfull) = users::create_key(db, &root.id, "operator", Some("my-admin-key-123"))
            .await
            .unwrap();
        assert_eq!(cfull, "my-admin-key-123", "{n}");
        assert!(easel_core::id::is_valid(easel_core::id::KEY, &ck.id), "{n}");
        let p = users::authenticate(db, "my-admin-key-123")
            .await
            .unwrap()
            .expect(n);
        assert_eq!(
            (p.user_id.as_str(), p.role, p.key_id.as_str()),
            (root.id.as_str(), Role::Admin, ck.id.as_str()),
            "{n}"
        );
        assert_eq!(
            users::authenticate(db, "my-admin-key-124").await.unwrap(),
            None,
            "{n}"
        );
        assert_eq!(
            users::authenticate(db, "my-admin-key").await.unwrap(),
            None,
            "{n}"
        );
        let (ck2, _) = users::create_key(db, &bob.id, "same-prefix", Some("my-admin-key-456"))
            .await
            .unwrap();
        let p = users::authenticate(db, "my-admin-key-456")
            .await
            .unwrap()
            .expect(n);
        assert_eq!(
            (p.key_id.as_str(), p.role),
            (ck2.id.as_str(), Role::User),
            "{n}"
        );
        assert_eq!(
            users::authenticate(db, "my-admin-key-123")
                .await
                .unwrap()
                .map(|p| p.key_id),
            Some(ck.id.clone()),
            "{n}"
        );

        // A chosen key shaped like ours keeps its id.
        let shaped = auth::join_key(&easel_core::id::new(easel_core::id::KEY), "operator-secret");
        let (sk, _) = users::create_key(db, &root.id, "shaped", Some(&shaped))
            .await
            .unwrap();
        assert_eq!(
            Some(sk.id.as_str()),
            auth::split_key(&shaped).map(|(id, _)| id),
            "{n}"
        );
        assert_eq!(
            users::authenticate(db, &shaped)
                .await
                .unwrap()
                .map(|p| p.key_id),
            Some(sk.id.clone()),
            "{n}"
        );

        // Use is noted.
        users::touch_key(db, &rk.id).await.unwrap();
        let listed = users::list_keys(db).await.unwrap();
        assert!(
            listed
                .iter()
                .find(|k| k.id == rk.id)
                .unwrap()
                .last_used_at
                .is_some(),
            "{n}"
        );
        assert_eq!(listed.len(), 5, "{n}");

        // Revoking every admin key leaves no admin key.
        for k in [&rk.id, &ck.id, &sk.id] {
            assert!(users::revoke_key(db, k).await.unwrap(), "{n}");
        }
        assert!(!users::has_admin_key(db).await.unwrap(), "{n}");

        // Unknown users.
        let e = users::create_key(db, "usr_01jaaaaaaaaaaaaaaaaaaaaaaa", "x", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}");
        let secret = users::webhook_secret(db, &bob.id).await.unwrap();
        assert!(secret.starts_with("whsec_"), "{n}");
        assert_ne!(
            secret,
            users::webhook_secret(db, &root.id).await.unwrap(),
            "{n}: per user"
        );
        let e = users::webhook_secret(db, "usr_01jaaaaaaaaaaaaaaaaaaaaaaa")
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{n}");
    }
}

#[tokio::test]
async fn settings_keep_the_first_value() {
    for b in backends().await {
        let n = b.name;
        let db = b.db();
        let first = easel_store::settings::get_or_init(db, "url_secret", || "one".into())
            .await
            .unwrap();
        assert_eq!(first, "one", "{n}");
        let again = easel_store::settings::get_or_init(db, "url_secret", || "two".into())
            .await
            .unwrap();
        assert_eq!(again, "one", "{n}: the first writer wins");
        let other =
            easel_store::settings::get_or_init(db, "other", easel_store::settings::random_hex)
                .await
                .unwrap();
        assert_eq!(other.len(), 64, "{n}");
    }
}
