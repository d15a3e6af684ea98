//! MQTT consumer: the game's default transport (contract §1.1).
//!
//! Subscribes to `openmohaa/events/+` on an external broker with QoS 1,
//! manual acknowledgements and a persistent session, so a message is
//! acknowledged to the broker only after its batch is in the journal, and
//! anything unacknowledged when we stop is redelivered when we return. The
//! topic's last level is the server id; it must be a registered, active
//! server (the broker's credentials authenticate the publisher), otherwise
//! the message is dropped and counted.
//!
//! Backpressure: a message waits for queue room instead of being shed. The
//! event loop keeps reading while earlier messages wait, up to
//! [`MAX_IN_FLIGHT_KIB`] of payload; past that it stops reading and TCP
//! pushes back on the broker, which holds the rest in the client's queue
//! (its `max_queued_messages`: a broker drops QoS 1 messages beyond it).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, Publish, QoS};
use tokio::sync::Semaphore;

use crate::ingest::{Admit, Ingest};
use crate::metrics::metrics;

/// Payload bytes (in KiB) held in memory at most: received, not yet in the
/// journal or not yet acknowledged.
pub const MAX_IN_FLIGHT_KIB: usize = 64 * 1024;

/// Broker address parsed from `mqtt://[user:pass@]host[:port]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

pub fn parse_url(url: &str) -> Result<BrokerUrl, String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| format!("unsupported MQTT URL {url:?} (expected mqtt://host:port)"))?;
    let rest = rest.split(['/', '?']).next().unwrap_or("");
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let credentials = creds.map(|c| match c.split_once(':') {
        Some((u, p)) => (u.to_string(), p.to_string()),
        None => (c.to_string(), String::new()),
    });
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| format!("bad MQTT port in {url:?}"))?,
        ),
        None => (hostport.to_string(), 1883),
    };
    if host.is_empty() {
        return Err(format!("no host in MQTT URL {url:?}"));
    }
    Ok(BrokerUrl {
        host,
        port,
        credentials,
    })
}

/// The server id in `openmohaa/events/<id>`.
pub fn server_id_of(topic: &str) -> Option<&str> {
    let id = topic.rsplit('/').next()?;
    (!id.is_empty() && id != "unknown").then_some(id)
}

/// Runs the consumer until the process ends; reconnects on its own.
pub async fn run(ingest: Ingest) -> anyhow::Result<()> {
    let config = ingest.config().clone();
    let url = config
        .mqtt_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no MQTT URL"))?;
    let broker = parse_url(&url).map_err(anyhow::Error::msg)?;
    let mut options = MqttOptions::new(
        config.mqtt_client_id.clone(),
        broker.host.clone(),
        broker.port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_manual_acks(true);
    options.set_clean_session(false);
    options.set_max_packet_size(2 << 20, 2 << 20);
    if let Some((u, p)) = &broker.credentials {
        options.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT_KIB));
    // Each message is queued for the journal after the one before it, so a
    // server's batches keep their order even though they are handled on
    // separate tasks (the event loop must keep reading, or the broker's
    // per-client queue overflows and it drops messages).
    let mut previous: Option<tokio::sync::oneshot::Receiver<()>> = None;
    tracing::info!(host = %broker.host, port = broker.port, topic = %config.mqtt_topic, "MQTT consumer starting");
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(session_present = ack.session_present, "MQTT connected");
                // Subscribing again on a kept session is harmless, and it
                // covers a broker that lost the session.
                client
                    .subscribe(config.mqtt_topic.clone(), QoS::AtLeastOnce)
                    .await?;
            }
            Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                let kib = (publish.payload.len() / 1024 + 1).min(MAX_IN_FLIGHT_KIB) as u32;
                let permit = budget.clone().acquire_many_owned(kib).await?;
                let (queued_tx, queued_rx) = tokio::sync::oneshot::channel();
                let before = previous.replace(queued_rx);
                let ingest = ingest.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    if let Some(before) = before {
                        let _ = before.await;
                    }
                    let handled = handle(&ingest, &publish).await;
                    let _ = queued_tx.send(());
                    let ack = match handled {
                        Handled::Drop => true,
                        Handled::Keep => false,
                        Handled::Queued(p) => match p.wait().await {
                            Ok(_) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "MQTT batch not journaled; left unacknowledged");
                                false
                            }
                        },
                    };
                    if ack {
                        let _ = client.ack(&publish).await;
                    }
                    drop(permit);
                });
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                metrics().mqtt_subscribed.set(1);
            }
            Ok(_) => {}
            Err(e) => {
                metrics().mqtt_subscribed.set(0);
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

enum Handled {
    /// Not ingestible, ever: acknowledge so the broker forgets it.
    Drop,
    /// Not ingested now: leave unacknowledged for redelivery.
    Keep,
    Queued(crate::ingest::Pending),
}

/// Checks, decodes and queues one message.
async fn handle(ingest: &Ingest, publish: &Publish) -> Handled {
    let m = metrics();
    let Some(server_id) = server_id_of(&publish.topic) else {
        m.mqtt_dropped.with_label_values(&["no_server_id"]).inc();
        return Handled::Drop;
    };
    match ingest.servers().is_active(server_id) {
        Ok(true) => {}
        Ok(false) => {
            m.mqtt_dropped.with_label_values(&["unknown_server"]).inc();
            tracing::debug!(topic = %publish.topic, "MQTT message for an unknown or inactive server dropped");
            return Handled::Drop;
        }
        Err(e) => {
            tracing::warn!(error = %e, "server directory unavailable");
            return Handled::Keep;
        }
    }
    let tag = crate::ingest::delivery::mqtt_tag(server_id, &publish.payload);
    if publish.dup && ingest.delivered(&tag) {
        // Journaled before, but the broker never saw our PUBACK.
        m.mqtt_dropped.with_label_values(&["redelivered"]).inc();
        return Handled::Drop;
    }
    let decoded = match ingest.decode(server_id, &publish.payload) {
        Ok(d) => d,
        Err(e) => {
            m.mqtt_dropped.with_label_values(&["invalid_body"]).inc();
            tracing::debug!(error = %e, "undecodable MQTT payload dropped");
            return Handled::Drop;
        }
    };
    match ingest
        .enqueue(
            server_id,
            decoded.events,
            decoded.wire,
            Admit::Wait,
            Some(tag),
        )
        .await
    {
        Ok(p) => Handled::Queued(p),
        Err(e) => {
            tracing::warn!(error = %e, "MQTT batch not queued; left unacknowledged");
            Handled::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_topics() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883").unwrap(),
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1883,
                credentials: None
            }
        );
        let u = parse_url("mqtt://u:p@broker").unwrap();
        assert_eq!(
            (u.port, u.credentials),
            (1883, Some(("u".into(), "p".into())))
        );
        assert!(parse_url("http://x").is_err());
        assert_eq!(server_id_of("openmohaa/events/abc"), Some("abc"));
        assert_eq!(server_id_of("openmohaa/events/unknown"), None);
    }
}
