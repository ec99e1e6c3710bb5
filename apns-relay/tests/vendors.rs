//! The router speaks each non-Apple vendor's own API: the stand-ins (tests/common/vendors.rs)
//! check credentials, content type and required fields as the real services do, and these
//! tests check how the router maps their answers — accepted, rejected with the vendor's
//! reason, retryable — and how it caches and refreshes access tokens.

mod common;

use std::sync::atomic::Ordering;

use apns_relay::config::RouterConfig;
use apns_relay::router::{Notification, Router, RouterError, Vendor};
use common::vendors::*;

const VENDORS: [&str; 5] = ["fcm", "huawei", "xiaomi", "vivo", "oppo"];

struct Env {
    _dir: tempfile::TempDir,
    stand_ins: StandIns,
    router: Router,
}

/// Stand-ins and a router pointed at them; `edit` rewrites the router file's text.
async fn env(extra: &str, edit: impl Fn(String) -> String) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stand_ins = StandIns::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{extra}\n{}\n[apple]\nvia = \"relay\"\nrelay_url = \"http://127.0.0.1:9\"\n",
        stand_ins.router_toml(dir.path())
    );
    let path = dir.path().join("router.toml");
    std::fs::write(&path, edit(text)).unwrap();
    let key = dir.path().join("fcm-key.json");
    std::fs::write(&key, edit(std::fs::read_to_string(&key).unwrap())).unwrap();
    let router = Router::new(RouterConfig::load(&path).unwrap()).unwrap();
    Env {
        _dir: dir,
        stand_ins,
        router,
    }
}

fn push(vendor: &str, device: &str) -> Notification {
    let mut n = Notification::apple(
        device,
        "unused",
        r#"{"title":"Order shipped","body":"It left the depot","data":{"order":"42"}}"#.into(),
    );
    n.vendor = Vendor::parse(vendor).unwrap();
    n
}

#[tokio::test]
async fn each_vendor_accepts_and_reports_its_message_id() {
    let e = env("", |t| t).await;
    for v in VENDORS {
        let d = e.router.send(&push(v, "device-1")).await.unwrap();
        assert_eq!(
            (d.outcome.as_str(), d.status),
            ("accepted", 200),
            "{v}: {d:?}"
        );
        assert!(d.message_id.is_some(), "{v}: {d:?}");
        let p = &e.stand_ins.log(v).pushes()[0];
        assert_eq!(
            (p.title.as_str(), p.body.as_str()),
            ("Order shipped", "It left the depot"),
            "{v}"
        );
        assert!(p.data.contains("42"), "{v}: {p:?}");
    }
}

#[tokio::test]
async fn an_invalid_device_token_is_rejected_with_the_vendors_reason() {
    let e = env("", |t| t).await;
    let reasons = [
        ("fcm", "UNREGISTERED"),
        ("huawei", "80300007"),
        ("xiaomi", "20301"),
        ("vivo", "10302"),
        ("oppo", "10000"),
    ];
    for (v, code) in reasons {
        let d = e.router.send(&push(v, "unregistered-7")).await.unwrap();
        assert_eq!(d.outcome, "rejected", "{v}: {d:?}");
        assert!(!d.retryable, "{v}: {d:?}");
        assert_eq!(d.sends, 1, "{v}: a final refusal is not resent");
        assert!(d.reason.starts_with(code), "{v}: {d:?}");
        assert!(e.stand_ins.log(v).pushes().is_empty(), "{v}");
    }
}

#[tokio::test]
async fn throttled_pushes_are_resent_until_accepted() {
    let e = env("", |t| t).await;
    for v in VENDORS {
        e.stand_ins.log(v).throttle(2);
        let d = e.router.send(&push(v, "device-2")).await.unwrap();
        assert_eq!((d.outcome.as_str(), d.sends), ("accepted", 3), "{v}: {d:?}");
        assert_eq!(e.stand_ins.log(v).pushes().len(), 1, "{v}");
    }
}

