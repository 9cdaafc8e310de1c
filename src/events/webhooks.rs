//! Webhooks: events pushed to vendor endpoints, signed per the Standard
//! Webhooks convention, at least once, in log order per endpoint.
//!
//! Each endpoint is a consumer group on the event log (started at the end of
//! the log when the endpoint is created, so it receives events from then on).
//! Every gateway process runs a worker per enabled endpoint that claims one
//! event at a time from the group, delivers it if the endpoint's type filter
//! wants it, and acknowledges it once it is delivered or its dead letter is
//! stored. On Redis the replicas share a group, so each event goes to one of
//! them; the holder touches the event before every attempt, and an event left
//! untouched for [`Settings::claim_idle`] (its replica is gone) is taken over.
//! One worker delivers in log order; with several replicas, events of one
//! endpoint go out in parallel, so receivers order them by `at` or `id`.
//!
//! A delivery is a `POST` of the event's JSON with `webhook-id` (the event
//! id), `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` under the
//! endpoint's secret, `whsec_<base64>`). Any 2xx is success. Anything else —
//! an error status, a timeout, a refused connection — is retried with
//! exponential backoff; after `max_attempts` the event goes to the endpoint's
//! dead-letter list (`GET /admin/v1/webhooks/{id}/dead-letters`) and the worker
//! moves on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::EventLog;
use super::EventType;
use crate::catalog::Timestamp;
use crate::catalog::store::{CasOutcome, Kind, RecordStore, StoreError, get_json, put_json};
use crate::http_client::{HttpClient, full};

pub const SECRET_PREFIX: &str = "whsec_";

/// A vendor's webhook endpoint, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// `whsec_` and base64 of 24 random bytes.
    pub secret: String,
    /// Event types delivered; empty: all.
    #[serde(default)]
    pub types: Vec<EventType>,
    pub enabled: bool,
    pub created_at: Timestamp,
    /// Random per creation: names the endpoint's consumer group, so an
    /// endpoint created again under an old id shares nothing with the old one.
    pub generation: String,
}

/// What the admin API shows of an endpoint: the secret only when created.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub types: Vec<EventType>,
    pub enabled: bool,
    pub created_at: Timestamp,
    /// The signing secret: in the answer that created the endpoint, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Endpoint {
    pub fn view(&self, with_secret: bool) -> EndpointView {
        EndpointView {
            id: self.id.clone(),
            url: self.url.clone(),
            types: self.types.clone(),
            enabled: self.enabled,
            created_at: self.created_at,
            secret: with_secret.then(|| self.secret.clone()),
        }
    }

    /// Does the endpoint take events of type `ty`? (A type this version
    /// does not know is taken by endpoints without a filter.)
    pub fn wants(&self, ty: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t.as_str() == ty)
    }
}

/// An event an endpoint never accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    pub endpoint: String,
    /// The event, as it would have been delivered.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// Attempts made, those of requested redeliveries ([`request_redelivery`]) included.
    pub attempts: u32,
    /// The last answer's status, or why there was none.
    pub last_error: String,
    pub failed_at: Timestamp,
}

/// The consumer group of an endpoint.
pub fn group(endpoint: &Endpoint) -> String {
    format!("webhook:{}:{}", endpoint.id, endpoint.generation)
}

fn random(bytes: usize) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Internal(format!("no randomness: {e}")))?;
    Ok(buf)
}

/// A new signing secret.
pub fn generate_secret() -> Result<String, StoreError> {
    Ok(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(random(24)?)))
}

/// A new endpoint generation.
pub fn generate_generation() -> Result<String, StoreError> {
    Ok(hex::encode(random(8)?))
}

/// `v1,<base64 HMAC-SHA256("<id>.<timestamp>.<body>")>`, or `None` for a
/// secret that is not `whsec_<base64>`.
pub fn signature(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// How deliveries are made and retried.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts per event before it is dead-lettered.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time, at most 10 minutes.
    pub first_retry: Duration,
    /// A delivery with no complete answer in this long has failed.
    pub timeout: Duration,
    /// How often an idle worker looks for new events.
    pub poll: Duration,
    /// This process's name in the consumer groups, unique to it (a restart
    /// is a new name): what it held when it stopped is taken over by another
    /// consumer once idle for [`Settings::claim_idle`].
    pub consumer: String,
}

impl Settings {
    /// The wait before retry `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        self.first_retry.saturating_mul(1 << n.saturating_sub(1).min(20)).min(Duration::from_secs(600))
    }

    /// An event a replica holds is touched before every attempt; one left
    /// alone for longer than the longest wait between attempts plus an
    /// attempt (and a minute to spare) belongs to a replica that is gone.
    pub fn claim_idle(&self) -> Duration {
        let longest_wait = self.backoff(self.max_attempts.saturating_sub(1).max(1));
        longest_wait.saturating_add(self.timeout).saturating_add(Duration::from_secs(60))
    }
}

