//! `serve` applies raw-event retention on start (and daily after): raw
//! events older than `OPM_RAW_RETENTION_DAYS` are gone once the server
//! runs, recent ones stay.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use opm_model::{Event, EventKind, Participant};
use opm_store::analytics::AnalyticsStore;
use opm_store::analytics::sqlite::SqliteAnalytics;
use opm_store::{StoreConfig, Stores};

fn kill(id: u64, time_ms: i64) -> Event {
    let mut e = Event::new(EventKind::PlayerKill);
    e.id = id;
    e.server = "srv-retention".into();
    e.time_ms = time_ms;
    e.match_id = "m-r".into();
    e.actor = Some(Participant::new("a"));
    e.target = Some(Participant::new("b"));
    e.weapon = "Kar98K".into();
    e
}

#[test]
fn serve_drops_raw_events_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let day = 86_400_000;
    let now = opm_store::time::now_ms();
    rt.block_on(async {
        let stores = Stores::open(&StoreConfig::embedded(&data)).await.unwrap();
        stores
            .analytics
            .insert(&[kill(1, now - 400 * day), kill(2, now - day)])
            .await
            .unwrap();
        assert_eq!(stores.analytics.raw_count().await.unwrap(), 2);
    });
    let _server = Server::start_with_env(&data, &[], &[("OPM_RAW_RETENTION_DAYS", "30")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = rt.block_on(async {
            SqliteAnalytics::open(&data.join("analytics.sqlite"))
                .await
                .unwrap()
                .raw_count()
                .await
                .unwrap()
        });
        if count == 1 {
            break;
        }
        assert_eq!(count, 2, "only the old event may go");
        assert!(Instant::now() < deadline, "retention did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
}