#[tokio::test]
async fn throttling_that_outlasts_retry_for_ends_retryable() {
    let e = env("retry_for = \"60ms\"", |t| t).await;
    for v in VENDORS {
        e.stand_ins.log(v).throttle(1000);
        let d = e.router.send(&push(v, "device-3")).await.unwrap();
        assert_eq!(d.outcome, "rejected", "{v}: {d:?}");
        assert!(d.retryable, "{v}: {d:?}");
        assert!(e.stand_ins.log(v).pushes().is_empty(), "{v}");
    }
}

#[tokio::test]
async fn access_tokens_are_cached_and_refreshed_once_when_refused() {
    let e = env("", |t| t).await;
    for v in ["fcm", "huawei", "vivo", "oppo"] {
        let log = e.stand_ins.log(v);
        for i in 0..3 {
            let d = e
                .router
                .send(&push(v, &format!("device-{i}")))
                .await
                .unwrap();
            assert_eq!(d.outcome, "accepted", "{v}: {d:?}");
        }
        assert_eq!(
            log.auth_calls.load(Ordering::SeqCst),
            1,
            "{v}: one token for three pushes"
        );
        log.revoke_tokens();
        let d = e.router.send(&push(v, "device-9")).await.unwrap();
        assert_eq!(d.outcome, "accepted", "{v}: {d:?}");
        assert_eq!(
            log.auth_calls.load(Ordering::SeqCst),
            2,
            "{v}: a new token after the refusal"
        );
        assert_eq!(log.refused.load(Ordering::SeqCst), 1, "{v}");
        assert_eq!(log.pushes().len(), 4, "{v}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_reported() {
    let e = env("", |t| {
        t.replace(FCM_EMAIL, "someone-else@example.iam.gserviceaccount.com")
            .replace(HUAWEI_SECRET, "wrong")
            .replace(XIAOMI_SECRET, "wrong")
            .replace(VIVO_SECRET, "wrong")
            .replace(OPPO_MASTER, "wrong")
    })
    .await;
    let reasons = [
        ("fcm", "fcm auth refused"),
        ("huawei", "huawei auth refused"),
        ("xiaomi", "21301"),
        ("vivo", "vivo auth refused"),
        ("oppo", "oppo auth refused"),
    ];
    for (v, reason) in reasons {
        let d = e.router.send(&push(v, "device-4")).await.unwrap();
        assert_eq!(d.outcome, "rejected", "{v}: {d:?}");
        assert!(d.reason.starts_with(reason), "{v}: {d:?}");
        let log = e.stand_ins.log(v);
        assert_eq!(log.refused.load(Ordering::SeqCst), 1, "{v}");
        assert!(log.pushes().is_empty(), "{v}");
    }
}

#[tokio::test]
async fn a_notification_without_title_is_bad_input_for_vivo_and_oppo() {
    let e = env("", |t| t).await;
    for v in ["vivo", "oppo"] {
        let mut n = push(v, "device-5");
        n.payload = r#"{"body":"no title"}"#.into();
        let err = e.router.send(&n).await.unwrap_err();
        assert!(matches!(err, RouterError::BadPush(_)), "{v}: {err}");
        assert_eq!(
            err.to_string(),
            format!("{v}: a notification needs a non-empty title and body")
        );
    }
}

#[tokio::test]
async fn a_generic_vendors_entry_for_a_native_vendor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        "[apple]\nvia = \"relay\"\nrelay_url = \"http://127.0.0.1:9\"\n[vendors.huawei]\nurl = \"https://x\"\n",
    )
    .unwrap();
    let e = RouterConfig::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: vendors.huawei: huawei speaks its own API: configure it in a [huawei] section",
            path.display()
        )
    );
}

#[tokio::test]
async fn resends_after_a_lost_answer_are_delivered_once_by_vivo_and_oppo() {
    // vivo (requestId) and OPPO (app_message_id) drop a repeated push id; the router keeps the
    // id across its resends, so a push whose answer was lost is still shown once.
    let e = env("", |t| t).await;
    for v in ["vivo", "oppo"] {
        let log = e.stand_ins.log(v);
        log.lose_answers(2);
        let d = e.router.send(&push(v, "device-6")).await.unwrap();
        assert_eq!((d.outcome.as_str(), d.sends), ("accepted", 3), "{v}: {d:?}");
        assert_eq!(log.pushes().len(), 1, "{v}");
    }
}