/// How delivering one event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Delivered, or dead-lettered: acknowledge it.
    Done,
    /// Another replica has taken it over: leave it.
    NotMine,
    /// The endpoint was changed or deleted: this worker stops, and one with
    /// the stored endpoint takes over.
    Stale,
    /// Neither delivered nor dead-lettered (the store failed): keep it and
    /// try again.
    Failed,
}

/// A task aborted when dropped.
struct Worker(tokio::task::JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends events to endpoints: the store, a client, the clock.
#[derive(Clone)]
pub struct Deliverer {
    store: Arc<dyn RecordStore>,
    log: Arc<dyn EventLog>,
    client: HttpClient,
    settings: Settings,
    clock: Arc<dyn crate::clock::Clock>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("consumer", &self.settings.consumer).finish_non_exhaustive()
    }
}

/// How often the list of endpoints is read again.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

impl Deliverer {
    pub fn new(
        store: Arc<dyn RecordStore>,
        log: Arc<dyn EventLog>,
        settings: Settings,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> anyhow::Result<Self> {
        Ok(Self { store, log, client: HttpClient::new()?, settings, clock })
    }

    /// Run a worker per enabled endpoint, following changes to the list,
    /// until the task is aborted (which stops the workers too).
    pub async fn run(self) {
        let mut workers: HashMap<String, (Endpoint, Worker)> = HashMap::new();
        loop {
            match all_endpoints(&*self.store).await {
                Ok(endpoints) => {
                    workers.retain(|_, (old, task)| {
                        endpoints.iter().any(|e| e == old && e.enabled) && !task.0.is_finished()
                    });
                    for e in endpoints.into_iter().filter(|e| e.enabled) {
                        if !workers.contains_key(&e.id) {
                            let task = Worker(tokio::spawn(self.clone().work(e.clone())));
                            workers.insert(e.id.clone(), (e, task));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the webhook endpoints"),
            }
            if let Err(e) = self.take_redeliveries().await {
                tracing::warn!(error = %e, "cannot read the dead letters to send again");
            }
            tokio::time::sleep(RELOAD_EVERY).await;
        }
    }

    /// Send again the dead letters someone asked for ([`Kind::Redelivery`]).
    /// A request is claimed by compare-and-set (`taken_at`), so of racing
    /// replicas one sends it; it stays while the send runs, so asking again
    /// meanwhile sends nothing twice; a claim older than
    /// [`Deliverer::redelivery_stale`] (its replica stopped) is taken over.
    /// Sent once: accepted, the dead letter goes; refused, it is written
    /// back with the attempt counted, if nothing changed it meanwhile.
    async fn take_redeliveries(&self) -> Result<(), StoreError> {
        let asked = self.store.list(Kind::Redelivery, "", None, crate::catalog::store::MAX_PAGE).await?;
        let now = self.clock.now_unix();
        for (key, _) in asked {
            if let Err(e) = self.take_redelivery(&key, now).await {
                tracing::warn!(key = %key, error = %e, "cannot take a request to send a dead letter again");
            }
        }
        Ok(())
    }

    fn redelivery_stale(&self) -> u64 {
        self.settings.timeout.as_secs().saturating_add(60)
    }

    async fn take_redelivery(&self, key: &str, now: u64) -> Result<(), StoreError> {
        let Some(request) = self.store.get_versioned(Kind::Redelivery, key).await? else { return Ok(()) };
        let mut asked: Redelivery = serde_json::from_slice(&request.value).unwrap_or_default();
        if asked.taken_at.is_some_and(|t| now.saturating_sub(t.0) < self.redelivery_stale()) {
            return Ok(());
        }
        asked.taken_at = Some(Timestamp(now));
        let claim = serde_json::to_vec(&asked).map_err(|e| StoreError::Internal(e.to_string()))?;
        let expect = crate::catalog::store::Expect::Revision(request.revision);
        if matches!(self.store.put_if(Kind::Redelivery, key, &claim, expect).await?, CasOutcome::Conflict) {
            return Ok(());
        }
        let dead = self.store.get_versioned(Kind::DeadLetter, key).await?;
        let dead = dead.and_then(|d| Some((serde_json::from_slice::<DeadLetter>(&d.value).ok()?, d.revision)));
        let Some((dead, revision)) = dead else {
            self.store.delete(Kind::Redelivery, key).await?;
            return Ok(());
        };
        let Some(endpoint) = endpoint_of(&*self.store, &dead.endpoint).await?.filter(|e| e.enabled) else {
            self.store.delete(Kind::Redelivery, key).await?;
            return Ok(());
        };
        let this = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move { this.redeliver(&endpoint, &key, dead, revision).await });
        Ok(())
    }

    async fn redeliver(&self, endpoint: &Endpoint, key: &str, dead: DeadLetter, revision: u64) {
        let id = dead.event["id"].as_str().unwrap_or_default().to_owned();
        let body = Bytes::from(serde_json::to_vec(&dead.event).unwrap_or_default());
        match self.send(endpoint, &id, body).await {
            Ok(()) => {
                tracing::info!(endpoint = %endpoint.id, event = %id, "dead letter delivered on request");
                if let Err(e) = self.store.delete(Kind::DeadLetter, key).await {
                    tracing::warn!(endpoint = %endpoint.id, event = %id, error = %e, "cannot remove a delivered dead letter");
                }
            }
            Err(last_error) => {
                tracing::warn!(endpoint = %endpoint.id, event = %id, error = %last_error, "dead letter refused again");
                let again = DeadLetter {
                    attempts: dead.attempts.saturating_add(1),
                    last_error,
                    failed_at: Timestamp(self.clock.now_unix()),
                    ..dead
                };
                // Only over the letter as it was read: one deleted meanwhile
                // (its endpoint removed) is not brought back.
                let expect = crate::catalog::store::Expect::Revision(revision);
                let written = match serde_json::to_vec(&again) {
                    Ok(bytes) => self.store.put_if(Kind::DeadLetter, key, &bytes, expect).await.map(|_| ()),
                    Err(e) => Err(StoreError::Internal(e.to_string())),
                };
                if let Err(e) = written {
                    tracing::warn!(endpoint = %endpoint.id, event = %id, error = %e, "cannot update a dead letter");
                }
            }
        }
        if let Err(e) = self.store.delete(Kind::Redelivery, key).await {
            tracing::warn!(endpoint = %endpoint.id, event = %id, error = %e, "cannot end a request to send again");
        }
    }

    /// One endpoint's events, one at a time, in the order this worker gets
    /// them.
    async fn work(self, endpoint: Endpoint) {
        let group = group(&endpoint);
        let log = &*self.log;
        let idle = u64::try_from(self.settings.claim_idle().as_millis()).unwrap_or(u64::MAX);
        loop {
            let batch = match log.claim(&group, &self.settings.consumer, 1, idle).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.id, error = %e, "cannot read events for a webhook");
                    tokio::time::sleep(self.settings.poll.max(Duration::from_secs(1))).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::time::sleep(self.settings.poll).await;
                continue;
            }
            for (position, body) in batch {
                let outcome = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(event) => {
                        let ty = event["type"].as_str().unwrap_or_default();
                        if endpoint.wants(ty) {
                            self.deliver(&endpoint, &group, &position, &event, Bytes::from(body)).await
                        } else {
                            Outcome::Done
                        }
                    }
                    Err(_) if body.is_empty() => {
                        tracing::warn!(endpoint = %endpoint.id, position, "an event was trimmed from the log before it was delivered");
                        Outcome::Done
                    }
                    Err(e) => {
                        tracing::error!(endpoint = %endpoint.id, position, error = %e, "an undecodable event cannot be delivered");
                        Outcome::Done
                    }
                };
                let pause = self.settings.poll.max(Duration::from_secs(1));
                match outcome {
                    // If the acknowledgement fails, the event comes again
                    // (at least once), after a pause.
                    Outcome::Done => {
                        if let Err(e) = log.ack(&group, &position).await {
                            tracing::warn!(endpoint = %endpoint.id, error = %e, "cannot acknowledge a webhook delivery");
                            tokio::time::sleep(pause).await;
                        }
                    }
                    Outcome::NotMine => {}
                    Outcome::Stale => return,
                    Outcome::Failed => tokio::time::sleep(pause).await,
                }
            }
        }
    }

