//! The soak's clients: one per host, asking that host's server steadily (its share of the total
//! rate) a mix of stable, churning, large (over TCP), forwarded and nonexistent names, each answer
//! judged by `truth`. A question is asked as a stub resolver asks it: up to three tries a second
//! apart; lost when none is answered (or only SERVFAIL), wrong when the answer is not the truth.
//!
//! Imports: `book` (counts, failures), `truth`, `support` (the DNS client).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::book::{Book, Rng};
use super::hosts::FORWARDED;
use super::truth::{judge, slot_name, Truth, Want, SLOTS};
use crate::support::{message, tcp_raw, udp_raw};

const TRIES: usize = 3;
const TRY: Duration = Duration::from_secs(1);

/// One try: the parsed answer, or why there is none.
pub async fn ask_once(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    tcp: bool,
) -> Result<Message, String> {
    let bytes = message(name, qtype).to_vec().map_err(|e| e.to_string())?;
    let raw = if tcp {
        tokio::time::timeout(TRY * 3, tcp_raw(addr, &bytes))
            .await
            .map_err(|_| "timeout".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))?
    } else {
        udp_raw(addr, &bytes, TRY)
            .await
            .map_err(|e| e.to_string())?
    };
    Message::from_vec(&raw).map_err(|e| format!("unparsable answer: {e}"))
}

/// Up to [`TRIES`] tries, a second apart; SERVFAIL is tried again like no answer.
async fn ask(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    tcp: bool,
) -> Result<Message, String> {
    let mut why = String::new();
    for _ in 0..TRIES {
        let t = Instant::now();
        match ask_once(addr, name, qtype, tcp).await {
            Ok(m) if m.metadata.response_code != ResponseCode::ServFail => return Ok(m),
            Ok(_) => why = "SERVFAIL".into(),
            Err(e) => why = e,
        }
        if let Some(rest) = TRY.checked_sub(t.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    Err(why)
}

/// The next question of the mix: name, type, over TCP, what the answer must be.
fn pick(rng: &mut Rng, truth: &Truth) -> (String, RecordType, bool, Want) {
    let r = rng.below(100);
    match r {
        0..40 => {
            let (n, a) = &truth.stable[rng.below(truth.stable.len())];
            (n.clone(), RecordType::A, false, Want::Exactly(a.clone()))
        }
        40..65 => {
            let k = rng.below(SLOTS);
            (slot_name(k), RecordType::A, false, Want::Slot(k))
        }
        65..80 => {
            let n = if r.is_multiple_of(2) {
                format!("nx{}.nowhere.webapp.dev.", rng.below(1 << 30))
            } else {
                format!("nx{}.s{}.stable.webapp.dev.", rng.below(1 << 30), r)
            };
            (n, RecordType::A, false, Want::NxDomain)
        }
        80..97 => (
            FORWARDED.0.to_string(),
            RecordType::A,
            false,
            Want::Exactly(vec![FORWARDED.1.to_string()]),
        ),
        _ => (
            truth.large.0.clone(),
            RecordType::A,
            true,
            Want::Exactly(truth.large.1.clone()),
        ),
    }
}

/// Host `i`'s client: `qps` questions a second to `addr` until the book says stop.
pub async fn client(i: usize, addr: SocketAddr, qps: u32, truth: Arc<Truth>, book: Arc<Book>) {
    let mut rng = Rng::new(i as u64 + 7);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_tick = f64::from(qps) / 100.0;
    let mut owed = 0.0;
    // At most this many questions in flight (a server that stops answering costs 3 s each).
    let room = Arc::new(tokio::sync::Semaphore::new(qps as usize * 4));
    while !book.stopping() {
        tick.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let Ok(permit) = room.clone().try_acquire_owned() else {
                book.fail(format!(
                    "host {i}'s client has {} questions unanswered",
                    qps * 4
                ));
                break;
            };
            let (name, qtype, tcp, want) = pick(&mut rng, &truth);
            let (truth, book) = (truth.clone(), book.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let asked = book.ms();
                book.counts.queries.fetch_add(1, Ordering::Relaxed);
                match ask(addr, &name, qtype, tcp).await {
                    Ok(m) if judge(&truth, &want, &m) => {}
                    Ok(m) => {
                        book.counts.wrong.fetch_add(1, Ordering::Relaxed);
                        book.fail(format!(
                            "WRONG at host {i}: {name} {qtype}: {} {:?}, want {want:?}",
                            m.metadata.response_code,
                            m.answers
                                .iter()
                                .take(4)
                                .map(|r| r.data.to_string())
                                .collect::<Vec<_>>()
                        ));
                    }
                    Err(_) if book.was_down(i, asked) => {
                        book.counts.restarting.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => {
                        book.counts.lost.fetch_add(1, Ordering::Relaxed);
                        book.fail(format!("LOST at host {i}: {name} {qtype}: {why}"));
                    }
                }
            });
        }
    }
}
