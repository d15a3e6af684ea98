//! MQTT at-least-once delivery against the real binary: a message whose
//! PUBACK never reached the broker is delivered again (DUP set) on the
//! next connection, and must be stored once.
//!
//! Mosquitto cannot be told to lose a PUBACK, so the broker here is a
//! minimal MQTT 3.1.1 broker speaking just what the consumer uses
//! (CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH QoS 1/PUBACK, PINGREQ), so
//! the test decides exactly when the connection drops.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

/// One MQTT control packet: (first header byte, body).
fn read_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        len |= ((b[0] & 0x7f) as usize) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((first[0], body))
}

fn write_packet(s: &mut TcpStream, first: u8, body: &[u8]) {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    s.write_all(&out).unwrap();
}

fn publish(s: &mut TcpStream, topic: &str, pkid: u16, payload: &[u8], dup: bool) {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&pkid.to_be_bytes());
    body.extend_from_slice(payload);
    write_packet(s, 0x32 | if dup { 0x08 } else { 0 }, &body);
}

/// Accepts the consumer's connection and answers until it has subscribed.
fn accept_subscriber(listener: &TcpListener, session_present: bool) -> TcpStream {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    loop {
        let (first, body) = read_packet(&mut s).unwrap();
        match first >> 4 {
            1 => write_packet(&mut s, 0x20, &[session_present as u8, 0]),
            8 => {
                write_packet(&mut s, 0x90, &[body[0], body[1], 0x01]);
                return s;
            }
            12 => write_packet(&mut s, 0xd0, &[]),
            _ => {}
        }
    }
}

/// Reads until the PUBACK of `pkid` arrives.
fn await_puback(s: &mut TcpStream, pkid: u16) {
    loop {
        let (first, body) = read_packet(s).unwrap();
        match first >> 4 {
            4 if body[..2] == pkid.to_be_bytes() => return,
            12 => write_packet(s, 0xd0, &[]),
            _ => {}
        }
    }
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn a_redelivered_message_is_stored_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let broker = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker_thread = std::thread::spawn(move || {
        let first = accept_subscriber(&listener, false);
        (listener, first)
    });
    let mut server = Server::start(
        dir.path(),
        &[
            "--mqtt-url",
            &format!("mqtt://{broker}"),
            "--mqtt-client-id",
            "opm-test-redelivery",
        ],
    );
    let (listener, mut conn) = broker_thread.join().unwrap();
    let (id, _) = server.register("redelivery", "192.0.2.240", json!(12203));
    let topic = format!("openmohaa/events/{id}");
    let batch = |tag: &str| {
        let events: Vec<_> = (0..5)
            .map(|k| {
                json!({"type": "jump", "session_id": "sess_mq", "timestamp": "3.5",
                       "player_guid": "unauth_7", "marker": format!("{tag}-{k}")})
            })
            .collect();
        serde_json::to_vec(&events).unwrap()
    };
    let once = batch("once");

    // Delivered, journaled and acknowledged by the server; the broker
    // drops the connection before it takes the PUBACK in.
    publish(&mut conn, &topic, 1, &once, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(
        &server.metrics(),
        "mohaa_events_ingested_total{event_type=\"jump\"}",
    ) < 5
    {
        assert!(Instant::now() < deadline, "first delivery not ingested");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conn);

    // The consumer reconnects to the kept session; the broker redelivers
    // with DUP set, then a new message follows.
    let mut conn = accept_subscriber(&listener, true);
    publish(&mut conn, &topic, 1, &once, true);
    await_puback(&mut conn, 1);
    let next = batch("next");
    publish(&mut conn, &topic, 2, &next, false);
    await_puback(&mut conn, 2);
    server.settle();

    let stored: Vec<String> = server
        .events()
        .iter()
        .filter_map(|e| e.extra("marker").map(str::to_string))
        .collect();
    let mut expected: Vec<String> = (0..5)
        .flat_map(|k| [format!("once-{k}"), format!("next-{k}")])
        .collect();
    let mut got = stored.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every message stored exactly once");
    let metrics = server.metrics();
    assert_eq!(
        counter(
            &metrics,
            "mohaa_mqtt_messages_dropped_total{reason=\"redelivered\"}"
        ),
        1
    );

    // The tags live in the journal: after a crash the same redelivery is
    // still recognised.
    drop(conn);
    server.kill9();
    let broker_thread = std::thread::spawn(move || accept_subscriber(&listener, true));
    server.restart();
    let mut conn = broker_thread.join().unwrap();
    publish(&mut conn, &topic, 1, &once, true);
    await_puback(&mut conn, 1);
    server.settle();
    let after: usize = server
        .events()
        .iter()
        .filter(|e| e.extra("marker").is_some())
        .count();
    assert_eq!(after, 10, "the redelivery after a restart was dropped");
}