    /// Deliver with retries; dead-letter on the last failure.
    async fn deliver(
        &self,
        endpoint: &Endpoint,
        group: &str,
        position: &str,
        event: &serde_json::Value,
        body: Bytes,
    ) -> Outcome {
        let id = event["id"].as_str().unwrap_or_default();
        let log = &*self.log;
        let mut last_error = String::new();
        let attempts = self.settings.max_attempts.max(1);
        for attempt in 1..=attempts {
            // The endpoint as stored now: a changed URL or secret is not sent
            // to with the old one.
            match endpoint_of(&*self.store, &endpoint.id).await {
                Ok(Some(now)) if now == *endpoint => {}
                Ok(_) => return Outcome::Stale,
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.id, error = %e, "cannot read a webhook endpoint");
                    return Outcome::Failed;
                }
            }
            // Still ours, and marked as worked on, so no replica takes it over.
            match log.keep(group, &self.settings.consumer, position).await {
                Ok(true) => {}
                Ok(false) => return Outcome::NotMine,
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.id, error = %e, "cannot renew a webhook claim");
                    return Outcome::Failed;
                }
            }
            match self.send(endpoint, id, body.clone()).await {
                Ok(()) => return Outcome::Done,
                Err(e) => {
                    tracing::info!(endpoint = %endpoint.id, event = id, attempt, error = %e, "webhook delivery failed");
                    last_error = e;
                }
            }
            if attempt < attempts {
                tokio::time::sleep(self.settings.backoff(attempt)).await;
            }
        }
        tracing::warn!(endpoint = %endpoint.id, event = id, error = %last_error, "webhook event dead-lettered");
        let dead = DeadLetter {
            endpoint: endpoint.id.clone(),
            event: event.clone(),
            attempts,
            last_error,
            failed_at: Timestamp(self.clock.now_unix()),
        };
        let key = format!("{}/{id}", endpoint.id);
        match put_json(&*self.store, Kind::DeadLetter, &key, &dead).await {
            Ok(_) => Outcome::Done,
            Err(e) => {
                tracing::error!(endpoint = %endpoint.id, event = id, error = %e, "cannot record a dead letter; will try the event again");
                Outcome::Failed
            }
        }
    }

    async fn send(&self, endpoint: &Endpoint, id: &str, body: Bytes) -> Result<(), String> {
        let timestamp = self.clock.now_unix();
        let signature = signature(&endpoint.secret, id, timestamp, &body)
            .ok_or_else(|| "the endpoint's secret is malformed".to_owned())?;
        let req = hyper::Request::post(&endpoint.url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(full(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let answer = tokio::time::timeout(self.settings.timeout, async {
            let response = self.client.send(req).await.map_err(|e| format!("no answer: {e}"))?;
            let status = response.status();
            // Read (and drop) the body so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            Ok::<_, String>(status)
        })
        .await
        .map_err(|_| format!("no answer within {:?}", self.settings.timeout))??;
        if answer.is_success() { Ok(()) } else { Err(format!("answered {}", answer.as_u16())) }
    }
}

pub async fn all_endpoints(store: &dyn RecordStore) -> Result<Vec<Endpoint>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(Kind::Webhook, "", after.as_deref(), crate::catalog::store::MAX_PAGE).await?;
        let full = page.len() == crate::catalog::store::MAX_PAGE;
        let last = page.last().map(|(k, _)| k.clone());
        for (key, value) in page {
            match serde_json::from_slice(&value) {
                Ok(e) => out.push(e),
                Err(e) => tracing::error!(endpoint = %key, error = %e, "a stored webhook endpoint is corrupt"),
            }
        }
        match last {
            Some(k) if full => after = Some(k),
            _ => return Ok(out),
        }
    }
}

/// Ask for dead letter `event` of `endpoint` to be sent again (once, by
/// the next replica's deliverer to look, within seconds). `None`: no such
/// dead letter.
pub async fn request_redelivery(
    store: &dyn RecordStore,
    endpoint: &str,
    event: &str,
    now: Timestamp,
) -> Result<Option<DeadLetter>, StoreError> {
    let key = format!("{endpoint}/{event}");
    let Some(dead) = get_json::<DeadLetter>(store, Kind::DeadLetter, &key).await? else { return Ok(None) };
    let asked = Redelivery { requested_at: Some(now), taken_at: None };
    let bytes = serde_json::to_vec(&asked).map_err(|e| StoreError::Internal(e.to_string()))?;
    // Asked already (waiting, or being sent): that request stands.
    store.put_if(Kind::Redelivery, &key, &bytes, crate::catalog::store::Expect::Absent).await?;
    Ok(Some(dead))
}

/// A request to send a dead letter again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Redelivery {
    #[serde(default)]
    requested_at: Option<Timestamp>,
    /// When a deliverer took it (it is being sent).
    #[serde(default)]
    taken_at: Option<Timestamp>,
}

pub async fn endpoint_of(store: &dyn RecordStore, id: &str) -> Result<Option<Endpoint>, StoreError> {
    get_json(store, Kind::Webhook, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference
        // libraries: this secret, id, timestamp and payload give this
        // signature.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(signature("nope", "id", 1, b""), None);
        assert!(generate_secret().unwrap().starts_with("whsec_"));
    }

    #[test]
    fn backoff_doubles_up_to_ten_minutes_and_claims_outlast_it() {
        let s = Settings {
            max_attempts: 8,
            first_retry: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            consumer: "c".into(),
        };
        assert_eq!(s.backoff(1), Duration::from_secs(5));
        assert_eq!(s.backoff(3), Duration::from_secs(20));
        assert_eq!(s.backoff(40), Duration::from_secs(600));
        // The longest wait (before the 8th attempt) plus an attempt, plus a minute.
        assert_eq!(s.claim_idle(), Duration::from_secs(320 + 10 + 60));
    }
}
